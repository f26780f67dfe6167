/**
 * `registry-notifier migrate --database-url URL`: creates or updates the PostgreSQL schema and exits, for a
 * migration step of its own (a Helm hook, an init container) before the replicas start.
 */
import type { Command } from './config.ts';
import { describeDatabaseError } from './database/errors.ts';
import { migrate } from './database/migrate.ts';
import { openPool } from './database/pool.ts';
import { redactDatabaseUrl } from './database/url.ts';

/** Runs the migrate command; resolves with the exit code (0 migrated or up to date, 1 the database failed). */
export async function migrateCommand(command: Extract<Command, { command: 'migrate' }>): Promise<number> {
  const pool = openPool(command.databaseUrl, { applicationName: 'registry-notifier migrate', max: 1 });
  try {
    const { applied, version } = await migrate(pool);
    process.stdout.write(applied.length > 0
      ? `migrated the database schema to version ${version} (applied ${applied.join(', ')})\n`
      : `the database schema is up to date (version ${version})\n`);
    return 0;
  } catch (error) {
    process.stderr.write(`registry-notifier: migrate ${redactDatabaseUrl(command.databaseUrl)}: ${describeDatabaseError(error)}\n`);
    return 1;
  } finally {
    await pool.end();
  }
}
