import { createHash } from 'node:crypto';
import type pg from 'pg';
import { DatabaseSchemaError } from './errors.ts';
import { MIGRATIONS, type Migration } from './migrations.ts';
import { QUERY_TIMEOUT_MARGIN_MS } from './pool.ts';
import { withTransaction } from './transaction.ts';

/** What `migrate` did: the versions it applied now (empty when the schema was up to date) and the version it is at. */
export interface MigrationResult {
  readonly applied: readonly number[];
  readonly version: number;
}

/** The key of the advisory lock every migrator takes: "RNMIGRAT" in ASCII, one no other application is likely to use. */
export const MIGRATION_LOCK_KEY = '5930479889486496084';
// Migrations may rewrite big tables, and a second replica waits here for the first one's migration: far longer
// than the pool's per-statement timeout, but not forever.
const MIGRATION_TIMEOUT_MS = 10 * 60_000;

/** The checksum recorded for a migration: SHA-256 of its SQL. */
export function checksum(migration: Migration): string {
  return createHash('sha256').update(migration.sql).digest('hex');
}

/**
 * Brings the schema to the newest migration in one transaction under `pg_advisory_xact_lock`: replicas that start
 * together take turns, and each migration is applied exactly once (recorded in `schema_migrations` with its
 * checksum); a crash half-way leaves the schema as it was. Rejects with `DatabaseSchemaError` when the database
 * has a migration this release does not know (it is newer) or one that differs from ours, and with the
 * database's own error when it cannot be reached.
 */
export function migrate(pool: pg.Pool, migrations: readonly Migration[] = MIGRATIONS): Promise<MigrationResult> {
  return withTransaction(pool, async (client) => {
    // The pool gives up on a query after its statement timeout and a margin (pool.ts); these wait far longer.
    // (pg reads query_timeout from a query's config too; its types do not say so.)
    const query = <R extends pg.QueryResultRow>(text: string, values?: unknown[]): Promise<pg.QueryResult<R>> => {
      const config: pg.QueryConfig & { query_timeout: number } = { text, ...(values && { values }), query_timeout: MIGRATION_TIMEOUT_MS + QUERY_TIMEOUT_MARGIN_MS };
      return client.query<R>(config);
    };
    await query(`SET LOCAL statement_timeout = ${MIGRATION_TIMEOUT_MS}`);
    await query('SELECT pg_advisory_xact_lock($1)', [MIGRATION_LOCK_KEY]);
    await query(`CREATE TABLE IF NOT EXISTS schema_migrations (
      version    integer PRIMARY KEY,
      name       text NOT NULL,
      checksum   text NOT NULL,
      applied_at timestamptz NOT NULL DEFAULT now()
    )`);
    const { rows } = await query<{ version: number; name: string; checksum: string }>('SELECT version, name, checksum FROM schema_migrations ORDER BY version');
    const latest = migrations.at(-1)?.version ?? 0;
    for (const row of rows) {
      const ours = migrations.find((m) => m.version === row.version);
      if (!ours) {
        throw new DatabaseSchemaError(`the database schema has migration ${row.version} (${row.name}), newer than this release knows (up to ${latest}); run a release that knows it`);
      }
      if (checksum(ours) !== row.checksum) {
        throw new DatabaseSchemaError(`migration ${row.version} (${row.name}) in the database differs from this release's; a released migration must never change`);
      }
    }
    const done = new Set(rows.map((row) => row.version));
    const applied: number[] = [];
    for (const migration of migrations) {
      if (done.has(migration.version)) continue;
      await query(migration.sql);
      await query('INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)', [migration.version, migration.name, checksum(migration)]);
      applied.push(migration.version);
    }
    return { applied, version: latest };
  });
}
