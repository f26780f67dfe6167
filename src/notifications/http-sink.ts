import { STATUS_CODES } from 'node:http';
import { buildConnector, Client } from 'undici';
import type { AddressGuard, Resolver } from './address-guard.ts';
import { CloudEventsEncoder, type CloudEventsEncoding } from './cloud-events.ts';
import { guardedConnector } from './guarded-connector.ts';
import { parseRetryAfter, RETRY_AFTER_STATUSES } from './retry-after.ts';
import { EndpointConfigError, HttpRequestError, HttpStatusError, SinkClosedError, type NotifierError } from './errors.ts';
import { EVENTS_MEDIA_TYPE, envelopeBody } from './event.ts';
import type { DeliveryListener } from './listener.ts';
import { signatureHeaders, signer, webhookId, type Signer, type SigningAlgorithm } from './signing.ts';
import { timerDelay } from './timer-delay.ts';
import type { QueuedEvent, Sink } from './sink.ts';

/** TLS settings of an endpoint; PEM strings or buffers. */
export interface TlsOptions {
  /** Trusted CA certificates (replace the system's set when given). */
  ca?: string | Buffer;
  /** Client certificate and key for mutual TLS. */
  cert?: string | Buffer;
  key?: string | Buffer;
  /** Skip server certificate verification; only when explicitly asked for. */
  insecureSkipVerify?: boolean;
}

/** Settings of an `HttpSink`. */
export interface HttpSinkOptions {
  url: string;
  /** Extra request headers, sent with every POST; a name may carry several values. */
  headers?: readonly (readonly [string, string])[];
  /** Per attempt: connect, send and wait for the answer (Distribution's `timeout`). */
  timeoutMs: number;
  userAgent?: string;
  tls?: TlsOptions;
  /** Standard Webhooks signing key; each attempt is signed afresh. */
  signingKey?: Buffer;
  /** Send CloudEvents 1.0 (api.md §8) instead of Distribution's envelope. */
  cloudEvents?: CloudEventsEncoding;
  /** How `signingKey` signs: HMAC-SHA256 (`v1`, the default) or Ed25519 (`v1a`, the key is the 32-byte seed). */
  signingAlgorithm?: SigningAlgorithm;
  /** Dials connections; default: undici's connector with the TLS settings (tests replace it so nothing is dialled). */
  dial?: buildConnector.connector;
  /** The SSRF policy, checked at connect time against the resolved address (see `guardedConnector`). */
  guard?: AddressGuard;
  /** Resolves host names for the guard; default: the system resolver. */
  resolve?: Resolver;
  listener?: DeliveryListener;
  now?: () => number;
}

// Read at most this much of an answer before dropping the connection: receivers answer small bodies, and an
// endless body must not hold the endpoint.
const MAX_RESPONSE_DRAIN = 64 * 1024;
// undici's idle keep-alive: long enough to reuse a connection between events, short enough to not hold sockets.
const KEEP_ALIVE_MS = 30_000;

/**
 * POSTs each block as one envelope (or as CloudEvents) to one URL over a keep-alive pool of its own; single-flight: it makes
 * exactly one attempt per write and never retries (that is the retrying sink's job). Resolves on any 2xx;
 * rejects with `HttpStatusError` for any other answer (a 3xx too: redirects are never followed; a 429's or 503's
 * `Retry-After` in its `retryAfterMs`) and with
 * `HttpRequestError` when there is no answer (timeout, refused, TLS). Messages never contain the URL's
 * credentials or a header value.
 */
export class HttpSink implements Sink<QueuedEvent> {
  #client: Client;
  #path: string;
  #headers: Record<string, string | string[]>;
  #timeoutMs: number;
  /** `timeoutMs` as the timers take it (capped; see `timerDelay`). */
  #timerMs: number;
  #cloudEvents: CloudEventsEncoder | undefined;
  #signer: Signer | undefined;
  #listener: DeliveryListener;
  #now: () => number;
  #closed = false;

