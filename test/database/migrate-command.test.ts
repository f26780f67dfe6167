// `registry-notifier migrate` and the PostgreSQL flags as a user runs them: child processes of src/main.ts against a
// real server. Exit 0 migrated, 1 the database failed, 2 bad usage; one line on stderr, never the password.
import { spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MIGRATIONS } from '../../src/database/migrations.ts';
import { redactDatabaseUrl } from '../../src/database/url.ts';
import { postgresBinaries, queryOnce, startPostgres, type TestPostgres } from '../support/postgres.ts';

const ROOT = join(import.meta.dirname, '..', '..');
const MAIN = join(ROOT, 'src', 'main.ts');
const API_MD = join(ROOT, 'docs', 'api.md'); // the public contract
const bin = postgresBinaries();

interface Outcome { code: number | null; stdout: string[]; stderr: string[] }

/** Runs `node src/main.ts ...args` with no REGISTRY_NOTIFIER_* variable but those in `env`; resolves when it exits (deadline 20 s). */
function cli(args: string[], env: Record<string, string> = {}): Promise<Outcome> {
  const clean = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('REGISTRY_NOTIFIER_')));
  const child = spawn(process.execPath, [MAIN, ...args], { cwd: ROOT, env: { ...clean, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (err += chunk.toString()));
  const lines = (text: string): string[] => text.split('\n').filter((l) => l !== '');
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`still running after 20 s: ${out}${err}`));
    }, 20_000);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout: lines(out), stderr: lines(err) });
    });
  });
}

describe('redactDatabaseUrl', () => {
  it('drops user and password, masks query values, keeps host, port and database', () => {
    expect(redactDatabaseUrl('postgres://notifier:s3cret@db.example:5432/notifier?sslmode=require&password=also-secret')).toBe(
      'postgres://db.example:5432/notifier?sslmode=***&password=***');
    expect(redactDatabaseUrl('postgresql://notifier:p%40ss@[fd00::5]/n')).toBe('postgresql://[fd00::5]/n');
    expect(redactDatabaseUrl('postgres://u:pw#x@h/db')).toBe('(unparseable URL)');
  });
});

