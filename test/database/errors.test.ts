// The classification of database errors, against errors a real PostgreSQL produces: a server that is down, read
// only, shutting a session down, too slow, or a transaction that lost a race, and the bugs that stay bugs.
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { classifyDatabaseError, DatabaseSchemaError, DatabaseUnavailableError, describeDatabaseError, isDatabaseUnavailable } from '../../src/database/errors.ts';
import { openPool } from '../../src/database/pool.ts';
import { postgresBinaries, queryOnce, startPostgres, type TestPostgres } from '../support/postgres.ts';
import { eventually } from '../support/wait.ts';

const bin = postgresBinaries();

/** The error `run` rejects with; fails the test if it resolves. */
async function errorOf(run: () => Promise<unknown>): Promise<Error & { code?: string }> {
  try {
    await run();
  } catch (error) {
    return error as Error & { code?: string };
  }
  throw new Error('expected a failure, it succeeded');
}

/** Asserts the real error is "unavailable" and that wrapping it keeps it as cause and never shows the password. */
function expectUnavailable(error: Error & { code?: string }, password: string): DatabaseUnavailableError {
  expect(isDatabaseUnavailable(error), `${error.code} ${error.message}`).toBe(true);
  const wrapped = classifyDatabaseError(error) as DatabaseUnavailableError;
  expect(wrapped).toBeInstanceOf(DatabaseUnavailableError);
  expect(wrapped).toMatchObject({ name: 'DatabaseUnavailableError', code: 'ERR_DATABASE_UNAVAILABLE' });
  expect(wrapped.cause).toBe(error);
  expect(wrapped.message).toMatch(/^database unavailable: \S/);
  expect(wrapped.message).not.toContain('\n');
  expect(wrapped.message).not.toContain(password);
  expect(classifyDatabaseError(wrapped)).toBe(wrapped);
  return wrapped;
}

