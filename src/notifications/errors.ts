/**
 * Errors of the delivery engine, and the base class of every error registry-notifier throws. Every class has a
 * stable `code` that callers branch on (the message is for people and may change) and its own `name`; `cause`
 * carries the underlying error where there is one.
 */

/** Base class of every registry-notifier error: a stable machine-readable `code` plus a human message. */
export class NotifierError extends Error {
  /** Stable identifier, e.g. `ERR_SINK_CLOSED`; never changes between releases. */
  readonly code: string;

  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = new.target.name;
  }
}

/** Terminal: the sink was closed; writing to it again can never succeed, so callers must not retry. */
export class SinkClosedError extends NotifierError {
  constructor(what = 'sink') {
    super('ERR_SINK_CLOSED', `${what} is closed`);
  }
}

/** A write was cut short by its AbortSignal; `settled` leading events of the batch were committed first. */
export class WriteAbortedError extends NotifierError {
  /** How many events at the head of the batch were committed (delivered or dead-lettered) before the abort. */
  readonly settled: number;

  constructor(settled: number, cause?: unknown) {
    super('ERR_WRITE_ABORTED', 'write aborted', { cause });
    this.settled = settled;
  }
}

/**
 * An endpoint answered with a status other than 2xx; `status` is the HTTP status code, `retryAfterMs` the wait
 * a 429 or 503 asked for in its `Retry-After` header (undefined when it asked for none we could read).
 */
export class HttpStatusError extends NotifierError {
  /** The HTTP status code the receiver answered with. */
  readonly status: number;
  /** Milliseconds the receiver asked us to wait (`Retry-After` on a 429 or 503), uncapped; undefined if none. */
  readonly retryAfterMs: number | undefined;

  constructor(status: number, statusText: string, location?: string, retryAfterMs?: number) {
    const where = location === undefined ? '' : ` (redirect to ${location} not followed)`;
    super('ERR_HTTP_STATUS', `${status} ${statusText}${where}`.trim());
    this.status = status;
    this.retryAfterMs = retryAfterMs;
  }
}

/** An attempt got no HTTP answer at all (timeout, refused connection, TLS failure); `cause` has the detail. */
export class HttpRequestError extends NotifierError {
  constructor(message: string, cause?: unknown) {
    super('ERR_HTTP_REQUEST', message, { cause });
  }
}

/** An endpoint configuration was refused by the engine (bad URL, bad TLS material, bad option). */
export class EndpointConfigError extends NotifierError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('ERR_ENDPOINT_CONFIG', message, options);
  }
}

/**
 * Accepting the events would take an endpoint (or all of them together) over its pending limit: nothing was
 * queued; the caller may retry later (the ingest answers 503).
 */
export class QueueFullError extends NotifierError {
  /** Events pending now, for the endpoint or in total. */
  readonly pending: number;
  /** The limit that would be exceeded. */
  readonly limit: number;
  /** The endpoint over its limit; undefined when the total is over. */
  readonly endpoint: string | undefined;

  constructor(pending: number, limit: number, endpoint?: string) {
    super('ERR_QUEUE_FULL', `${endpoint === undefined ? 'all endpoints' : `endpoint ${endpoint}`} has ${pending} events pending (limit ${limit})`);
    this.pending = pending;
    this.limit = limit;
    this.endpoint = endpoint;
  }
}
