// The replica-wide page reader against a real PostgreSQL: the pages of many endpoints asked for together come from
// one query, each in its queue's order, after the position asked, a page at most; a failed query rejects each read.
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { migrate } from '../../src/database/migrate.ts';
import { PageReader } from '../../src/database/page-reader.ts';
import { openPool } from '../../src/database/pool.ts';
import { postgresBinaries, startPostgres, type TestPostgres } from '../support/postgres.ts';

const bin = postgresBinaries();

describe.skipIf(!bin)('PageReader (a real PostgreSQL)', { timeout: 60_000 }, () => {
  let db: TestPostgres;
  let pool: pg.Pool;
  beforeAll(async () => {
    db = await startPostgres({ fsync: false });
    pool = openPool(await db.createDatabase(), { applicationName: 'page-reader-test' });
    await migrate(pool);
    // a owes events 1-5 at positions 1-5; b owes 5, 3, 1 at positions 1-3; c owes nothing.
    await pool.query(`INSERT INTO endpoints (name) VALUES ('a'), ('b'), ('c')`);
    await pool.query(`INSERT INTO events (id, json, accepted_at) SELECT 'e' || i, '{"n":' || i || '}', 1000 + i FROM generate_series(1, 5) AS i`);
    await pool.query(`INSERT INTO deliveries (endpoint, pos, seq) SELECT 'a', i, i FROM generate_series(1, 5) AS i`);
    await pool.query(`INSERT INTO deliveries (endpoint, pos, seq) VALUES ('b', 1, 5), ('b', 2, 3), ('b', 3, 1)`);
  }, 60_000);
  afterAll(async () => {
    await pool?.end();
    await db?.stop();
  });

  it('reads the pages of endpoints asked for together in one query, each in order after its position', async () => {
    const reader = new PageReader({ pool, pageSize: 3 });
    const calls = vi.spyOn(pool, 'query');
    try {
      const [a, a2, b, c] = await Promise.all([reader.read('a', 0), reader.read('a', 3), reader.read('b', 1), reader.read('c', 0)]);
      expect(calls).toHaveBeenCalledTimes(1);
      expect(a!.events.map((e) => [e.id, e.seq])).toEqual([['e1', 1], ['e2', 2], ['e3', 3]]); // a page at most
      expect(a!.more).toBe(true);
      expect(a2!.events.map((e) => [e.id, e.seq])).toEqual([['e4', 4], ['e5', 5]]);
      expect(a2!.more).toBe(false);
      expect(b).toEqual({ events: [{ id: 'e3', json: '{"n":3}', acceptedAt: 1003, seq: 2 }, { id: 'e1', json: '{"n":1}', acceptedAt: 1001, seq: 3 }], more: false });
      expect(c).toEqual({ events: [], more: false });
    } finally {
      calls.mockRestore();
    }
  });

  it('a read made as soon as a page arrives (in the continuation of the last read) is served too', async () => {
    const reader = new PageReader({ pool, pageSize: 10 });
    // The continuation runs before anything chained on the reader's run: a run that ends there would strand it.
    const again = reader.read('c', 0).then(() => reader.read('b', 2));
    const page = await Promise.race([again, new Promise<'stranded'>((resolve) => setTimeout(() => resolve('stranded'), 5_000).unref())]);
    expect(page).toEqual({ events: [{ id: 'e1', json: '{"n":1}', acceptedAt: 1001, seq: 3 }], more: false });
  });

  it('a query that fails rejects every read it carried; the next reads query again', async () => {
    const reader = new PageReader({ pool, pageSize: 10 });
    const calls = vi.spyOn(pool, 'query').mockImplementationOnce((() => Promise.reject(new Error('connection terminated'))) as never);
    try {
      const results = await Promise.allSettled([reader.read('a', 0), reader.read('b', 0)]);
      expect(results.map((r) => r.status)).toEqual(['rejected', 'rejected']);
      expect((await reader.read('b', 0)).events.map((e) => e.id)).toEqual(['e5', 'e3', 'e1']);
      expect(calls).toHaveBeenCalledTimes(2);
    } finally {
      calls.mockRestore();
    }
  });
});
