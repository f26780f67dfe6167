// Loopback webhook receiver for the benchmarks, run as a separate process (child_process.fork) so its CPU never
// shares the engine's event loop: it parses every envelope with JSON.parse, counts the events per path and
// answers 200 with an empty body, at once or after `--delay-ms` (a receiver that takes its time). An envelope's
// events count once it is answered. It talks to the parent over the IPC channel only, and exits when the parent
// says `stop` or goes away.
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

/** Parent -> receiver: reset the counters and report `done` once `total` events have arrived; or shut down. */
export type ToReceiver = { type: 'expect'; total: number } | { type: 'stop' };

/** Receiver -> parent: listening on `port`; armed for a case; the case's events all arrived. */
export type FromReceiver =
  | { type: 'ready'; port: number; pid: number }
  | { type: 'armed' }
  | {
      type: 'done';
      /** Epoch ms (high resolution: timeOrigin + performance.now()) when the last expected event was answered. */
      lastAt: number;
      /** Epoch ms when the first request of the case arrived. */
      firstAt: number;
      events: number;
      requests: number;
      /** Requests whose body was not an envelope (answered 400). */
      bad: number;
      /** Events per request path (one path per endpoint). */
      perPath: Record<string, number>;
      /** CPU the receiver used during the case, microseconds. */
      cpuUs: number;
    };

const epochNow = (): number => performance.timeOrigin + performance.now();

let expected = Number.POSITIVE_INFINITY;
let events = 0;
let requests = 0;
let bad = 0;
let firstAt = 0;
let perPath = new Map<string, number>();
let cpuAtArm = process.cpuUsage();
const delayArg = process.argv.indexOf('--delay-ms');
/** How long each request is held before its answer (`--delay-ms`, default 0: at once). */
const DELAY_MS = delayArg > 0 ? Number(process.argv[delayArg + 1]) : 0;

function send(message: FromReceiver): void {
  process.send?.(message);
}

function onRequest(req: IncomingMessage, res: ServerResponse): void {
  const chunks: Buffer[] = [];
  req.on('data', (chunk: Buffer) => chunks.push(chunk));
  req.on('end', () => {
    if (firstAt === 0) firstAt = epochNow();
    let count = -1;
    try {
      const body = chunks.length === 1 ? chunks[0]!.toString('utf8') : Buffer.concat(chunks).toString('utf8');
      const envelope = JSON.parse(body) as { events?: unknown };
      if (Array.isArray(envelope.events)) count = envelope.events.length;
    } catch {
      // counted as bad below
    }
    if (count < 0) {
      bad++;
      res.writeHead(400, { 'content-length': '0' }).end();
      return;
    }
    if (DELAY_MS > 0) setTimeout(() => answer(req, res, count), DELAY_MS);
    else answer(req, res, count);
  });
}

// Counts the envelope's events and answers 200; the case's report once every expected event was answered.
function answer(req: IncomingMessage, res: ServerResponse, count: number): void {
  requests++;
  events += count;
  const path = req.url ?? '/';
  perPath.set(path, (perPath.get(path) ?? 0) + count);
  res.writeHead(200, { 'content-length': '0' }).end();
  if (events >= expected) {
    const lastAt = epochNow();
    const cpu = process.cpuUsage(cpuAtArm);
    expected = Number.POSITIVE_INFINITY;
    send({ type: 'done', lastAt, firstAt, events, requests, bad, perPath: Object.fromEntries(perPath), cpuUs: cpu.user + cpu.system });
  }
}

const server = createServer({ keepAliveTimeout: 60_000 }, onRequest);

process.on('message', (message: ToReceiver) => {
  if (message.type === 'expect') {
    expected = message.total;
    events = 0;
    requests = 0;
    bad = 0;
    firstAt = 0;
    perPath = new Map();
    cpuAtArm = process.cpuUsage();
    send({ type: 'armed' });
  } else if (message.type === 'stop') {
    shutdown();
  }
});
process.on('disconnect', shutdown);

function shutdown(): void {
  server.close();
  server.closeAllConnections();
  if (process.connected) process.disconnect();
  setTimeout(() => process.exit(0), 200).unref();
}

server.listen(0, '127.0.0.1', () => {
  send({ type: 'ready', port: (server.address() as AddressInfo).port, pid: process.pid });
});
