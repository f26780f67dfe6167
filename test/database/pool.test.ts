// The pool's settings as the server sees them, and that a connection the server drops (idle in the pool, or held
// by a caller) never crashes the process; withTransaction commits or rolls back as a whole.
import { connect, createServer, type AddressInfo, type Socket } from 'node:net';
import { PassThrough } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isDatabaseUnavailable } from '../../src/database/errors.ts';
import { openPool, withClient } from '../../src/database/pool.ts';
import { withTransaction } from '../../src/database/transaction.ts';
import { createLogger } from '../../src/log.ts';
import { postgresBinaries, queryOnce, startPostgres, type TestPostgres } from '../support/postgres.ts';
import { eventually } from '../support/wait.ts';

const bin = postgresBinaries();

describe.skipIf(!bin)('openPool', { timeout: 60_000 }, () => {
  let db: TestPostgres;
  beforeAll(async () => {
    db = await startPostgres({ fsync: false });
  });
  afterAll(() => db?.stop());

  it('connects with its application_name, statement and idle-in-transaction timeouts, and TCP keep-alive', async () => {
    const pool = openPool(db.url, { applicationName: 'registry-notifier/replica-a' });
    try {
      const { rows } = await pool.query<Record<string, string>>(`SELECT current_setting('application_name') AS app,
        current_setting('statement_timeout') AS statement, current_setting('idle_in_transaction_session_timeout') AS idle`);
      expect(rows).toEqual([{ app: 'registry-notifier/replica-a', statement: '30s', idle: '1min' }]);
      const seen = await db.admin(`SELECT 1 FROM pg_stat_activity WHERE application_name = 'registry-notifier/replica-a'`);
      expect(seen).toHaveLength(1);
    } finally {
      await pool.end();
    }
    const listen = openPool(db.url, { applicationName: 'listener', statementTimeoutMs: 0 });
    try {
      expect((await listen.query(`SELECT current_setting('statement_timeout') AS s`)).rows).toEqual([{ s: '0' }]);
    } finally {
      await listen.end();
    }
  });

  it('an idle connection the server terminates is logged (without the password) and replaced; the process lives on', async () => {
    const lines: string[] = [];
    const stream = new PassThrough();
    stream.on('data', (chunk: Buffer) => lines.push(...chunk.toString().split('\n').filter((l) => l !== '')));
    const pool = openPool(db.url, { applicationName: 'idle-victim', logger: createLogger('info', stream) });
    try {
      await pool.query('SELECT 1');
      expect(pool.idleCount).toBe(1);
      await db.admin(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'idle-victim'`);
      await eventually(() => expect(lines.map((l) => JSON.parse(l) as Record<string, unknown>)).toContainEqual(expect.objectContaining({
        level: 'warn',
        msg: 'database: an idle connection failed; it is replaced on next use',
        database: `postgres://127.0.0.1:${db.port}/notifier`,
        error: '57P01 terminating connection due to administrator command',
      })));
      expect(lines.join('\n')).not.toContain(db.password);
      expect((await pool.query('SELECT 2 AS two')).rows).toEqual([{ two: 2 }]);
    } finally {
      await pool.end();
    }
  });

  it('withClient: a held connection the server terminates fails the next query, not the process; the pool goes on', async () => {
    const pool = openPool(db.url, { applicationName: 'held-victim', max: 1 });
    try {
      const outcome = await withClient(pool, async (client) => {
        const [{ pid }] = (await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows as [{ pid: number }];
        await db.admin('SELECT pg_terminate_backend($1)', [pid]);
        await eventually(async () => expect(await db.admin('SELECT 1 FROM pg_stat_activity WHERE pid = $1', [pid])).toEqual([]));
        return client.query('SELECT 1').then(() => 'answered', () => 'failed');
      });
      expect(outcome).toBe('failed');
      expect((await pool.query('SELECT 3 AS three')).rows).toEqual([{ three: 3 }]);
    } finally {
      await pool.end();
    }
  });

  it('a server that goes silent mid-query (a network that drops everything): the query fails as unavailable after the query timeout, its connection is closed, and the pool goes on once the network is back', async () => {
    // A loopback proxy in front of the server that can stop passing bytes, both ways, with every socket left open.
    let silent = false;
    const sockets: Socket[] = [];
    const proxy = createServer((inbound) => {
      const outbound = connect(db.port, '127.0.0.1');
      sockets.push(inbound, outbound);
      inbound.on('data', (chunk) => void (silent || outbound.write(chunk)));
      outbound.on('data', (chunk) => void (silent || inbound.write(chunk)));
      for (const [a, b] of [[inbound, outbound], [outbound, inbound]] as const) {
        a.on('error', () => b.destroy());
        a.on('close', () => b.destroy());
      }
    });
    await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
    const url = new URL(db.url);
    url.port = String((proxy.address() as AddressInfo).port);
    const pool = openPool(url.href, { applicationName: 'silent-test', queryTimeoutMs: 1_000 });
    try {
      expect((await pool.query('SELECT 1 AS one')).rows).toEqual([{ one: 1 }]);
      silent = true;
      const started = performance.now();
      const error = await pool.query('SELECT 2').then(() => undefined, (e: unknown) => e as Error);
      const waited = performance.now() - started;
      expect(error?.message).toBe('Query read timeout');
      expect(isDatabaseUnavailable(error)).toBe(true);
      expect(waited).toBeGreaterThanOrEqual(900);
      expect(waited).toBeLessThan(5_000);
      silent = false;
      expect((await pool.query('SELECT 3 AS three')).rows).toEqual([{ three: 3 }]);
      expect(pool.totalCount).toBe(1); // the silent connection was closed, a new one answered
    } finally {
      await pool.end();
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => proxy.close(resolve));
    }
  });

  it('withTransaction commits what resolves and rolls back what rejects, and gives the connection back either way', async () => {
    await queryOnce(db.url, 'CREATE TABLE tx (id int PRIMARY KEY)');
    const pool = openPool(db.url, { applicationName: 'tx', max: 1 });
    try {
      expect(await withTransaction(pool, async (client) => (await client.query('INSERT INTO tx VALUES (1) RETURNING id')).rows)).toEqual([{ id: 1 }]);
      const bug = new Error('bug after a write');
      await expect(withTransaction(pool, async (client) => {
        await client.query('INSERT INTO tx VALUES (2)');
        throw bug;
      })).rejects.toBe(bug);
      await expect(withTransaction(pool, (client) => client.query('INSERT INTO tx VALUES (1)'))).rejects.toMatchObject({ code: '23505' });
      expect((await pool.query('SELECT id FROM tx ORDER BY id')).rows).toEqual([{ id: 1 }]);
      expect(pool.totalCount).toBeLessThanOrEqual(1);
    } finally {
      await pool.end();
    }
  });
});
