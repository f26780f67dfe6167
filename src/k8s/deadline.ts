import { NotifierError } from '../notifications/errors.ts';
/** A Kubernetes API call that did not answer in time: transient, so the caller's backoff retries it. */
export class ApiTimeoutError extends NotifierError {
  constructor(what: string, ms: number) {
    super('ERR_API_TIMEOUT', `${what}: no answer from the API server within ${ms} ms`);
  }
}

/** How long one API call (a get, list, patch or create; never a watch) may take before it counts as failed. */
export const API_CALL_TIMEOUT_MS = 30_000;

/**
 * Settles as `call()` does, or rejects with `ApiTimeoutError` after `ms`: a hung request must not hold a
 * reconcile (one per key) or the initial sync forever. The request itself is left to end on its own.
 */
export function withDeadline<T>(what: string, call: () => Promise<T>, ms = API_CALL_TIMEOUT_MS): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new ApiTimeoutError(what, ms)), ms);
  });
  return Promise.race([call(), expired]).finally(() => clearTimeout(timer));
}
