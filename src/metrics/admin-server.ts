/**
 * The admin HTTP server of `--metrics-listen` (api.md section 4): `/metrics`, `/healthz`, `/readyz` and
 * `/endpoints` (GET and HEAD), and the state-changing calls, `POST /endpoints/replay` and `POST /endpoints/resume`
 * (authenticated alike).
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { localBaseUrl } from '../config.ts';
import { createAuthenticator } from '../ingest/auth.ts';
import { SinkClosedError } from '../notifications/errors.ts';
import type { EndpointStatus } from '../status/endpoint-status.ts';
import type { Metrics } from './metrics.ts';

/** The little of a logger the admin server uses; a pino logger fits. */
export interface AdminLogger {
  error(details: object, message: string): void;
  info?(details: object, message: string): void;
}

/** Settings of `startAdminServer`. */
export interface AdminServerOptions {
  /** Address to listen on, e.g. `127.0.0.1`; undefined listens on every interface. */
  host: string | undefined;
  /** Port; 0 picks a free one (see `AdminServer.port`). */
  port: number;
  metrics: Metrics;
  /** Whether `/readyz` answers 200: endpoints loaded and not shutting down. */
  ready: () => boolean;
  /** Every endpoint's status, for `/endpoints`. */
  endpoints: () => EndpointStatus[];
  logger?: AdminLogger;
  /** Moves an endpoint's dead letters back into its queue (`POST /endpoints/replay?endpoint=NAME`); how many, undefined if unknown. */
  replay?: (endpoint: string) => number | Promise<number> | undefined;
  /** Lets an AutoDisabled endpoint send again (`POST /endpoints/resume?endpoint=NAME`); whether it was AutoDisabled, undefined if unknown. */
  resume?: (endpoint: string) => boolean | Promise<boolean> | undefined;
  /** The bearer token `POST` calls must carry (the ingest token); without one they are refused. */
  token?: string;
}

/** A listening admin server. */
export interface AdminServer {
  /** Base URL, e.g. `http://127.0.0.1:9090`. */
  readonly url: string;
  /** The port actually bound. */
  readonly port: number;
  /** Stops listening and drops keep-alive connections; a second call returns the first call's promise. */
  close(): Promise<void>;
}

const ALLOW = 'GET, HEAD';
const TEXT = 'text/plain; charset=utf-8';
const JSON_TYPE = 'application/json; charset=utf-8';

type Handler = (options: AdminServerOptions) => Promise<Reply> | Reply;
interface Reply {
  status: number;
  type: string;
  body: string;
  /** `Allow` header, when not the default of GET routes. */
  allow?: string;
  /** `WWW-Authenticate` header. */
  authenticate?: string;
}

const ROUTES: ReadonlyMap<string, Handler> = new Map<string, Handler>([
  ['/metrics', async ({ metrics }) => ({ status: 200, type: metrics.contentType, body: await metrics.render() })],
  ['/healthz', () => ({ status: 200, type: TEXT, body: 'ok' })],
  ['/readyz', ({ ready }) => (ready() ? { status: 200, type: TEXT, body: 'ok' } : { status: 503, type: TEXT, body: 'not ready' })],
  ['/endpoints', ({ endpoints }) => ({ status: 200, type: JSON_TYPE, body: JSON.stringify(endpoints()) })],
]);

/**
 * Starts the admin server and resolves once it listens (rejects if it cannot bind). It never crashes on a
 * request: unknown paths get 404, other methods 405 with `Allow`, and a failing handler 500 (logged).
 */
export async function startAdminServer(options: AdminServerOptions): Promise<AdminServer> {
  const server = createServer((req, res) => {
    void handle(req, res, options);
  });
  // Slow or idle clients must not hold the server forever; scrapes are small.
  server.requestTimeout = 30_000;
  server.headersTimeout = 10_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  server.on('error', (err) => options.logger?.error({ err }, 'admin server error'));
  const { port } = server.address() as AddressInfo;
  let closing: Promise<void> | undefined;
  return {
    url: localBaseUrl(options.host, port),
    port,
    close() {
      closing ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
      return closing;
    },
  };
}

