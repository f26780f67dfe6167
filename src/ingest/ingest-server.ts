import { createServer, STATUS_CODES, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import type { Logger } from 'pino';
import { localBaseUrl } from '../config.ts';
import type { EndpointSet } from '../notifications/endpoint-set.ts';
import { QueueFullError, SinkClosedError } from '../notifications/errors.ts';
import { EVENTS_MEDIA_TYPE, EVENTS_MEDIA_TYPE_V2, type IncomingEvent } from '../notifications/event.ts';
import { createAuthenticator } from './auth.ts';
import { parseEnvelope } from './envelope.ts';
import { IngestError } from './ingest-error.ts';
import { RecentIds } from './recent-ids.ts';

/** What the ingest reports (metrics); every method is optional and must not throw. */
export interface IngestListener {
  request?(status: number): void;
  events?(count: number): void;
  duplicates?(count: number): void;
  /** The queue backend refused a request (false) or took one again after refusing (true). */
  storage?(available: boolean): void;
}

/** Settings of the ingest server. */
export interface IngestOptions {
  host: string | undefined;
  port: number;
  token: string | undefined;
  maxBodySize: number;
  /** Where the events go; it enforces the pending limits and commits each request whole (`accept`). */
  endpoints: EndpointSet;
  /** Event ids remembered for duplicate suppression. */
  recentIds?: number;
  /** A client that has not sent all its headers after this long is cut (default 10 s). */
  headersTimeoutMs?: number;
  /** A client that has not sent its whole request after this long gets a 400 and is cut (default 30 s). */
  requestTimeoutMs?: number;
  listener?: IngestListener;
  logger?: Logger;
}

const ACCEPTED_TYPES = new Set([EVENTS_MEDIA_TYPE, EVENTS_MEDIA_TYPE_V2, 'application/json']);
// The registry resends after failures: remember this many ids (about 60 bytes each: a few MiB at most).
const DEFAULT_RECENT_IDS = 100_000;
// Seconds a 503 asks the client to wait; the registry uses its own backoff, other clients may honour this.
const RETRY_AFTER_SECONDS = '5';
const SHUTTING_DOWN = 'shutting down; retry against another replica or later';
// Slow clients are cut: headers within 10 s, the whole request within 30 s (a registry sends ~1 KiB at once).
const HEADERS_TIMEOUT_MS = 10_000;
const REQUEST_TIMEOUT_MS = 30_000;
// Node checks those timeouts only every 30 s by default, which would let a slow client stay up to 30 s longer.
const MAX_TIMEOUT_CHECK_INTERVAL_MS = 1_000;
// A request refused before its body was read is answered at once, then its body is read and discarded for at
// most this long and this much before the connection closes (what HTTP/1.1 servers call a lingering close):
// closing a socket with unread bytes makes the kernel send a reset, which can destroy the answer in flight.
const LINGER_MS = 2_000;
const LINGER_BYTES = 8 * 1024 * 1024;

/**
 * The HTTP service a registry posts its notifications to (`POST /events`, api.md §4). It answers 202 only once
 * every event is queued for every endpoint that takes it; any refusal leaves nothing behind (never
 * half-applied); a client's mistake always gets a 4xx, never a 5xx; 503 means "keep the events and retry".
 */
export class IngestServer {
  #server: Server;
  #options: IngestOptions;
  #authenticate: (authorization: string | undefined) => boolean;
  #recent: RecentIds;
  /** Ids whose commit is in flight, each with a promise that resolves once that commit succeeded or failed. */
  #committing = new Map<string, Promise<void>>();
  // Per socket, the requests being handled (several when a client pipelines) and how to make each handler
  // refuse its request (a timeout, a broken body): the handler then answers, so nothing else writes to it.
  #inflight = new WeakMap<Duplex, Set<(refusal: IngestError) => void>>();
  #lingering = new WeakSet<Duplex>();
  #draining = false;
  #closed = false;
  // While the queues' backend refuses (a full disk), one log line when it starts and one when it ends.
  #unavailableSince: { refused: number } | undefined;

  private constructor(server: Server, options: IngestOptions) {
    this.#server = server;
    this.#options = options;
    this.#authenticate = createAuthenticator(options.token);
    this.#recent = new RecentIds(options.recentIds ?? DEFAULT_RECENT_IDS);
  }

  /** Listens on the configured address and resolves once listening. */
  static async start(options: IngestOptions): Promise<IngestServer> {
    const headersTimeout = options.headersTimeoutMs ?? HEADERS_TIMEOUT_MS;
    const requestTimeout = options.requestTimeoutMs ?? REQUEST_TIMEOUT_MS;
    if (!(headersTimeout > 0 && requestTimeout >= headersTimeout)) {
      throw new RangeError(`headersTimeoutMs (${headersTimeout}) must be > 0 and at most requestTimeoutMs (${requestTimeout})`);
    }
    const server = createServer({
      headersTimeout,
      requestTimeout,
      connectionsCheckingInterval: Math.max(1, Math.min(MAX_TIMEOUT_CHECK_INTERVAL_MS, Math.floor(headersTimeout / 4))),
    });
    const ingest = new IngestServer(server, options);
    server.on('request', (req, res) => void ingest.#handle(req, res));
    server.on('clientError', (error: NodeJS.ErrnoException, socket: Duplex) => ingest.#clientError(error, socket));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(options.port, options.host, () => resolve());
    });
    return ingest;
  }

  /** The bound port (useful with port 0). */
  get port(): number {
    return (this.#server.address() as AddressInfo).port;
  }

  /** `http://host:port/events` as a client on this machine reaches it. */
  get url(): string {
    return `${localBaseUrl(this.#options.host, this.port)}/events`;
  }

  /** Stops taking events: every later POST gets 503 with Retry-After, so the registry keeps them. */
  drain(): void {
    this.#draining = true;
  }

  /** Stops listening and closes idle connections; idempotent. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#draining = true;
    const closed = new Promise<void>((resolve) => this.#server.close(() => resolve()));
    this.#server.closeIdleConnections();
    setTimeout(() => this.#server.closeAllConnections(), 1000).unref();
    await closed;
  }

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    let status = 500;
    const broken = new AbortController();
    const socket = req.socket;
    const refuse = (refusal: IngestError): void => broken.abort(refusal);
    const inflight = this.#inflight.get(socket) ?? new Set();
    this.#inflight.set(socket, inflight.add(refuse));
    try {
      const result = await this.#accept(req, broken.signal);
      status = 202;
      if (broken.signal.aborted) closeAfter(res);
      send(res, 202, JSON.stringify(result));
    } catch (error) {
      const refusal = error instanceof IngestError ? error : this.#internal(error);
      status = refusal.status;
      for (const [name, value] of Object.entries(refusal.headers)) res.setHeader(name, value);
      if (broken.signal.aborted) {
        // The connection is broken (a timeout, bad framing): answer if it can still be written, then close.
        closeAfter(res);
        send(res, status, refusal.body());
      } else if (!req.complete) {
        // Refused before the body was read (unauthenticated, wrong path, method, type or encoding, too large,
        // shutting down): an unauthenticated client must not be able to stream at us, so the connection closes,
        // but only after a bounded read of what the client is still sending.
        this.#lingerThenClose(req, res, status, refusal.body());
      } else {
        send(res, status, refusal.body());
      }
    } finally {
      inflight.delete(refuse);
      this.#options.listener?.request?.(status);
    }
  }

  /** Answers at once, keeps reading and discarding the rest of the body (bounded), then closes the connection. */
  #lingerThenClose(req: IncomingMessage, res: ServerResponse, status: number, body: string): void {
    const socket = req.socket;
    this.#lingering.add(socket);
    res.setHeader('connection', 'close');
    res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
    res.write(body);
    let read = 0;
    const finish = (): void => {
      clearTimeout(timer);
      req.removeListener('data', onData);
      if (!res.writableEnded) res.end(); // Node closes the connection once the answer is out (Connection: close)
    };
    const onData = (chunk: Buffer): void => {
      read += chunk.length;
      if (read > LINGER_BYTES) finish();
    };
    const timer = setTimeout(finish, LINGER_MS);
    req.on('data', onData);
    req.once('end', finish);
    req.once('error', finish);
    socket.once('close', finish);
    req.resume();
  }

  /**
   * Node's parser gave up on a connection: bytes that are not HTTP, a broken chunked body, or a client too slow
   * with its headers or its request. With a request being handled, its handler answers; otherwise a 400 with the
   * usual error body is written straight to the socket, which is then closed.
   */
  #clientError(error: NodeJS.ErrnoException, socket: Duplex): void {
    if (this.#lingering.has(socket)) return void socket.destroy(); // its answer is out; only the discarding ended
    const refusal = clientErrorRefusal(error);
    const inflight = this.#inflight.get(socket);
    if (inflight !== undefined && inflight.size > 0) {
      if (!socket.writable) return void socket.destroy();
      for (const refuse of inflight) refuse(refusal);
      return;
    }
    if (!socket.writable) return void socket.destroy();
    const body = refusal.body();
    socket.end(
      `HTTP/1.1 ${refusal.status} ${STATUS_CODES[refusal.status]}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
    );
    this.#options.listener?.request?.(refusal.status);
  }

  async #accept(req: IncomingMessage, broken: AbortSignal): Promise<{ accepted: number; duplicates: number }> {
    const path = (req.url ?? '/').split('?')[0];
    if (path !== '/events') throw new IngestError(404, 'NotFound', `no such path; registries post to /events`);
    if (req.method !== 'POST') {
      throw new IngestError(405, 'MethodNotAllowed', `${req.method} is not allowed; use POST`, { headers: { allow: 'POST' } });
    }
    if (!this.#authenticate(req.headers.authorization)) {
      throw new IngestError(401, 'Unauthorized', 'missing or wrong token', { headers: { 'www-authenticate': 'Bearer realm="registry-notifier"' } });
    }
    const type = (req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
    if (!ACCEPTED_TYPES.has(type)) {
      throw new IngestError(415, 'UnsupportedMediaType', `content type "${printable(type)}" is not accepted; send ${EVENTS_MEDIA_TYPE}`);
    }
    const encoding = (req.headers['content-encoding'] ?? '').trim().toLowerCase();
    if (encoding !== '' && encoding !== 'identity') {
      // RFC 7694: refuse a coding we do not read, and say which we do. Registries never compress notifications.
      throw new IngestError(415, 'UnsupportedContentEncoding', `content encoding "${printable(encoding)}" is not accepted; send the body uncompressed`, {
        headers: { 'accept-encoding': 'identity' },
      });
    }
    if (this.#draining) throw unavailable('ShuttingDown', SHUTTING_DOWN);
    return this.#enqueue(parseEnvelope(await readBody(req, this.#options.maxBodySize, broken)));
  }

  /**
   * Suppresses recent duplicates, then hands the rest to the endpoint set, which routes, commits and queues
   * them as one step: on any refusal nothing is queued anywhere.
   */
  async #enqueue(events: IncomingEvent[]): Promise<{ accepted: number; duplicates: number }> {
    // An id another request is committing now is neither new nor a duplicate yet: wait for that commit (a resend
    // after the registry's timeout, while the first request's commit is slow). Had it failed, the ids are
    // forgotten again and this request commits them itself; a 202 for a resend never stands on a commit that failed.
    for (let committing = this.#committingAny(events); committing.length > 0; committing = this.#committingAny(events)) {
      await Promise.all(committing);
    }
    const fresh: IncomingEvent[] = [];
    const ids = new Set<string>();
    for (const incoming of events) {
      const id = incoming.event.id;
      if (this.#recent.has(id) || ids.has(id)) continue;
      ids.add(id);
      fresh.push(incoming);
    }
    let duplicates = events.length - fresh.length;
    let accepted = fresh.length;
    if (fresh.length > 0) {
      // Remembered before the commit is awaited, so a concurrent resend of the same envelope waits for this commit.
      for (const id of ids) this.#recent.add(id);
      const settled = Promise.withResolvers<void>();
      for (const id of ids) this.#committing.set(id, settled.promise);
      try {
        // The backend may know more (a resend that reached another replica first): those are duplicates too.
        const seenElsewhere = (await this.#options.endpoints.accept(fresh)).duplicates.length;
        duplicates += seenElsewhere;
        accepted -= seenElsewhere;
      } catch (error) {
        for (const id of ids) this.#recent.delete(id);
        if (error instanceof QueueFullError) throw unavailable('QueueFull', error.message);
        if (error instanceof SinkClosedError) throw unavailable('ShuttingDown', SHUTTING_DOWN);
        throw this.#backendFailed(error);
      } finally {
        for (const id of ids) if (this.#committing.get(id) === settled.promise) this.#committing.delete(id);
        settled.resolve();
      }
      this.#backendWorks();
    }
    // Reported only now: a refused envelope suppressed nothing, its resend will be counted.
    if (accepted > 0) this.#options.listener?.events?.(accepted);
    if (duplicates > 0) this.#options.listener?.duplicates?.(duplicates);
    return { accepted, duplicates };
  }

  /** The commits in flight that carry an id of `events` (each once). */
  #committingAny(events: readonly IncomingEvent[]): Promise<void>[] {
    const found = new Set<Promise<void>>();
    for (const { event } of events) {
      const committing = this.#committing.get(event.id);
      if (committing) found.add(committing);
    }
    return [...found];
  }

  /** The queues' backend refused (a journal on a full disk): 503, logged once per outage, not per request. */
  #backendFailed(error: unknown): IngestError {
    if (this.#unavailableSince === undefined) {
      this.#unavailableSince = { refused: 0 };
      this.#options.logger?.error({ err: error }, 'ingest: events cannot be stored; answering 503 until they can');
      this.#options.listener?.storage?.(false);
    }
    this.#unavailableSince.refused++;
    return unavailable('Unavailable', 'events could not be stored; retry later');
  }

  #backendWorks(): void {
    if (this.#unavailableSince === undefined) return;
    this.#options.logger?.info({ refused: this.#unavailableSince.refused }, 'ingest: events are stored again');
    this.#unavailableSince = undefined;
    this.#options.listener?.storage?.(true);
  }

  #internal(error: unknown): IngestError {
    this.#options.logger?.error({ err: error }, 'ingest failed');
    return new IngestError(500, 'Internal', 'internal error');
  }
}

function unavailable(code: string, message: string): IngestError {
  return new IngestError(503, code, message, { headers: { 'retry-after': RETRY_AFTER_SECONDS } });
}

/** Answers with `Connection: close` and closes the connection once the answer is out. */
function closeAfter(res: ServerResponse): void {
  const socket = res.socket; // detached from `res` by the time 'finish' is emitted
  res.setHeader('connection', 'close');
  res.on('finish', () => socket?.destroy());
}

function send(res: ServerResponse, status: number, body: string): void {
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
  res.end(body);
}

/**
 * Reads the whole body as UTF-8, refusing with 413 as soon as it is longer than `limit` bytes, and with the
 * signal's reason (an `IngestError`) when the connection broke while reading.
 */
function readBody(req: IncomingMessage, limit: number, broken: AbortSignal): Promise<Buffer> {
  const tooLarge = (): IngestError => new IngestError(413, 'PayloadTooLarge', `body is larger than ${limit} bytes`);
  const declared = Number(req.headers['content-length']);
  if (Number.isFinite(declared) && declared > limit) return Promise.reject(tooLarge());
  return new Promise((resolve, reject) => {
    const onBroken = (): void => {
      req.removeAllListeners('data');
      req.pause();
      reject(broken.reason instanceof Error ? broken.reason : new IngestError(400, 'Aborted', 'request body could not be read'));
    };
    if (broken.aborted) return onBroken();
    broken.addEventListener('abort', onBroken, { once: true });
    req.on('close', () => broken.removeEventListener('abort', onBroken));
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) {
        req.removeAllListeners('data');
        req.pause();
        reject(tooLarge());
        return;
      }
      chunks.push(chunk);
    });
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', () => reject(new IngestError(400, 'Aborted', 'request body could not be read')));
  });
}

/** The answer to a connection Node's parser gave up on. */
function clientErrorRefusal(error: NodeJS.ErrnoException): IngestError {
  if (error.code === 'ERR_HTTP_REQUEST_TIMEOUT') return new IngestError(408, 'RequestTimeout', 'the request was not received in time');
  if (error.code === 'HPE_HEADER_OVERFLOW') return new IngestError(431, 'RequestHeaderFieldsTooLarge', 'the request headers are too large');
  return new IngestError(400, 'BadRequest', `the request is not valid HTTP/1.1 (${error.code ?? 'parse error'})`);
}

/** A client-sent value fit to quote in a message: printable ASCII only, at most 100 characters. */
function printable(value: string): string {
  const clean = value.replace(/[^\x20-\x7e]/g, '?');
  return clean.length > 100 ? `${clean.slice(0, 100)}…` : clean;
}
