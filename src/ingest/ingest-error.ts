import { NotifierError } from '../notifications/errors.ts';

/**
 * A request the ingest refuses (code `ERR_INGEST_REFUSED`): the HTTP status, the `reason` its answer names, and
 * for a bad body the JSON path of the problem.
 */
export class IngestError extends NotifierError {
  /** Stable reason, sent as `error.code` in the response body (`QueueFull`, `InvalidEnvelope`, …). */
  readonly reason: string;
  /** HTTP status of the answer: 4xx for the client's mistakes, 503 when we cannot take events now. */
  readonly status: number;
  /** Where in the body the problem is, e.g. `$.events[3].action`. */
  readonly path: string | undefined;
  /** Extra response headers (`Allow`, `WWW-Authenticate`, `Retry-After`). */
  readonly headers: Readonly<Record<string, string>>;

  constructor(status: number, reason: string, message: string, options: { path?: string; headers?: Record<string, string> } = {}) {
    super('ERR_INGEST_REFUSED', message);
    this.status = status;
    this.reason = reason;
    this.path = options.path;
    this.headers = options.headers ?? {};
  }

  /** The response body: `{"error": {"code", "message", "path"?}}`. */
  body(): string {
    return JSON.stringify({ error: { code: this.reason, message: this.message, ...(this.path !== undefined && { path: this.path }) } });
  }
}