describe.skipIf(!bin)('real errors of a real server', { timeout: 60_000 }, () => {
  let db: TestPostgres;
  beforeAll(async () => {
    db = await startPostgres({ fsync: false });
    await queryOnce(db.url, 'CREATE TABLE t (id int PRIMARY KEY, v int NOT NULL DEFAULT 0)');
  });
  afterAll(() => db?.stop());

  it('a server that is down: connection refused, with the address and no password', async () => {
    await db.kill('SIGKILL');
    try {
      const error = await errorOf(() => queryOnce(db.url, 'SELECT 1'));
      expect(error.code).toBe('ECONNREFUSED');
      expect(expectUnavailable(error, db.password).message).toBe(`database unavailable: connect ECONNREFUSED 127.0.0.1:${db.port}`);
    } finally {
      await db.restart();
    }
  });

  it('a pool whose server is down, then back: unavailable, then it works again', async () => {
    const pool = openPool(db.url, { applicationName: 'errors-test', max: 2 });
    try {
      expect((await pool.query('SELECT 1 AS one')).rows).toEqual([{ one: 1 }]);
      await db.kill('SIGKILL');
      expectUnavailable(await errorOf(() => pool.query('SELECT 1')), db.password);
      await db.restart();
      // the connection of before broke with the server; the pool replaces it
      await eventually(async () => expect((await pool.query('SELECT 1 AS one')).rows).toEqual([{ one: 1 }]));
    } finally {
      await pool.end();
    }
  });

  it('a read-only database (default_transaction_read_only): 25006', async () => {
    await db.admin('ALTER SYSTEM SET default_transaction_read_only = on');
    await db.admin('SELECT pg_reload_conf()');
    try {
      const error = await eventually(() => errorOf(() => queryOnce(db.url, 'INSERT INTO t (id) VALUES (1)')));
      expect(error.code).toBe('25006');
      expectUnavailable(error, db.password);
    } finally {
      await db.admin('ALTER SYSTEM RESET default_transaction_read_only');
      await db.admin('SELECT pg_reload_conf()');
      await eventually(() => queryOnce(db.url, 'INSERT INTO t (id) VALUES (1) ON CONFLICT DO NOTHING'));
    }
  });

  it('a session the administrator terminates (pg_terminate_backend): 57P01, and the connection is then unusable', async () => {
    const client = new pg.Client({ connectionString: db.url });
    const events: Error[] = [];
    client.on('error', (error) => events.push(error));
    await client.connect();
    try {
      const [{ pid }] = (await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows as [{ pid: number }];
      const sleeping = errorOf(() => client.query('SELECT pg_sleep(30)'));
      await eventually(async () => expect(await db.admin(`SELECT 1 FROM pg_stat_activity WHERE pid = $1 AND wait_event = 'PgSleep'`, [pid])).toHaveLength(1));
      await db.admin('SELECT pg_terminate_backend($1)', [pid]);
      const error = await sleeping;
      expect(error.code).toBe('57P01');
      expectUnavailable(error, db.password);
      expectUnavailable(await errorOf(() => client.query('SELECT 1')), db.password);
    } finally {
      await client.end().catch(() => {});
    }
  });

  it('a statement over statement_timeout: 57014', async () => {
    const error = await errorOf(() => queryOnce(db.url, `SET statement_timeout = 50; SELECT pg_sleep(5)`));
    expect(error.code).toBe('57014');
    expectUnavailable(error, db.password);
  });

  it('a serializable transaction that lost a race: 40001', async () => {
    const [a, b] = [new pg.Client({ connectionString: db.url }), new pg.Client({ connectionString: db.url })];
    await Promise.all([a.connect(), b.connect()]);
    try {
      await queryOnce(db.url, 'INSERT INTO t (id, v) VALUES (10, 0), (11, 0) ON CONFLICT (id) DO UPDATE SET v = 0');
      for (const c of [a, b]) await c.query('BEGIN ISOLATION LEVEL SERIALIZABLE');
      // write skew: each reads what the other writes
      await a.query('SELECT sum(v) FROM t WHERE id IN (10, 11)');
      await b.query('SELECT sum(v) FROM t WHERE id IN (10, 11)');
      await a.query('UPDATE t SET v = 1 WHERE id = 10');
      await b.query('UPDATE t SET v = 1 WHERE id = 11');
      await a.query('COMMIT');
      const error = await errorOf(() => b.query('COMMIT'));
      expect(error.code).toBe('40001');
      expectUnavailable(error, db.password);
    } finally {
      await Promise.all([a.end(), b.end()]);
    }
  });

  it('a deadlock: 40P01 for the transaction the server picks (after deadlock_timeout, 1 s)', async () => {
    const [a, b] = [new pg.Client({ connectionString: db.url }), new pg.Client({ connectionString: db.url })];
    await Promise.all([a.connect(), b.connect()]);
    try {
      await queryOnce(db.url, 'INSERT INTO t (id) VALUES (20), (21) ON CONFLICT DO NOTHING');
      await a.query('BEGIN');
      await b.query('BEGIN');
      await a.query('UPDATE t SET v = v + 1 WHERE id = 20');
      await b.query('UPDATE t SET v = v + 1 WHERE id = 21');
      const outcomes = await Promise.allSettled([a.query('UPDATE t SET v = v + 1 WHERE id = 21'), b.query('UPDATE t SET v = v + 1 WHERE id = 20')]);
      const failed = outcomes.filter((o): o is PromiseRejectedResult => o.status === 'rejected');
      expect(failed).toHaveLength(1);
      expect((failed[0]!.reason as { code?: string }).code).toBe('40P01');
      expectUnavailable(failed[0]!.reason as Error, db.password);
    } finally {
      await Promise.all([a.query('ROLLBACK').catch(() => {}), b.query('ROLLBACK').catch(() => {})]);
      await Promise.all([a.end(), b.end()]);
    }
  });

  it('no free connection in the pool within connectionTimeoutMs', async () => {
    const pool = openPool(db.url, { applicationName: 'errors-test', max: 1, connectionTimeoutMs: 100 });
    // The one connection itself may take longer than 100 ms to open on a busy machine: tried until it opens.
    const held = await eventually(() => pool.connect(), 10_000);
    try {
      const error = await errorOf(() => pool.query('SELECT 1'));
      expect(error.message).toBe('timeout exceeded when trying to connect');
      expectUnavailable(error, db.password);
    } finally {
      held.release();
      await pool.end();
    }
  });

  it.each([
    ['a syntax error', 'SELEC 1', '42601'],
    ['a table that does not exist', 'SELECT * FROM nowhere', '42P01'],
    ['a duplicate key', 'INSERT INTO t (id) VALUES (1); INSERT INTO t (id) VALUES (1)', '23505'],
    ['a NOT NULL violation', 'INSERT INTO t (id, v) VALUES (99, NULL)', '23502'],
  ])('%s stays a bug', async (_name, sql, code) => {
    const error = await errorOf(() => queryOnce(db.url, sql));
    expect(error.code).toBe(code);
    expect(isDatabaseUnavailable(error)).toBe(false);
    expect(classifyDatabaseError(error)).toBe(error);
  });

  it('a wrong password (28P01) is a configuration error, not an outage', async () => {
    const error = await errorOf(() => queryOnce(db.url.replace(db.password, 'wrong'), 'SELECT 1'));
    expect(error.code).toBe('28P01');
    expect(isDatabaseUnavailable(error)).toBe(false);
  });
});

describe('classification without a server', () => {
  const withCode = (code: string, message = 'x'): Error => Object.assign(new Error(message), { code });

  it.each(['08000', '08006', '08001', '57P01', '57P02', '57P03', '25006', '53000', '53100', '53200', '53300', '58030', '40001', '40P01', '55P03', '57014'])(
    'SQLSTATE %s is unavailable', (code) => expect(isDatabaseUnavailable(withCode(code))).toBe(true));

  it.each(['42601', '23505', '22P02', '28P01', '3D000', 'XX000', '0A000', '57P04'])('SQLSTATE %s is not', (code) => {
    expect(isDatabaseUnavailable(withCode(code))).toBe(false);
  });

  it('looks through the cause chain and an AggregateError (every address of a host name refused)', () => {
    expect(isDatabaseUnavailable(new Error('ingest failed', { cause: withCode('ECONNRESET') }))).toBe(true);
    const refused = Object.assign(new AggregateError([withCode('ECONNREFUSED', 'connect ECONNREFUSED ::1:5432'), withCode('ECONNREFUSED', 'connect ECONNREFUSED 127.0.0.1:5432')], ''), { code: 'ECONNREFUSED' });
    expect(isDatabaseUnavailable(refused)).toBe(true);
    expect(describeDatabaseError(refused)).toBe('connect ECONNREFUSED ::1:5432');
    expect(isDatabaseUnavailable(new Error('bug', { cause: new TypeError('x is undefined') }))).toBe(false);
    for (const value of [undefined, null, 'ECONNREFUSED', 42, {}]) expect(isDatabaseUnavailable(value)).toBe(false);
  });

  it('describes an error on one line with its code, URLs without their credentials', () => {
    expect(describeDatabaseError(withCode('53100', 'could not extend file: No space left on device\nHINT: Check free disk space.'))).toBe('53100 could not extend file: No space left on device');
    const leaky = describeDatabaseError(new Error('cannot reach postgres://notifier:hunter2@db:5432/notifier?password=hunter3'));
    expect(leaky).not.toMatch(/hunter/);
    expect(leaky).toContain('postgres://db:5432/notifier');
    expect(describeDatabaseError('plain')).toBe('plain');
  });

  it.each([
    [new DatabaseUnavailableError(new Error('down')), 'DatabaseUnavailableError', 'ERR_DATABASE_UNAVAILABLE'],
    [new DatabaseSchemaError('newer'), 'DatabaseSchemaError', 'ERR_DATABASE_SCHEMA'],
  ])('%s has its name and stable code', (error, name, code) => {
    expect(error).toBeInstanceOf(Error);
    expect(error).toMatchObject({ name, code });
  });
});
