// Migrations against a real server: the schema is created once, replicas that migrate together take turns under the
// advisory lock and apply each migration exactly once, a rerun changes nothing, a failure changes nothing, and a
// schema this release does not know is refused.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DatabaseSchemaError } from '../../src/database/errors.ts';
import { checksum, migrate, MIGRATION_LOCK_KEY } from '../../src/database/migrate.ts';
import { MIGRATIONS, type Migration } from '../../src/database/migrations.ts';
import { openPool } from '../../src/database/pool.ts';
import { postgresBinaries, queryOnce, startPostgres, type TestPostgres } from '../support/postgres.ts';
import { eventually } from '../support/wait.ts';

const bin = postgresBinaries();
// Every version this release knows, and the latest.
const ALL = MIGRATIONS.map((m) => m.version);
const LATEST = MIGRATIONS.length;

/** `migrate` with a pool of its own, as a replica does at start. */
async function migrateOnce(url: string, migrations?: readonly Migration[], name = 'migrate-test'): Promise<Awaited<ReturnType<typeof migrate>>> {
  const pool = openPool(url, { applicationName: name, max: 1 });
  try {
    return await migrate(pool, migrations);
  } finally {
    await pool.end();
  }
}

/** The tables of the public schema and their columns, as `table.column type nullability`. */
async function schemaOf(url: string): Promise<string[]> {
  const rows = await queryOnce<{ c: string }>(url, `SELECT table_name || '.' || column_name || ' ' || data_type || ' ' || is_nullable AS c
    FROM information_schema.columns WHERE table_schema = 'public' ORDER BY table_name, ordinal_position`);
  return rows.map((r) => r.c);
}

describe('the migrations', () => {
  it('are numbered 1, 2, 3… without gaps, each named', () => {
    expect(MIGRATIONS.map((m) => m.version)).toEqual(MIGRATIONS.map((_, i) => i + 1));
    for (const m of MIGRATIONS) expect(m.name.trim()).not.toBe('');
  });
});

