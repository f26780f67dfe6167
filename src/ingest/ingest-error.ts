/** A request the ingest refuses: the HTTP status, a stable `code`, and for a bad body the JSON path of the problem. */
export class IngestError extends Error {
  /** Stable identifier, sent as `error.code` in the response body. */
  readonly code: string;
  /** HTTP status of the answer: 4xx for the client's mistakes, 503 when we cannot take events now. */
  readonly status: number;
  /** Where in the body the problem is, e.g. `$.events[3].action`. */
  readonly path: string | undefined;
  /** Extra response headers (`Allow`, `WWW-Authenticate`, `Retry-After`). */
  readonly headers: Readonly<Record<string, string>>;

  constructor(status: number, code: string, message: string, options: { path?: string; headers?: Record<string, string> } = {}) {
    super(message);
    this.name = 'IngestError';
    this.status = status;
    this.code = code;
    this.path = options.path;
    this.headers = options.headers ?? {};
  }

  /** The response body: `{"error": {"code", "message", "path"?}}`. */
  body(): string {
    return JSON.stringify({ error: { code: this.code, message: this.message, ...(this.path !== undefined && { path: this.path }) } });
  }
}
