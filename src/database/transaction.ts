import type pg from 'pg';
import { withClient } from './pool.ts';

/**
 * Runs `work` inside one transaction on one connection of `pool`: COMMIT when it resolves (the result is
 * returned only after the COMMIT succeeded), ROLLBACK when it rejects (the rejection is passed on). A failed
 * COMMIT rejects: then nothing of the transaction happened, unless the connection broke during the COMMIT
 * itself, when the outcome is unknown (PostgreSQL's rule for any client).
 */
export function withTransaction<T>(pool: pg.Pool, work: (client: pg.PoolClient) => Promise<T>): Promise<T> {
  return withClient(pool, async (client) => {
    await client.query('BEGIN');
    let result: T;
    try {
      result = await work(client);
    } catch (error) {
      await client.query('ROLLBACK').catch(() => {}); // a broken connection rolls back on its own
      throw error;
    }
    await client.query('COMMIT');
    return result;
  });
}
