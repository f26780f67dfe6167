/**
 * Connections to PostgreSQL: one `pg.Pool` per process, with the settings every statement connection needs, and
 * `withClient`, the one way to hold a connection for several statements.
 */
import pg from 'pg';
import type { Logger } from 'pino';
import { describeDatabaseError } from './errors.ts';
import { redactDatabaseUrl } from './url.ts';

/** Settings of `openPool` and `clientConfig`; only `applicationName` is required. */
export interface PoolOptions {
  /** Shown in `pg_stat_activity.application_name`: `registry-notifier/<replica id>`, or what a command is. */
  applicationName: string;
  /** Connections at most (default 10). */
  max?: number;
  /** Connecting, or waiting for a free connection, gives up after this (default 5 s). */
  connectionTimeoutMs?: number;
  /** The server cancels a statement running longer (default 30 s; 0 = never, for a LISTEN connection). */
  statementTimeoutMs?: number;
  /**
   * This process gives up on a query with no answer this long and closes its connection (default the statement
   * timeout + 5 s; none when that is 0): a server or network that went silent answers nothing, not even the cancel.
   */
  queryTimeoutMs?: number;
  /** The server ends a session left idle inside a transaction this long, releasing its locks (default 60 s). */
  idleInTransactionTimeoutMs?: number;
  /** Where a connection that fails while idle in the pool is reported (it is replaced on next use). */
  logger?: Logger;
}

// Long enough for a loaded server to hand out a connection, short enough that the ingest answers 503 well
// within the registry's own timeout (its endpoint `timeout`, typically 1 to 5 s... plus its retry).
const CONNECTION_TIMEOUT_MS = 5_000;
// No statement of ours legitimately runs this long; one that does holds locks other replicas wait on.
const STATEMENT_TIMEOUT_MS = 30_000;
/**
 * Beyond the statement timeout, the time a cancelled statement's error takes to come back: past it the server or
 * the network is silent (TCP would retry for many minutes), and a replica must see it to answer 503 and turn unready.
 */
export const QUERY_TIMEOUT_MARGIN_MS = 5_000;
// A process paused or stuck inside a transaction must not hold its row locks (an endpoint's lease) forever.
const IDLE_IN_TRANSACTION_TIMEOUT_MS = 60_000;
// TCP keep-alive probes from this idle time on: a connection to a server that vanished (a failed-over
// database, a dropped NAT entry) is noticed by the kernel instead of hanging the next query.
const KEEPALIVE_INITIAL_DELAY_MS = 10_000;
// Idle connections are closed after this; the pool opens new ones on demand.
const IDLE_TIMEOUT_MS = 30_000;
const MAX_CONNECTIONS = 10;

/** The connection settings of one client to `url` (the pool's, or a dedicated LISTEN connection's with statementTimeoutMs 0). */
export function clientConfig(url: string, options: PoolOptions): pg.ClientConfig {
  const statementTimeoutMs = options.statementTimeoutMs ?? STATEMENT_TIMEOUT_MS;
  const queryTimeoutMs = options.queryTimeoutMs ?? (statementTimeoutMs > 0 ? statementTimeoutMs + QUERY_TIMEOUT_MARGIN_MS : 0);
  return {
    connectionString: url,
    application_name: options.applicationName,
    connectionTimeoutMillis: options.connectionTimeoutMs ?? CONNECTION_TIMEOUT_MS,
    statement_timeout: statementTimeoutMs,
    ...(queryTimeoutMs > 0 && { query_timeout: queryTimeoutMs }),
    idle_in_transaction_session_timeout: options.idleInTransactionTimeoutMs ?? IDLE_IN_TRANSACTION_TIMEOUT_MS,
    keepAlive: true,
    keepAliveInitialDelayMillis: KEEPALIVE_INITIAL_DELAY_MS,
  };
}

/**
 * A pool of connections to `url` (`postgres://…`). Opening connects nothing; the first query does. An idle
 * connection that fails (the server restarted, a network cut) is dropped and logged, never a crash. `end()` once.
 */
export function openPool(url: string, options: PoolOptions): pg.Pool {
  const pool = new pg.Pool({ ...clientConfig(url, options), max: options.max ?? MAX_CONNECTIONS, idleTimeoutMillis: IDLE_TIMEOUT_MS });
  const shown = redactDatabaseUrl(url);
  // pg-pool emits 'error' for an idle connection's failure; an 'error' without a listener would end the process.
  pool.on('error', (error) => {
    options.logger?.warn({ database: shown, error: describeDatabaseError(error) }, 'database: an idle connection failed; it is replaced on next use');
  });
  return pool;
}

/**
 * Runs `work` with one connection of `pool` and gives it back. A connection the work failed on is closed rather
 * than reused (it may be broken, or inside a failed transaction). While held, the connection's own failures
 * reach `work` as failed queries instead of an unhandled 'error' event.
 */
export async function withClient<T>(pool: pg.Pool, work: (client: pg.PoolClient) => Promise<T>): Promise<T> {
  const client = await pool.connect();
  const ignore = (): void => {}; // the next query on it rejects with the same error
  client.on('error', ignore);
  let failed = false;
  try {
    return await work(client);
  } catch (error) {
    failed = true;
    throw error;
  } finally {
    client.off('error', ignore);
    client.release(failed);
  }
}