describe.skipIf(!bin)('migrate (a real PostgreSQL)', { timeout: 60_000 }, () => {
  let db: TestPostgres;
  beforeAll(async () => {
    db = await startPostgres({ fsync: false });
  });
  afterAll(() => db?.stop());

  it('creates the schema on a fresh database and records every migration with its checksum', async () => {
    const url = await db.createDatabase();
    expect(await migrateOnce(url)).toEqual({ applied: ALL, version: LATEST });
    expect(await schemaOf(url)).toEqual([
      'dead_letters.endpoint text NO', 'dead_letters.seq bigint NO', 'dead_letters.reason text NO', 'dead_letters.at bigint NO',
      'deliveries.endpoint text NO', 'deliveries.pos bigint NO', 'deliveries.seq bigint NO',
      'endpoint_stats.endpoint text NO', 'endpoint_stats.delivered bigint NO', 'endpoint_stats.failures bigint NO', 'endpoint_stats.errors bigint NO',
      'endpoint_stats.dead_lettered bigint NO', 'endpoint_stats.coalesced bigint NO', 'endpoint_stats.responses jsonb NO', 'endpoint_stats.last_success bigint YES', 'endpoint_stats.last_failure bigint YES',
      'endpoint_stats.last_error text YES', 'endpoint_stats.consecutive_failures integer NO',
      'endpoints.name text NO', 'endpoints.done bigint NO', 'endpoints.owner text YES', 'endpoints.epoch bigint NO', 'endpoints.lease_until timestamp with time zone YES',
      'events.seq bigint NO', 'events.id text NO', 'events.json text NO', 'events.accepted_at bigint NO',
      'queues.name text NO', 'queues.next_pos bigint NO',
      'recent_ids.id text NO', 'recent_ids.at timestamp with time zone NO',
      'replicas.id text NO', 'replicas.seen_until timestamp with time zone NO',
      'schema_migrations.version integer NO', 'schema_migrations.name text NO', 'schema_migrations.checksum text NO', 'schema_migrations.applied_at timestamp with time zone NO',
    ]);
    const indexes = await queryOnce<{ indexname: string }>(url, `SELECT indexname FROM pg_indexes WHERE schemaname = 'public' AND indexname LIKE '%\\_by\\_%' ORDER BY 1`);
    expect(indexes.map((i) => i.indexname)).toEqual(['dead_letters_by_seq', 'deliveries_by_seq', 'recent_ids_by_at']);
    expect(await queryOnce(url, 'SELECT version, name, checksum FROM schema_migrations ORDER BY version')).toEqual(
      MIGRATIONS.map((m) => ({ version: m.version, name: m.name, checksum: checksum(m) })),
    );
  });

  it('the schema works as its comments say: identity seq, defaults, cascade from an endpoint', async () => {
    const url = await db.createDatabase();
    await migrateOnce(url);
    await queryOnce(url, `
      INSERT INTO endpoints (name) VALUES ('team/hook');
      INSERT INTO events (id, json, accepted_at) VALUES ('a', '{}', 1), ('b', '{}', 2);
      INSERT INTO deliveries (endpoint, pos, seq) SELECT 'team/hook', seq, seq FROM events;
      INSERT INTO dead_letters (endpoint, seq, reason, at) VALUES ('team/hook', 1, 'budget', 3);
      DELETE FROM endpoints WHERE name = 'team/hook'`);
    const rows = await queryOnce(url, `
      SELECT (SELECT count(*) FROM deliveries)::int AS deliveries, (SELECT count(*) FROM dead_letters)::int AS dead, (SELECT array_agg(seq ORDER BY seq) FROM events) AS seqs`);
    expect(rows).toEqual([{ deliveries: 0, dead: 0, seqs: ['1', '2'] }]);
    await expect(queryOnce(url, `INSERT INTO events (seq, id, json, accepted_at) VALUES (9, 'x', '{}', 1)`)).rejects.toMatchObject({ code: '428C9' });
    expect(await queryOnce(url, `INSERT INTO endpoints (name) VALUES ('e') RETURNING done, epoch, owner, lease_until`)).toEqual([
      { done: '0', epoch: '0', owner: null, lease_until: null },
    ]);
  });

  it('a second run is a no-op', async () => {
    const url = await db.createDatabase();
    await migrateOnce(url);
    await queryOnce(url, `INSERT INTO endpoints (name) VALUES ('kept')`);
    expect(await migrateOnce(url)).toEqual({ applied: [], version: LATEST });
    expect(await queryOnce(url, 'SELECT name FROM endpoints')).toEqual([{ name: 'kept' }]);
    expect(await queryOnce(url, 'SELECT count(*)::int AS n FROM schema_migrations')).toEqual([{ n: LATEST }]);
  });

  it.each([2, 5])('%i replicas migrating one fresh database at once all succeed and apply each migration exactly once', async (replicas) => {
    const url = await db.createDatabase();
    const pools = Array.from({ length: replicas }, (_, i) => openPool(url, { applicationName: `replica-${i}`, max: 1 }));
    try {
      await Promise.all(pools.map((pool) => pool.query('SELECT 1'))); // connected, so they start together
      const results = await Promise.all(pools.map((pool) => migrate(pool)));
      expect(results.filter((r) => r.applied.length > 0)).toEqual([{ applied: ALL, version: LATEST }]);
      expect(results.every((r) => r.version === LATEST)).toBe(true);
    } finally {
      await Promise.all(pools.map((pool) => pool.end()));
    }
    expect(await queryOnce(url, 'SELECT version FROM schema_migrations ORDER BY version')).toEqual(ALL.map((version) => ({ version })));
  });

  it('waits for whoever holds the migration lock, longer than the pool waits for a query, then finds the work done', async () => {
    const url = await db.createDatabase();
    const holder = openPool(url, { applicationName: 'lock-holder', max: 1 });
    // The pool gives up on an ordinary query after 300 ms; waiting for the lock is not one.
    const waiter = openPool(url, { applicationName: 'lock-waiter', max: 1, queryTimeoutMs: 300 });
    try {
      // the first replica, in the middle of its migration
      const client = await holder.connect();
      await client.query('BEGIN');
      await client.query('SELECT pg_advisory_xact_lock($1)', [MIGRATION_LOCK_KEY]);
      const second = migrate(waiter);
      await eventually(async () => expect(await db.admin(`SELECT 1 FROM pg_stat_activity WHERE application_name = 'lock-waiter' AND wait_event_type = 'Lock' AND wait_event = 'advisory'`)).toHaveLength(1));
      await new Promise((resolve) => setTimeout(resolve, 600)); // the first migration takes longer than 300 ms
      await client.query('COMMIT');
      client.release();
      expect(await second).toEqual({ applied: ALL, version: LATEST });
    } finally {
      await Promise.all([holder.end(), waiter.end()]);
    }
  });

  it('a migration that fails leaves the database as it was, earlier ones of the same run included', async () => {
    const url = await db.createDatabase();
    const broken: Migration = { version: LATEST + 1, name: 'broken', sql: 'CREATE TABLE half (x int); SELECT no_such_function()' };
    await expect(migrateOnce(url, [...MIGRATIONS, broken])).rejects.toMatchObject({ code: '42883' });
    expect(await schemaOf(url)).toEqual([]);
    expect(await migrateOnce(url)).toEqual({ applied: ALL, version: LATEST });
  });

  it('refuses a database migrated by a newer release, and a migration that changed since it was applied', async () => {
    const url = await db.createDatabase();
    const next: Migration = { version: LATEST + 1, name: 'from the future', sql: 'ALTER TABLE events ADD COLUMN tenant text' };
    expect(await migrateOnce(url, [...MIGRATIONS, next])).toEqual({ applied: [...ALL, LATEST + 1], version: LATEST + 1 });
    const newer = await migrateOnce(url).catch((error: unknown) => error);
    expect(newer).toBeInstanceOf(DatabaseSchemaError);
    expect(newer).toMatchObject({ code: 'ERR_DATABASE_SCHEMA', message: expect.stringContaining(`migration ${LATEST + 1} (from the future), newer than this release knows (up to ${LATEST})`) });

    const edited: Migration = { ...MIGRATIONS[0]!, sql: `${MIGRATIONS[0]!.sql}\nCREATE TABLE sneaky (x int);` };
    const changed = await migrateOnce(url, [edited, ...MIGRATIONS.slice(1), next]).catch((error: unknown) => error);
    expect(changed).toMatchObject({ code: 'ERR_DATABASE_SCHEMA', message: expect.stringContaining(`migration 1 (${MIGRATIONS[0]!.name}) in the database differs`) });
  });
});