describe('the PostgreSQL flags on the command line', () => {
  it('serve --help documents every flag of api.md section 7 with its environment twin, and shows no value of the environment', async () => {
    const text = await readFile(API_MD, 'utf8');
    const section = text.slice(text.indexOf('## 7.'), text.indexOf('## 8.'));
    const flags = section.split('\n').filter((l) => l.startsWith('| `--')).map((row) => /`(--[a-z-]+)/.exec(row)![1]!);
    expect(flags).toEqual(['--database-url', '--replica-id', '--lease-duration']);
    const help = await cli(['serve', '--help'], { REGISTRY_NOTIFIER_DATABASE_URL: 'postgres://u:help-pw-77@db/x' });
    expect(help.code).toBe(0);
    for (const flag of flags) {
      expect(help.stdout.join('\n')).toMatch(new RegExp(`^\\s+${flag}(?![\\w-])`, 'm'));
      expect(help.stdout.join('\n')).toContain(`REGISTRY_NOTIFIER_${flag.slice(2).toUpperCase().replaceAll('-', '_')}`);
    }
    expect(help.stdout.join('\n')).not.toContain('help-pw-77');
  });

  it.each([
    ['migrate without a URL', ['migrate'], {}],
    ['migrate with an empty variable', ['migrate'], { REGISTRY_NOTIFIER_DATABASE_URL: '' }],
    ['migrate with a URL of another scheme', ['migrate', '--database-url', 'mysql://notifier:usage-pw-31@db/notifier'], {}],
    ['migrate with an unparseable URL', [], { REGISTRY_NOTIFIER_DATABASE_URL: 'postgres://notifier:usage-pw-31#@db/notifier' }],
    ['serve with --database-url and --queue-dir', ['serve', '--endpoints', ROOT, '--database-url', 'postgres://notifier:usage-pw-31@db/n', '--queue-dir', '/tmp/q'], {}],
    ['serve with --database-url that is not a postgres URL', ['serve', '--endpoints', ROOT], { REGISTRY_NOTIFIER_DATABASE_URL: 'mysql://notifier:usage-pw-31@db/n' }],
    ['serve with a lease under a second', ['serve', '--endpoints', ROOT, '--lease-duration', '100ms'], {}],
  ] as [string, string[], Record<string, string>][])('%s: exit 2, one line, no password', async (_name, args, env) => {
    const outcome = await cli(args.length > 0 ? args : ['migrate'], env);
    expect(outcome.code).toBe(2);
    expect(outcome.stderr).toHaveLength(1);
    expect(outcome.stderr[0]).toMatch(/^registry-notifier: \S/);
    expect(outcome.stdout).toEqual([]);
    expect(outcome.stderr.join('')).not.toContain('usage-pw-31');
  });

  it('migrate --help: exit 0', async () => {
    const outcome = await cli(['migrate', '--help']);
    expect(outcome).toMatchObject({ code: 0, stderr: [] });
    expect(outcome.stdout[0]).toBe('Usage: registry-notifier migrate --database-url URL');
  });
});

describe.skipIf(!bin)('registry-notifier migrate (a real PostgreSQL)', { timeout: 60_000 }, () => {
  let db: TestPostgres;
  beforeAll(async () => {
    db = await startPostgres({ fsync: false });
  });
  afterAll(() => db?.stop());

  it('creates the schema (exit 0), then finds it up to date; the URL may come from the variable', async () => {
    const url = await db.createDatabase();
    const first = await cli(['migrate', '--database-url', url]);
    const versions = MIGRATIONS.map((m) => m.version);
    const latest = versions.at(-1)!;
    expect(latest).toBeGreaterThanOrEqual(3);
    expect(first).toEqual({ code: 0, stdout: [`migrated the database schema to version ${latest} (applied ${versions.join(', ')})`], stderr: [] });
    expect(await queryOnce(url, 'SELECT version FROM schema_migrations ORDER BY version')).toEqual(versions.map((version) => ({ version })));
    const again = await cli(['migrate'], { REGISTRY_NOTIFIER_DATABASE_URL: url });
    expect(again).toEqual({ code: 0, stdout: [`the database schema is up to date (version ${latest})`], stderr: [] });
  });

  it('the server is down: exit 1 with one line that names the server but not the password', async () => {
    await db.kill('SIGKILL');
    try {
      const outcome = await cli(['migrate', '--database-url', db.url]);
      expect(outcome.code).toBe(1);
      expect(outcome.stdout).toEqual([]);
      expect(outcome.stderr).toEqual([`registry-notifier: migrate postgres://127.0.0.1:${db.port}/notifier: connect ECONNREFUSED 127.0.0.1:${db.port}`]);
    } finally {
      await db.restart();
    }
  });

  it('a wrong password: exit 1 with one line, neither password in it', async () => {
    const outcome = await cli(['migrate', '--database-url', db.url.replace(db.password, 'wrong-pw-5e1')]);
    expect(outcome.code).toBe(1);
    expect(outcome.stderr).toEqual([`registry-notifier: migrate postgres://127.0.0.1:${db.port}/notifier: 28P01 password authentication failed for user "notifier"`]);
  });

  it('a database migrated by a newer release: exit 1, and nothing changes', async () => {
    const url = await db.createDatabase();
    expect((await cli(['migrate', '--database-url', url])).code).toBe(0);
    await queryOnce(url, `INSERT INTO schema_migrations (version, name, checksum) VALUES (99, 'from the future', 'x')`);
    const outcome = await cli(['migrate', '--database-url', url]);
    expect(outcome.code).toBe(1);
    const known = `up to ${MIGRATIONS.length}`;
    expect(outcome.stderr).toEqual([expect.stringMatching(new RegExp(String.raw`^registry-notifier: migrate postgres://127\.0\.0\.1:\d+/test_\d+: the database schema has migration 99 \(from the future\), newer than this release knows \(${known}\)`))]);
  });
});