  constructor(options: HttpSinkOptions) {
    const url = parseEndpointUrl(options.url);
    this.#path = `${url.pathname}${url.search}`;
    this.#timeoutMs = options.timeoutMs;
    this.#timerMs = timerDelay(options.timeoutMs);
    this.#cloudEvents = options.cloudEvents && new CloudEventsEncoder(options.cloudEvents);
    this.#signer = options.signingKey && signer(options.signingAlgorithm ?? 'HMAC-SHA256', options.signingKey);
    this.#listener = options.listener ?? {};
    this.#now = options.now ?? Date.now;
    this.#headers = buildHeaders(url, options);
    const tls = options.tls ?? {};
    const dial = options.dial ?? buildConnector({
      timeout: this.#timerMs,
      minVersion: 'TLSv1.2',
      rejectUnauthorized: !tls.insecureSkipVerify,
      ...(tls.ca !== undefined && { ca: tls.ca }),
      ...(tls.cert !== undefined && { cert: tls.cert }),
      ...(tls.key !== undefined && { key: tls.key }),
    });
    // One Client, not a Pool of one: a Pool keeps a 2,048-slot request queue (18 KiB of heap against 2 KiB), and
    // 10,000 endpoints hold 10,000 of them. A Client reconnects by itself after a connection is lost.
    this.#client = new Client(url.origin, {
      pipelining: 1,
      keepAliveTimeout: KEEP_ALIVE_MS,
      headersTimeout: this.#timerMs,
      bodyTimeout: this.#timerMs,
      connect: options.guard ? guardedConnector(options.guard, dial, options.resolve) : dial,
    });
  }

  async write(items: readonly QueuedEvent[]): Promise<void> {
    if (this.#closed) throw new SinkClosedError('http sink');
    const encoded = this.#cloudEvents?.encode(items);
    const body = encoded?.body ?? envelopeBody(items.map((event) => event.json));
    const base = encoded ? { ...this.#headers, ...encoded.headers } : this.#headers;
    const headers = this.#signer
      ? { ...base, ...signatureHeaders(this.#signer, webhookId(items.map((e) => e.id)), body, this.#now()) }
      : base;
    const started = performance.now();
    let status: number | undefined;
    let statusText: string | undefined;
    let error: NotifierError | undefined;
    // A plain timer, cleared when the attempt ends, instead of AbortSignal.timeout(): that signal is held only
    // weakly by its timer, so it survives young-generation GCs for the whole timeout, and its timer still fires
    // (building a DOMException and dispatching 'abort') long after the request finished.
    const deadline = new AbortController();
    const timer = setTimeout(() => deadline.abort(new DOMException(`no answer within ${this.#timeoutMs}ms`, 'TimeoutError')), this.#timerMs);
    try {
      const response = await this.#client.request({
        method: 'POST',
        path: this.#path,
        headers,
        body,
        signal: deadline.signal,
      });
      status = response.statusCode;
      statusText = STATUS_CODES[status] ?? 'Unknown';
      await response.body.dump({ limit: MAX_RESPONSE_DRAIN }).catch(() => {});
      if (status < 200 || status >= 300) {
        const location = status >= 300 && status < 400 ? header(response.headers.location) : undefined;
        const retryAfter = RETRY_AFTER_STATUSES.has(status) ? parseRetryAfter(response.headers['retry-after'], this.#now()) : undefined;
        error = new HttpStatusError(status, statusText, location === undefined ? undefined : redactUrl(location), retryAfter);
      }
    } catch (cause) {
      error = new HttpRequestError(describeRequestError(cause, this.#timeoutMs), cause);
    } finally {
      clearTimeout(timer);
    }
    this.#listener.attempt?.({
      events: items,
      durationMs: performance.now() - started,
      at: this.#now(),
      ...(status !== undefined && { status, statusText }),
      ...(error !== undefined && { error }),
    });
    if (error) throw error;
  }

  /** Waits for the attempt in flight, then closes the connection; a second close rejects with `SinkClosedError`. */
  async close(): Promise<void> {
    if (this.#closed) throw new SinkClosedError('http sink');
    this.#closed = true;
    await this.#client.close();
  }
}

/**
 * Parses an endpoint URL: `http:` or `https:` only, with user-info that decodes (it becomes Basic auth), else
 * `EndpointConfigError` (without echoing credentials).
 */
export function parseEndpointUrl(raw: string): URL {
  let url: URL;
  try {
    url = new URL(raw);
  } catch (cause) {
    throw new EndpointConfigError('url is not a valid absolute URL', { cause });
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new EndpointConfigError(`url scheme ${url.protocol} is not supported; use http: or https:`);
  }
  try {
    decodeURIComponent(url.username); // sent as Basic auth, decoded (as Go's client does)
    decodeURIComponent(url.password);
  } catch {
    throw new EndpointConfigError('url user-info is not valid percent-encoding (a % must start %XX; write a literal % as %25)');
  }
  return url;
}

// What a query value or a fragment is shown as: tokens travel there as often as in the user-info.
const MASK = '***';
// What a URL that does not parse is shown as: its text may hold a secret that cannot be found in it.
const UNPARSEABLE_URL = '(unparseable URL)';
// A path-absolute reference (a redirect's `Location: /login?token=…`) is resolved against this to be redacted.
const RELATIVE_BASE = 'http://relative.invalid';

/**
 * The URL as it may be shown in logs, errors and status: the user-info (`user:pass@`) removed, every query value and
 * the fragment replaced by `***` (parameter names kept; a parameter without `=` may be a bare token and is masked
 * whole), the rest unchanged. A path-absolute reference (`/path?q`) stays relative; anything else that does not parse
 * as a URL is shown as `(unparseable URL)`.
 */
export function redactUrl(raw: string): string {
  const url = URL.parse(raw);
  if (url) return url.username === '' && url.password === '' && url.search === '' && url.hash === '' ? raw : redacted(url);
  const relative = raw.startsWith('/') ? URL.parse(raw, RELATIVE_BASE) : null;
  if (!relative) return UNPARSEABLE_URL;
  // `/path` keeps its own origin out; a network-path `//host/path` shows its host, as the scheme-relative reference it is.
  return redacted(relative).slice(relative.origin === RELATIVE_BASE ? RELATIVE_BASE.length : relative.protocol.length);
}

/** `text` with every absolute URL in it (`scheme://…` up to white space or a quote) passed through `redactUrl`. */
export function redactUrlsIn(text: string): string {
  return text.replace(/\b[a-z][a-z0-9+.-]*:\/\/[^\s"'<>]*/gi, (url) => redactUrl(url));
}

function redacted(url: URL): string {
  const query = url.search.slice(1).split('&').map((parameter) => {
    if (parameter === '') return parameter;
    const equals = parameter.indexOf('=');
    return equals === -1 ? MASK : `${parameter.slice(0, equals)}=${MASK}`;
  });
  const shown = new URL(url.href);
  shown.username = '';
  shown.password = '';
  shown.search = '';
  shown.hash = '';
  return `${shown.href}${url.search === '' ? '' : `?${query.join('&')}`}${url.hash === '' ? '' : `#${MASK}`}`;
}

function buildHeaders(url: URL, options: HttpSinkOptions): Record<string, string | string[]> {
  const headers: Record<string, string | string[]> = {};
  for (const [name, value] of options.headers ?? []) {
    const key = name.toLowerCase();
    const existing = headers[key];
    headers[key] = existing === undefined ? value : [...(Array.isArray(existing) ? existing : [existing]), value];
  }
  // As Go's http client does for Distribution: credentials in the URL become Basic auth, unless set explicitly.
  if ((url.username !== '' || url.password !== '') && headers.authorization === undefined) {
    const user = decodeURIComponent(url.username);
    const pass = decodeURIComponent(url.password);
    headers.authorization = `Basic ${Buffer.from(`${user}:${pass}`).toString('base64')}`;
  }
  headers['content-type'] = EVENTS_MEDIA_TYPE;
  headers['user-agent'] = options.userAgent ?? 'registry-notifier';
  return headers;
}

function header(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}

function describeRequestError(cause: unknown, timeoutMs: number): string {
  if (cause instanceof Error) {
    if (cause.name === 'TimeoutError' || cause.name === 'AbortError') return `no answer within ${timeoutMs}ms`;
    const code = (cause as { code?: unknown }).code;
    const codeText = typeof code === 'string' ? `${code}: ` : '';
    return `${codeText}${redactUrlsIn(cause.message)}`;
  }
  return 'request failed';
}
