import { NotifierError } from '../notifications/errors.ts';
/** The HTTP status of a failed Kubernetes API call (client-node's ApiException, or a watch's error), if any. */
export function statusCode(error: unknown): number | undefined {
  if (typeof error !== 'object' || error === null) return undefined;
  const e = error as { code?: unknown; statusCode?: unknown };
  if (typeof e.statusCode === 'number') return e.statusCode;
  if (typeof e.code === 'number' && e.code >= 100 && e.code < 600) return e.code;
  return undefined;
}

/**
 * A Kubernetes API call failed (an error status, a timeout, no connection): transient, so the caller's backoff
 * retries it. The message names the call and the status, never the response body (it could hold Secret data);
 * `cause` is the original error.
 */
export class ApiCallError extends NotifierError {
  /** The HTTP status the server answered, if it answered. */
  readonly statusCode: number | undefined;

  constructor(what: string, cause: unknown) {
    super('ERR_API_CALL', `${what}: ${describeApiError(cause)}`, { cause });
    this.statusCode = statusCode(cause);
  }
}

/** One line about a failed API call, without response bodies that could hold Secret data. */
export function describeApiError(error: unknown): string {
  if (error instanceof ApiCallError) return error.message;
  const code = statusCode(error);
  const hint = code === 403 ? ' (forbidden: check the RBAC rules of the service account)' : code === 401 ? ' (unauthorized: check the credentials)' : '';
  const name = error instanceof Error ? (error.name === 'Error' ? '' : `${error.name}: `) : '';
  const message = error instanceof Error ? error.message.split('\n')[0]!.slice(0, 200) : String(error);
  return code !== undefined ? `HTTP ${code}${hint}` : `${name}${message}`;
}
