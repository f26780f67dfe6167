// Proves the PostgreSQL harness against the real server: who may connect and how, its settings, a restart and a
// crash in the middle of a test, and that no server outlives its test process however that process ends.
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventually } from './wait.ts';
import { postgresBinaries, queryOnce, startPostgres, type TestPostgres } from './postgres.ts';

const bin = postgresBinaries();

/** Whether a process with `pid` still runs (a zombie waiting to be reaped counts as gone). */
function alive(pid: number): boolean {
  try {
    return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}

/** The SQLSTATE (or Node error code) a query fails with; throws if it succeeds. */
async function failure(run: () => Promise<unknown>): Promise<string> {
  try {
    await run();
  } catch (error) {
    return String((error as { code?: unknown }).code);
  }
  throw new Error('the query succeeded');
}

describe.skipIf(!bin)('TestPostgres (a real PostgreSQL server)', { timeout: 60_000 }, () => {
  let db: TestPostgres;
  beforeAll(async () => {
    db = await startPostgres();
  });
  afterAll(() => db?.stop());

  it('gives a password URL for a role that owns its database and is no superuser', async () => {
    expect(db.url).toBe(`postgres://notifier:${db.password}@127.0.0.1:${db.port}/notifier`);
    const [row] = await queryOnce<{ user: string; db: string; superuser: string; owner: string }>(db.url,
      `SELECT current_user AS user, current_database() AS db, current_setting('is_superuser') AS superuser,
              (SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = current_database()) AS owner`);
    expect(row).toEqual({ user: 'notifier', db: 'notifier', superuser: 'off', owner: 'notifier' });
    await queryOnce(db.url, 'CREATE TABLE owned (x int)'); // PostgreSQL 15 lets only the owner create in public
  });

  it('refuses a wrong password (the URL carries a real one)', async () => {
    const wrong = db.url.replace(db.password, 'not-the-password');
    expect(await failure(() => queryOnce(wrong, 'SELECT 1'))).toBe('28P01'); // invalid_password
  });

  it('listens on 127.0.0.1 only, keeps its socket in its temp dir, and syncs commits to disk', async () => {
    const settings = await db.admin<{ name: string; setting: string }>(
      `SELECT name, setting FROM pg_settings WHERE name IN ('listen_addresses', 'unix_socket_directories', 'fsync', 'synchronous_commit', 'port') ORDER BY name`);
    expect(Object.fromEntries(settings.map((s) => [s.name, s.setting]))).toEqual({
      fsync: 'on',
      listen_addresses: '127.0.0.1',
      port: String(db.port),
      synchronous_commit: 'on',
      unix_socket_directories: db.dir,
    });
    expect(existsSync(join(db.dir, `.s.PGSQL.${db.port}`))).toBe(true);
  });

  it('createDatabase gives a fresh empty database the role owns', async () => {
    const url = await db.createDatabase();
    expect(url).not.toBe(db.url);
    const tables = await queryOnce(url, `SELECT 1 FROM pg_tables WHERE schemaname = 'public'`);
    expect(tables).toEqual([]);
    await queryOnce(url, 'CREATE TABLE mine (x int)');
  });

  it('restart(): a connection of before fails, a query while it is down fails, the data survives', async () => {
    await queryOnce(db.url, 'CREATE TABLE kept (x int); INSERT INTO kept VALUES (42)');
    const client = new pg.Client({ connectionString: db.url });
    const errors: Error[] = [];
    client.on('error', (error) => errors.push(error));
    await client.connect();
    try {
      const pid = db.pid!;
      await db.restart();
      expect(db.pid).not.toBe(pid);
      expect(alive(pid)).toBe(false);
      await expect(client.query('SELECT 1')).rejects.toThrow();
    } finally {
      await client.end().catch(() => {});
    }
    expect(await queryOnce(db.url, 'SELECT x FROM kept')).toEqual([{ x: 42 }]);
  });

  it('kill(): SIGKILL is a crash; queries fail until restart() brings it back with every commit', async () => {
    await queryOnce(db.url, 'CREATE TABLE crashed (x int); INSERT INTO crashed VALUES (7)');
    const pid = db.pid!;
    await db.kill('SIGKILL');
    expect(db.running).toBe(false);
    expect(alive(pid)).toBe(false);
    expect(await failure(() => queryOnce(db.url, 'SELECT 1'))).toBe('ECONNREFUSED');
    await db.restart();
    expect(await queryOnce(db.url, 'SELECT x FROM crashed')).toEqual([{ x: 7 }]);
  });
});

describe.skipIf(!bin)('TestPostgres options and stop', { timeout: 60_000 }, () => {
  it('fsync: false turns fsync off but keeps synchronous_commit (a killed server keeps its commits); stop() ends the server, removes its dir, and is idempotent', async () => {
    const db = await startPostgres({ fsync: false });
    const pid = db.pid!;
    try {
      const rows = await db.admin<{ fsync: string; sync: string }>(`SELECT current_setting('fsync') AS fsync, current_setting('synchronous_commit') AS sync`);
      expect(rows).toEqual([{ fsync: 'off', sync: 'on' }]);
    } finally {
      await Promise.all([db.stop(), db.stop()]);
    }
    expect(alive(pid)).toBe(false);
    expect(existsSync(db.dir)).toBe(false);
    await db.stop();
    await expect(db.restart()).rejects.toMatchObject({ code: 'ERR_POSTGRES_STOPPED' });
  });

  // A test process that forgets stop(), or dies outright, must not leave a server behind.
  it.for(['exits without stop()', 'is killed with SIGKILL'])('a process that %s takes its server along', async (how) => {
    const script = `
      import { startPostgres } from ${JSON.stringify(join(import.meta.dirname, 'postgres.ts'))};
      const db = await startPostgres({ fsync: false });
      process.stdout.write(JSON.stringify({ pid: db.pid, dir: db.dir }) + '\\n');
      ${how.includes('SIGKILL') ? "process.kill(process.pid, 'SIGKILL');" : 'process.exit(0);'}
    `;
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
    await new Promise((resolve) => child.once('close', resolve));
    const { pid, dir } = JSON.parse(out) as { pid: number; dir: string };
    expect(pid).toBeGreaterThan(0);
    await eventually(() => expect(alive(pid), `postmaster ${pid}`).toBe(false), 15_000);
    if (how.includes('SIGKILL')) await rm(dir, { recursive: true, force: true }); // a killed process cannot clean up its dir
    else expect(existsSync(dir)).toBe(false);
  });
});