async function handle(req: IncomingMessage, res: ServerResponse, options: AdminServerOptions): Promise<void> {
  req.resume(); // a body is never read; drain it so the connection can be reused
  let reply: Reply;
  try {
    const path = (req.url ?? '/').split('?', 1)[0] ?? '/';
    const route = ROUTES.get(path);
    const action = ACTIONS.get(path);
    if (action) {
      reply = await endpointAction<number | boolean>(req, options, action);
    } else if (!route) {
      reply = error(404, 'NotFound', `no such path; try ${[...ROUTES.keys()].join(', ')}`);
    } else if (req.method !== 'GET' && req.method !== 'HEAD') {
      reply = error(405, 'MethodNotAllowed', `only ${ALLOW} are allowed here`);
    } else {
      reply = await route(options);
    }
  } catch (err) {
    options.logger?.error({ err, path: req.url }, 'admin request failed');
    reply = error(500, 'InternalError', 'the request could not be served; see the logs');
  }
  send(res, reply);
}

/** A state-changing call on one endpoint: `POST <path>?endpoint=NAME`, authenticated with the ingest token. */
interface EndpointAction<T> {
  /** The word of messages and log lines, e.g. `replay`. */
  readonly name: string;
  /** The engine's step, if this server offers it; resolves undefined for an unknown endpoint. */
  readonly run: (options: AdminServerOptions) => ((endpoint: string) => T | Promise<T> | undefined) | undefined;
  /** The 503 message when the endpoint is shutting down (`SinkClosedError`). */
  readonly closing: string;
  /** The 503 message when the step failed otherwise (logged). */
  readonly failed: string;
  /** The 200 body's field holding the result, also logged with `done`. */
  readonly field: string;
  /** The info log line of a call that was done. */
  readonly done: string;
}

type AnyAction = EndpointAction<number> | EndpointAction<boolean>;

const ACTIONS: ReadonlyMap<string, AnyAction> = new Map<string, AnyAction>([
  ['/endpoints/replay', { name: 'replay', run: (options) => options.replay, field: 'replayed', done: 'dead letters replayed',
    closing: 'the endpoint is shutting down; its dead letters stay for the next start (with a journal)', failed: 'the dead letters could not be replayed now; retry later' }],
  ['/endpoints/resume', { name: 'resume', run: (options) => options.resume, field: 'resumed', done: 'resume requested',
    closing: 'the endpoint is shutting down; its queue is not sent any more', failed: 'the endpoint could not be resumed now; retry later' }],
]);

/**
 * `POST <path>?endpoint=NAME`: runs the action on the endpoint. It changes state, so it needs the ingest token as
 * `Authorization: Bearer`; without a configured token it is refused (403). 404 when the server does not offer it or
 * the endpoint is unknown, 503 while the endpoint shuts down or when the step failed.
 */
async function endpointAction<T>(req: IncomingMessage, options: AdminServerOptions, action: EndpointAction<T>): Promise<Reply> {
  if (req.method !== 'POST') return { ...error(405, 'MethodNotAllowed', 'use POST'), allow: 'POST' };
  const run = action.run(options);
  if (!run) return error(404, 'NotFound', `${action.name} is not available`);
  if (options.token === undefined) return error(403, 'Forbidden', `${action.name} needs an ingest token to be configured (--ingest-token-file)`);
  if (!createAuthenticator(options.token)(req.headers.authorization)) {
    return { ...error(401, 'Unauthorized', 'missing or wrong token'), authenticate: 'Bearer realm="registry-notifier"' };
  }
  const endpoint = new URL(req.url ?? '/', 'http://admin').searchParams.get('endpoint');
  if (!endpoint) return error(400, 'InvalidRequest', 'name the endpoint: ?endpoint=NAME');
  let result: T | undefined;
  try {
    result = await run(endpoint);
  } catch (err) {
    if (err instanceof SinkClosedError) return error(503, 'ShuttingDown', action.closing);
    options.logger?.error({ endpoint, err }, `${action.name} failed`);
    return error(503, 'Unavailable', action.failed);
  }
  if (result === undefined) return error(404, 'NotFound', `no endpoint ${endpoint}`);
  options.logger?.info?.({ endpoint, [action.field]: result }, action.done);
  return { status: 200, type: JSON_TYPE, body: JSON.stringify({ endpoint, [action.field]: result }) };
}

function error(status: number, code: string, message: string): Reply {
  return { status, type: JSON_TYPE, body: JSON.stringify({ error: { code, message } }) };
}

function send(res: ServerResponse, reply: Reply): void {
  if (res.headersSent || res.destroyed) return;
  const headers: Record<string, string | number> = {
    'content-type': reply.type,
    'content-length': Buffer.byteLength(reply.body),
    'cache-control': 'no-store',
  };
  if (reply.status === 405) headers.allow = reply.allow ?? ALLOW;
  if (reply.authenticate) headers['www-authenticate'] = reply.authenticate;
  // For HEAD, Node sends the headers (with the GET's Content-Length) and drops the body.
  res.writeHead(reply.status, headers).end(reply.body);
}
