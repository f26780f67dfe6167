/**
 * What a failed database call means for the caller: "unavailable now, retry later" (the server is down,
 * restarting, read-only, full, overloaded, or the transaction lost a race) or a bug. The ingest answers the
 * first with 503 + Retry-After (api.md §7) and never another 5xx for it.
 */
import { NotifierError } from '../notifications/errors.ts';
import { redactUrlsIn } from '../notifications/http-sink.ts';

/** The database cannot serve us now (unreachable, read-only, full, shutting down); retrying later may work. */
export class DatabaseUnavailableError extends NotifierError {
  constructor(cause: unknown) {
    super('ERR_DATABASE_UNAVAILABLE', `database unavailable: ${describeDatabaseError(cause)}`, { cause });
  }
}

/** The schema in the database is not one this release can work with (newer, or a migration that differs). */
export class DatabaseSchemaError extends NotifierError {
  constructor(message: string) {
    super('ERR_DATABASE_SCHEMA', message);
  }
}

// SQLSTATE classes that mean "not now": 08 connection exception, 53 insufficient resources (53100 disk_full,
// 53200 out_of_memory, 53300 too_many_connections), 58 system error (I/O errors of the server's disk).
const UNAVAILABLE_CLASSES = new Set(['08', '53', '58']);
const UNAVAILABLE_STATES = new Set([
  '57P01', // admin_shutdown: pg_terminate_backend, or a fast/smart shutdown
  '57P02', // crash_shutdown: another backend crashed, the server restarts
  '57P03', // cannot_connect_now: the server is starting up or shutting down
  '25006', // read_only_sql_transaction: a standby, or default_transaction_read_only
  '40001', // serialization_failure: the transaction lost a race, retrying it is the documented answer
  '40P01', // deadlock_detected: likewise
  '55P03', // lock_not_available: lock_timeout while another transaction holds the lock
  '57014', // query_canceled: statement_timeout, the server is too slow right now
]);
// Node's socket errors on the way to the server.
const UNAVAILABLE_ERRNOS = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN', 'ECONNABORTED']);
// pg and pg-pool raise these as plain Errors without a code: a connect or pool timeout, a connection that ended.
const UNAVAILABLE_MESSAGES = [
  'timeout exceeded when trying to connect', // pg-pool: no connection free within connectionTimeoutMillis
  'Connection terminated due to connection timeout', // pg-pool: connecting took longer than that
  'timeout expired', // pg: the same timeout on a lone client
  'Connection terminated unexpectedly', // pg: the server closed the connection (restart, crash, network)
  'Client has encountered a connection error and is not queryable', // pg: a query on a connection that broke
  'Query read timeout', // pg: no answer within query_timeout (a silent server or network; see pool.ts)
];

/** Whether `error` (or an error in its `cause` chain) says the database is unavailable now rather than a bug. */
export function isDatabaseUnavailable(error: unknown): boolean {
  for (let e = error, depth = 0; e !== undefined && e !== null && depth < 10; e = (e as { cause?: unknown }).cause, depth++) {
    if (e instanceof DatabaseUnavailableError) return true;
    if (typeof e !== 'object') return false;
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string') {
      if (/^[0-9A-Z]{5}$/.test(code) && (UNAVAILABLE_CLASSES.has(code.slice(0, 2)) || UNAVAILABLE_STATES.has(code))) return true;
      if (UNAVAILABLE_ERRNOS.has(code)) return true;
    }
    // Node's connect tries every address of a host name and reports them together.
    if (e instanceof AggregateError && e.errors.some(isDatabaseUnavailable)) return true;
    if (e instanceof Error && UNAVAILABLE_MESSAGES.includes(e.message)) return true;
  }
  return false;
}

/** `error` as a `DatabaseUnavailableError` when it means "unavailable now", else unchanged (a bug). */
export function classifyDatabaseError(error: unknown): unknown {
  return !(error instanceof DatabaseUnavailableError) && isDatabaseUnavailable(error) ? new DatabaseUnavailableError(error) : error;
}

/**
 * One line about a database error, for logs and messages: the SQLSTATE or errno name and the first line of the
 * message (an AggregateError's first error), with any URL in it redacted; never the password.
 */
export function describeDatabaseError(error: unknown): string {
  const e = error instanceof AggregateError && error.errors.length > 0 && error.message === '' ? (error.errors[0] as unknown) : error;
  if (!(e instanceof Error)) return redactUrlsIn(String(e)).split('\n')[0]!;
  const code = (e as { code?: unknown }).code;
  const message = redactUrlsIn(e.message.split('\n')[0]!.slice(0, 300));
  // A SQLSTATE or an errno name says more than many messages; our own ERR_* codes are for programs, not people.
  const shown = typeof code === 'string' && /^([0-9A-Z]{5}|E[A-Z]+)$/.test(code) && !message.includes(code);
  return shown ? `${code} ${message}` : message;
}
