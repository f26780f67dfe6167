// A real ingest in front of a real EndpointSet whose endpoints point at loopback TestReceivers, and
// the clients the ingest tests post with (undici, and a raw socket for what undici would not send).
import { connect } from 'node:net';
import type { Readable } from 'node:stream';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { request } from 'undici';
import { IngestServer, type IngestOptions } from '../../src/ingest/ingest-server.ts';
import { endpointConfig, type EndpointConfig } from '../../src/notifications/endpoint.ts';
import { EndpointSet, type PendingLimits } from '../../src/notifications/endpoint-set.ts';
import type { QueueBackend } from '../../src/notifications/queue-store.ts';
import { EVENTS_MEDIA_TYPE, type Event } from '../../src/notifications/event.ts';
import { fixtureEvent } from '../support/events.ts';
import { TestReceiver } from '../support/receiver.ts';

/** The token the captured registry sent (`Authorization: Bearer s3cret`). */
export const TOKEN = 's3cret';

/** What the ingest's listener heard, call by call. */
export interface Heard {
  requests: number[];
  events: number[];
  duplicates: number[];
}

/** A running ingest and everything behind it. */
export interface Harness {
  ingest: IngestServer;
  endpoints: EndpointSet;
  receivers: TestReceiver[];
  heard: Heard;
  /** Stops the ingest, discards what endpoints still hold, closes the receivers; idempotent. */
  close(): Promise<void>;
}

export interface HarnessOptions extends Partial<Pick<IngestOptions, 'maxBodySize' | 'recentIds' | 'headersTimeoutMs' | 'requestTimeoutMs'>> {
  /** Defaults to TOKEN; `undefined` explicitly = no authentication. */
  token?: string | undefined;
  limits?: PendingLimits;
  /** Where accepted events are kept (default in memory). */
  backend?: QueueBackend;
  /** One endpoint per entry (named `ep0`, `ep1`, …), each with its own receiver; default one plain endpoint. */
  endpoints?: Partial<EndpointConfig>[];
}

/** Starts receivers, endpoints and the ingest on 127.0.0.1 port 0. */
export async function startIngest(options: HarnessOptions = {}): Promise<Harness> {
  const endpoints = new EndpointSet({ limits: options.limits ?? { perEndpoint: 1000, total: 2000 }, ...(options.backend && { backend: options.backend }) });
  const receivers: TestReceiver[] = [];
  const heard: Heard = { requests: [], events: [], duplicates: [] };
  let ingest: IngestServer | undefined;
  let closed = false;
  const close = async (): Promise<void> => {
    if (closed) return;
    closed = true;
    await ingest?.close();
    await endpoints.close(AbortSignal.abort());
    await Promise.all(receivers.map((r) => r.close()));
  };
  try {
    for (const [i, given] of (options.endpoints ?? [{}]).entries()) {
      const receiver = await TestReceiver.start();
      receivers.push(receiver);
      endpoints.apply(`ep${i}`, endpointConfig({ url: receiver.url, ...given }));
    }
    ingest = await IngestServer.start({
      host: '127.0.0.1',
      port: 0,
      token: 'token' in options ? options.token : TOKEN,
      maxBodySize: options.maxBodySize ?? 64 * 1024,
      endpoints,
      ...(options.recentIds !== undefined && { recentIds: options.recentIds }),
      ...(options.headersTimeoutMs !== undefined && { headersTimeoutMs: options.headersTimeoutMs }),
      ...(options.requestTimeoutMs !== undefined && { requestTimeoutMs: options.requestTimeoutMs }),
      listener: {
        request: (status) => heard.requests.push(status),
        events: (n) => heard.events.push(n),
        duplicates: (n) => heard.duplicates.push(n),
      },
    });
  } catch (error) {
    await close();
    throw error;
  }
  return { ingest, endpoints, receivers, heard, close };
}

/** An answer as the tests read it. */
export interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
  json: unknown;
}

export interface PostOptions {
  /** Default the v1 media type; null sends none. */
  contentType?: string | null;
  /** Default `Bearer TOKEN`; null sends none. */
  authorization?: string | null;
  method?: 'POST' | 'PUT' | 'GET' | 'DELETE' | 'PATCH' | 'HEAD';
  /** Replaces the path of the ingest's URL. */
  path?: string;
  headers?: Record<string, string>;
}

/** Posts a body (a string, bytes, or a stream sent chunked) and reads the whole answer. */
export async function post(url: string, body: string | Buffer | Readable | undefined, options: PostOptions = {}): Promise<Answer> {
  const headers: Record<string, string> = { ...options.headers };
  const contentType = options.contentType === undefined ? EVENTS_MEDIA_TYPE : options.contentType;
  if (contentType !== null) headers['content-type'] = contentType;
  const authorization = options.authorization === undefined ? `Bearer ${TOKEN}` : options.authorization;
  if (authorization !== null) headers.authorization = authorization;
  const target = options.path === undefined ? url : new URL(options.path, url).toString();
  const res = await request(target, { method: options.method ?? 'POST', headers, ...(body !== undefined && { body }) });
  const text = await res.body.text();
  let json: unknown;
  try {
    json = text === '' ? undefined : JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: res.statusCode, headers: res.headers, text, json };
}

/** `{"events": [...]}` as the registry writes it (compact). */
export function envelope(events: readonly unknown[]): string {
  return JSON.stringify({ events });
}

/** A registry push event (the captured one) with its own id; `extra` is merged over it. */
export function event(id: string, extra: Record<string, unknown> = {}): Event {
  return { ...fixtureEvent('push-manifest-tagged.json'), id, ...extra };
}

/** What a raw connection got back before the server closed it, and how long that took. */
export interface RawExchange {
  text: string;
  elapsedMs: number;
}

/**
 * Writes raw bytes to the port and collects everything the server sends until it closes the connection;
 * rejects at the deadline (a server that never cuts the connection fails the test).
 */
export function rawExchange(port: number, chunks: readonly (string | Buffer)[], deadlineMs = 10_000): Promise<RawExchange> {
  return new Promise((resolve, reject) => {
    const started = Date.now();
    const received: Buffer[] = [];
    const socket = connect({ host: '127.0.0.1', port });
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`server kept the connection open for ${deadlineMs} ms; got: ${Buffer.concat(received).toString('latin1')}`));
    }, deadlineMs);
    socket.on('connect', () => {
      for (const chunk of chunks) socket.write(chunk);
    });
    socket.on('data', (data: Buffer) => received.push(data));
    socket.on('error', () => {}); // a reset after the answer is what is being tested; 'close' follows
    socket.on('close', () => {
      clearTimeout(timer);
      resolve({ text: Buffer.concat(received).toString('latin1'), elapsedMs: Date.now() - started });
    });
  });
}

/** The JSON body of a raw HTTP answer (after the blank line). */
export function rawBody(text: string): unknown {
  const at = text.indexOf('\r\n\r\n');
  return JSON.parse(text.slice(at + 4));
}

/** A full garbage collection (V8's `gc`, exposed at run time), so heap measurements see live memory only. */
export function collectGarbage(): void {
  setFlagsFromString('--expose-gc');
  (runInNewContext('gc') as () => void)();
}
