// An engine process of the fan-out benchmark, forked by fanout.ts, normally for a single measurement so that
// its peak RSS, heap and JIT state belong to that measurement alone (quick mode runs every job in one process).
// The jobs come as JSON in argv[2]; each job's result goes back over IPC (see protocol.ts). Modes:
// - case:   K endpoints (EndpointSet, batch B) -> the loopback receiver; warm-up, then the measured run.
// - raw:    undici Pool with HttpSink's settings, one prebuilt envelope POSTed in a loop: the transport alone.
// - memory: endpoints at a dead loopback port; heapUsed growth per pending event, GC before and after.
import { writeFileSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { Session } from 'node:inspector/promises';
import { setImmediate as yieldToLoop, setTimeout as sleep } from 'node:timers/promises';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { Pool } from 'undici';
import { endpointConfig } from '../src/notifications/endpoint.ts';
import { EndpointSet } from '../src/notifications/endpoint-set.ts';
import type { StatsSnapshot } from '../src/notifications/endpoint-stats.ts';
import { envelopeBody, EVENTS_MEDIA_TYPE, type Event } from '../src/notifications/event.ts';
import { cloneEvent, eventChunk, loadTemplate } from './events.ts';
import type { FromRunner, Job, MemoryResult, RunSpec, ThroughputResult, ToRunner } from './protocol.ts';

const epochNow = (): number => performance.timeOrigin + performance.now();
const USER_AGENT = 'registry-notifier-bench';
/** Longest a measured run may take before it is cut short (the bench always ends). */
const RUN_TIMEOUT_MS = 120_000;

const inbox: ToRunner[] = [];
let wakeInbox: (() => void) | undefined;
process.on('message', (message: ToRunner) => {
  inbox.push(message);
  wakeInbox?.();
});

/** The next message of this type from the orchestrator (the process exits with the orchestrator). */
async function receive<T extends ToRunner['type']>(type: T): Promise<Extract<ToRunner, { type: T }>> {
  for (;;) {
    const index = inbox.findIndex((m) => m.type === type);
    if (index >= 0) return inbox.splice(index, 1)[0] as Extract<ToRunner, { type: T }>;
    await new Promise<void>((resolve) => (wakeInbox = resolve));
    wakeInbox = undefined;
  }
}

/** Sends a message to the orchestrator; resolves once it is handed to the IPC channel. */
function send(message: FromRunner): Promise<void> {
  return new Promise((resolve) => {
    if (!process.send) return resolve();
    process.send(message, undefined, {}, () => resolve());
  });
}

/** `global.gc`, exposing it at run time when node was started without --expose-gc. */
function obtainGc(): () => void {
  if (typeof globalThis.gc === 'function') return globalThis.gc;
  setFlagsFromString('--expose-gc');
  return runInNewContext('gc') as () => void;
}

/** Two full GCs with a turn of the event loop between them (weak callbacks and finalizers run). */
async function fullGc(gc: () => void): Promise<void> {
  gc();
  await yieldToLoop();
  gc();
}

/** Starts the V8 sampling profiler when `path` is given; the returned function stops it and writes the profile. */
async function startProfile(path: string | undefined): Promise<() => Promise<string | undefined>> {
  if (!path) return async () => undefined;
  const session = new Session();
  session.connect();
  await session.post('Profiler.enable');
  await session.post('Profiler.setSamplingInterval', { interval: 200 });
  await session.post('Profiler.start');
  return async () => {
    const { profile } = await session.post('Profiler.stop');
    writeFileSync(path, JSON.stringify(profile));
    session.disconnect();
    return path;
  };
}

/** Sum of a counter over every endpoint of the set. */
function total(set: EndpointSet, pick: (s: StatsSnapshot) => number): number {
  return set.list().reduce((sum, e) => sum + pick(e.stats()), 0);
}

function makeSet(k: number, batch: number, port: number, prefix: string): EndpointSet {
  const set = new EndpointSet({ userAgent: USER_AGENT });
  for (let i = 0; i < k; i++) {
    set.apply(`${prefix}-${i}`, endpointConfig({ url: `http://127.0.0.1:${port}/${prefix}/${i}`, maxBatchEvents: batch }));
  }
  return set;
}

/** Writes `n` fresh events in chunks, yielding to the event loop after each and pausing above `highWater`. */
async function produce(set: EndpointSet, template: Event, n: number, chunk: number, highWater: number, deadline: number): Promise<number> {
  let written = 0;
  while (written < n && performance.now() < deadline) {
    const size = Math.min(chunk, n - written);
    await set.write(eventChunk(template, size));
    written += size;
    await yieldToLoop();
    while (set.pending > highWater && performance.now() < deadline) await sleep(1);
  }
  return written;
}

async function runCase(spec: Extract<Job, { mode: 'case' }>, gc: () => void): Promise<ThroughputResult> {
  const template = loadTemplate();
  // Warm-up with the same shape, to a path the orchestrator does not count; delivered before the real run.
  if (spec.warmup > 0) {
    const warm = makeSet(spec.k, spec.batch, spec.port, 'warmup');
    const deadline = performance.now() + RUN_TIMEOUT_MS;
    await produce(warm, template, spec.warmup, spec.chunk, spec.highWater, deadline);
    while (total(warm, (s) => s.delivered) < spec.warmup * spec.k && performance.now() < deadline) await sleep(5);
    await warm.close(AbortSignal.timeout(5_000));
  }
  const set = makeSet(spec.k, spec.batch, spec.port, 'ep');
  await fullGc(gc);
  await send({ type: 'warm' });
  await receive('go');

  const rssBefore = process.memoryUsage.rss();
  const stopProfile = await startProfile(spec.profile);
  const cpu0 = process.cpuUsage();
  const t0 = epochNow();
  const written = await produce(set, template, spec.n, spec.chunk, spec.highWater, performance.now() + RUN_TIMEOUT_MS);
  const { report } = await receive('received');
  const cpu = process.cpuUsage(cpu0);
  const profile = await stopProfile();
  // The receiver answered the last request; the engine sees the 200 a moment later.
  for (let i = 0; i < 500 && report && total(set, (s) => s.delivered) < spec.n * spec.k; i++) await sleep(10);
  const delivered = total(set, (s) => s.delivered);
  const failures = total(set, (s) => s.failures + s.errors);
  await set.close(AbortSignal.timeout(5_000));
  return {
    t0,
    cpuS: (cpu.user + cpu.system) / 1e6,
    written,
    delivered,
    failures,
    rssBefore,
    maxRss: process.resourceUsage().maxRSS * 1024,
    ...(profile && { profile }),
  };
}

async function runRaw(spec: Extract<Job, { mode: 'raw' }>, gc: () => void): Promise<ThroughputResult> {
  const template = loadTemplate();
  // The same pool settings as HttpSink, and one envelope built once: what the transport costs on its own.
  const pool = new Pool(`http://127.0.0.1:${spec.port}`, {
    connections: 1,
    pipelining: 1,
    keepAliveTimeout: 30_000,
    headersTimeout: 1_000,
    bodyTimeout: 1_000,
  });
  const body = envelopeBody(eventChunk(template, spec.batch).map((event) => JSON.stringify(event)));
  const headers = { 'content-type': EVENTS_MEDIA_TYPE, 'user-agent': USER_AGENT };
  let delivered = 0;
  let failures = 0;
  const post = async (path: string, requests: number, deadline: number): Promise<number> => {
    let sent = 0;
    for (; sent < requests && performance.now() < deadline; sent++) {
      const response = await pool.request({ method: 'POST', path, headers, body });
      await response.body.dump();
      if (response.statusCode >= 200 && response.statusCode < 300) delivered += spec.batch;
      else failures++;
    }
    return sent;
  };
  if (spec.warmup > 0) await post('/warmup/raw', Math.ceil(spec.warmup / spec.batch), performance.now() + RUN_TIMEOUT_MS);
  delivered = 0;
  failures = 0;
  await fullGc(gc);
  await send({ type: 'warm' });
  await receive('go');

  const rssBefore = process.memoryUsage.rss();
  const stopProfile = await startProfile(spec.profile);
  const cpu0 = process.cpuUsage();
  const t0 = epochNow();
  const sent = await post('/raw', Math.ceil(spec.n / spec.batch), performance.now() + RUN_TIMEOUT_MS);
  await receive('received');
  const cpu = process.cpuUsage(cpu0);
  const profile = await stopProfile();
  await pool.close();
  return {
    t0,
    cpuS: (cpu.user + cpu.system) / 1e6,
    written: sent * spec.batch,
    delivered,
    failures,
    rssBefore,
    maxRss: process.resourceUsage().maxRSS * 1024,
    ...(profile && { profile }),
  };
}

/** A loopback port with nothing listening on it (bound once, then released). */
async function deadPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

async function runMemory(spec: Extract<Job, { mode: 'memory' }>, gc: () => void): Promise<MemoryResult> {
  const template = loadTemplate(spec.fixture);
  const port = await deadPort();
  const set = new EndpointSet({ userAgent: USER_AGENT });
  for (let i = 0; i < spec.k; i++) {
    set.apply(`dead-${i}`, endpointConfig({ url: `http://127.0.0.1:${port}/dead`, threshold: 1, backoffMs: 600_000 }));
  }
  // Prime: one event makes every endpoint try once, fail (connection refused) and trip its breaker, so the
  // pool, the error and the sleeping retry exist before the baseline and nothing is in flight afterwards.
  await set.write(eventChunk(template, 1));
  for (let i = 0; i < 500 && set.list().some((e) => e.stats().errors === 0); i++) await sleep(10);
  await fullGc(gc);
  const before = process.memoryUsage();
  const started = performance.now();
  for (let written = 0; written < spec.events; ) {
    const size = Math.min(spec.chunk, spec.events - written);
    await set.write(eventChunk(template, size)); // garbage once queued: only the queues hold the events
    written += size;
  }
  const writeSeconds = (performance.now() - started) / 1000;
  await fullGc(gc);
  const after = process.memoryUsage();
  const pending = set.pending;
  const left = await set.close(AbortSignal.abort());
  return {
    endpoints: spec.k,
    events: spec.events,
    pending,
    heapDelta: after.heapUsed - before.heapUsed,
    rssDelta: after.rss - before.rss,
    discarded: [...left.values()].reduce((a, b) => a + b, 0),
    writeSeconds,
    jsonBytes: Buffer.byteLength(JSON.stringify(cloneEvent(template))),
    fixture: spec.fixture,
  };
}

async function main(): Promise<void> {
  const spec = JSON.parse(process.argv[2] ?? '{"jobs":[]}') as RunSpec;
  const gc = obtainGc();
  process.on('disconnect', () => process.exit(1)); // orchestrator gone: never linger
  try {
    for (const job of spec.jobs) {
      if (job.mode === 'case') await send({ type: 'throughput', result: await runCase(job, gc) });
      else if (job.mode === 'raw') await send({ type: 'throughput', result: await runRaw(job, gc) });
      else await send({ type: 'memory', result: await runMemory(job, gc) });
    }
  } catch (error) {
    await send({ type: 'error', message: error instanceof Error ? (error.stack ?? error.message) : String(error) });
  }
  process.removeAllListeners('disconnect');
  if (process.connected) process.disconnect();
  // Everything is closed; should a handle linger anyway, do not keep the orchestrator waiting.
  setTimeout(() => process.exit(0), 1_000).unref();
}

await main();
