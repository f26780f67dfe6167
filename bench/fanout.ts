/**
 * Fan-out benchmark of the delivery engine: `npm run bench` (about a minute), `npm run bench:quick`
 * (BENCH_QUICK=1 or --quick: N/20, one engine process, under 10 s). Not a test: it prints tables. Three kinds
 * of process:
 *
 * - this orchestrator: starts the others, relays their messages, prints;
 * - one loopback RECEIVER process (child_process.fork of bench/receiver.ts; not a worker thread, so neither
 *   its CPU nor its memory is shared with the engine): node:http on 127.0.0.1, port 0; JSON.parses every
 *   envelope, counts events per path, answers 200;
 * - one ENGINE process per measurement (bench/engine-run.ts), so each row's peak RSS and heap are its own.
 *
 * 1. Throughput, K = 1, 4, 16 endpoints x maxBatchEvents 1 and 100: an EndpointSet whose endpoints POST to the
 *    receiver (one path each); N clones of the captured Distribution 2.8 manifest push with fresh UUIDs,
 *    written in chunks of 1000 (the producer yields to the event loop after each chunk and waits while more
 *    than 20 000 events are pending, as the ingest's pending limit would). After a warm-up of N/10 events,
 *    events/s = K*N / (last event parsed at the receiver - first write). "raw" rows: undici alone, same pool
 *    settings, one prebuilt envelope in a loop: the ceiling of this machine's loopback transport.
 * 2. Peak RSS of the engine process: process.resourceUsage().maxRSS of each engine process.
 * 3. Memory per pending event: endpoints at a dead loopback port (threshold 1, backoff 600 s: after one refused
 *    attempt they wait), 100k events written in chunks the bench lets go, full GC (--expose-gc) before and
 *    after: (heapUsed after - heapUsed before) / events; 1 and 4 endpoints (the 4 queues share each event's
 *    JSON string), and 1 endpoint with the ~1 KB Distribution 3.0 push (target.references) for comparison.
 *
 * Knobs: BENCH_REPEAT=3 runs each row 3 times (the table shows the median run and every rate: the machine
 * may be shared); BENCH_ONLY=1x1,16x100,raw1,memory picks what runs (K x batch, raw rows, the memory part);
 * BENCH_MEMORY=0 and BENCH_RAW=0 skip parts; BENCH_HIGH_WATER=20000; BENCH_PROFILE=1 writes a CPU profile of
 * each measured run to /tmp/registry-notifier-prof/<row>.cpuprofile (`npm run bench:profile-summary -- <file>`).
 */
import { fork, type ChildProcess } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { arch, cpus, loadavg, platform } from 'node:os';
import { join } from 'node:path';
import { TEMPLATE_FIXTURE, V3_TEMPLATE_FIXTURE } from './events.ts';
import type { FromRunner, Job, MemoryResult, ReceiverDone, RunSpec, ThroughputResult, ToRunner } from './protocol.ts';
import type { FromReceiver, ToReceiver } from './receiver.ts';

const QUICK = process.env.BENCH_QUICK === '1' || process.argv.includes('--quick');
const ONLY = process.env.BENCH_ONLY?.split(',').map((s) => s.trim()).filter(Boolean);
const RUN_MEMORY = process.env.BENCH_MEMORY !== '0';
const RUN_RAW = process.env.BENCH_RAW !== '0';
/** Full mode: each row runs this many times (own process each); the table shows the median run and the range. */
const REPEAT = QUICK ? 1 : Math.max(1, Number(process.env.BENCH_REPEAT ?? 1));
const PROFILE_DIR = process.env.BENCH_PROFILE === '1' ? '/tmp/registry-notifier-prof' : undefined;
const CHUNK = 1000;
const HIGH_WATER = Number(process.env.BENCH_HIGH_WATER ?? 20_000);
const MEMORY_EVENTS = QUICK ? 25_000 : 100_000;
/** A measured run that has not finished after this long is reported as a timeout. */
const RUN_TIMEOUT_MS = QUICK ? 15_000 : 60_000;

/** One throughput row: K endpoints (0 = raw undici), batch size, events per endpoint. */
interface Row {
  k: number;
  batch: number;
  n: number;
}

// N per row, chosen so each full run takes about 2-5 s on a 2-core machine; quick mode divides by 20.
const FULL_ROWS: Row[] = [
  { k: 1, batch: 1, n: 20_000 },
  { k: 1, batch: 100, n: 200_000 },
  { k: 4, batch: 1, n: 5_000 },
  { k: 4, batch: 100, n: 100_000 },
  { k: 16, batch: 1, n: 1_500 },
  { k: 16, batch: 100, n: 25_000 },
  { k: 0, batch: 1, n: 20_000 },
  { k: 0, batch: 100, n: 200_000 },
];
const rowName = (r: Row): string => (r.k === 0 ? `raw${r.batch}` : `${r.k}x${r.batch}`);
const ROWS: Row[] = FULL_ROWS.map((r) => (QUICK ? { ...r, n: Math.round(r.n / 20) } : r)).filter(
  (r) => (ONLY ? ONLY.includes(rowName(r)) : r.k > 0 || (RUN_RAW && !QUICK)),
);

/** A forked child with typed IPC: `next` waits for a message type, and gives undefined on timeout or exit. */
class IpcChild<In, Out extends { type: string }> {
  readonly child: ChildProcess;
  #waiters: ((message: Out | undefined) => boolean)[] = [];
  #exited: Promise<void>;

  constructor(script: string, args: string[], execArgv: string[]) {
    this.child = fork(new URL(script, import.meta.url), args, { execArgv, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    this.child.on('message', (message: Out) => {
      this.#waiters = this.#waiters.filter((take) => !take(message));
    });
    this.#exited = new Promise((resolve) => this.child.once('exit', () => resolve()));
    void this.#exited.then(() => {
      for (const take of this.#waiters) take(undefined);
      this.#waiters = [];
    });
  }

  /** The next message whose type is one of `types`; undefined after `timeoutMs` or when the child exits. */
  next<T extends Out['type']>(types: T[], timeoutMs: number): Promise<Extract<Out, { type: T }> | undefined> {
    return new Promise((resolve) => {
      const take = (message: Out | undefined): boolean => {
        if (message !== undefined && !types.includes(message.type as T)) return false;
        clearTimeout(timer);
        resolve(message as Extract<Out, { type: T }> | undefined);
        return true;
      };
      const timer = setTimeout(() => {
        this.#waiters = this.#waiters.filter((w) => w !== take);
        resolve(undefined);
      }, timeoutMs);
      this.#waiters.push(take);
    });
  }

  /** Sends a message if the child is still connected. */
  send(message: In): void {
    if (this.child.connected) this.child.send(message as object);
  }

  /** Waits up to `graceMs` for the child to exit, then kills this one child. */
  async finish(graceMs: number): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    const timer = setTimeout(() => this.child.kill(), graceMs);
    await this.#exited;
    clearTimeout(timer);
  }
}

type Receiver = IpcChild<ToReceiver, FromReceiver>;
type Runner = IpcChild<ToRunner, FromRunner>;

/** What one throughput row measured, or why it has no numbers. */
interface RowResult extends Row {
  result?: ThroughputResult;
  report?: ReceiverDone;
  problems: string[];
  /** events/s of every repetition of this row (BENCH_REPEAT), when there was more than one. */
  spread?: number[];
}

/** The engine-process job for a throughput row. */
function rowJob(row: Row, port: number): Job {
  const profile = PROFILE_DIR && join(PROFILE_DIR, `${rowName(row)}.cpuprofile`);
  const warmup = Math.ceil(row.n / 10);
  return row.k === 0
    ? { mode: 'raw', batch: row.batch, n: row.n, port, warmup, ...(profile && { profile }) }
    : { mode: 'case', k: row.k, batch: row.batch, n: row.n, port, chunk: CHUNK, highWater: HIGH_WATER, warmup, ...(profile && { profile }) };
}

/** Drives one throughput job of `runner`; `fatal` says the runner can do no more. */
async function driveRow(runner: Runner, receiver: Receiver, row: Row): Promise<RowResult & { fatal?: string }> {
  const warm = await runner.next(['warm', 'error'], RUN_TIMEOUT_MS);
  if (warm?.type !== 'warm') {
    const fatal = warm?.type === 'error' ? warm.message : 'engine process gave no warm-up signal';
    return { ...row, problems: [fatal], fatal };
  }
  const expected = row.n * Math.max(row.k, 1);
  const armed = receiver.next(['armed'], 5_000);
  receiver.send({ type: 'expect', total: expected });
  if (!(await armed)) return { ...row, problems: ['receiver did not answer'], fatal: 'receiver did not answer' };
  const done = receiver.next(['done'], RUN_TIMEOUT_MS);
  runner.send({ type: 'go' });
  const report = await done;
  runner.send({ type: 'received', report: report ?? null });
  const answer = await runner.next(['throughput', 'error'], 30_000);
  if (answer?.type !== 'throughput') {
    const fatal = answer?.type === 'error' ? answer.message : 'engine process gave no result';
    return { ...row, problems: [fatal], fatal };
  }
  const result = answer.result;
  const problems: string[] = [];
  if (!report) problems.push(`timeout after ${RUN_TIMEOUT_MS / 1000} s (${result.written} written)`);
  else {
    const paths = row.k === 0 ? ['/raw'] : Array.from({ length: row.k }, (_, i) => `/ep/${i}`);
    for (const path of paths) if ((report.perPath[path] ?? 0) !== row.n) problems.push(`${path} got ${report.perPath[path] ?? 0}`);
    if (report.bad > 0) problems.push(`${report.bad} bad bodies`);
    if (result.delivered !== expected) problems.push(`engine delivered ${result.delivered}`);
  }
  return { ...row, result, ...(report && { report }), problems };
}

/** One pending-memory measurement: K dead endpoints, events cloned from `fixture`. */
interface MemoryRow {
  k: number;
  fixture: string;
}

/** Runs throughput rows, then memory measurements, in order in ONE engine process. */
async function runEngineProcess(receiver: Receiver | undefined, port: number, rows: Row[], memoryRows: MemoryRow[]): Promise<{ rows: RowResult[]; memory: (MemoryResult | string)[] }> {
  const jobs: Job[] = [
    ...rows.map((row) => rowJob(row, port)),
    ...memoryRows.map(({ k, fixture }): Job => ({ mode: 'memory', k, events: MEMORY_EVENTS, chunk: CHUNK, fixture })),
  ];
  const runner: Runner = new IpcChild('./engine-run.ts', [JSON.stringify({ jobs } satisfies RunSpec)], ['--expose-gc']);
  const out: { rows: RowResult[]; memory: (MemoryResult | string)[] } = { rows: [], memory: [] };
  let fatal: string | undefined;
  try {
    for (const row of rows) {
      if (fatal || !receiver) {
        out.rows.push({ ...row, problems: [fatal ?? 'no receiver'] });
        continue;
      }
      const result = await driveRow(runner, receiver, row);
      fatal = result.fatal;
      out.rows.push(result);
      process.stderr.write(`  ${rowName(row)}: ${int((row.n * Math.max(row.k, 1)) / seconds(result))} ev/s ${result.problems.join('; ')}\n`);
    }
    for (const _row of memoryRows) {
      const answer = fatal ? undefined : await runner.next(['memory', 'error'], RUN_TIMEOUT_MS);
      if (answer?.type === 'memory') out.memory.push(answer.result);
      else out.memory.push((fatal ??= answer?.message ?? 'engine process gave no result'));
    }
  } finally {
    await runner.finish(5_000);
  }
  return out;
}

/** The run with the median events/s (failed runs count as slowest), with every run's rate when repeated. */
function median(runs: RowResult[]): RowResult {
  if (runs.length === 1) return runs[0]!;
  const score = (r: RowResult): number => (r.problems.length === 0 && Number.isFinite(rate(r)) ? rate(r) : -1);
  const sorted = [...runs].sort((a, b) => score(a) - score(b));
  return { ...sorted[Math.floor((sorted.length - 1) / 2)]!, spread: sorted.map((r) => rate(r) * Math.max(r.k, 1)) };
}

/** Renders rows as an aligned text table (first column left-aligned, the rest right-aligned). */
function table(headers: string[], rows: string[][]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]): string =>
    cells.map((cell, i) => (i === 0 ? cell.padEnd(widths[i]!) : cell.padStart(widths[i]!))).join('  ').trimEnd();
  return [line(headers), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n');
}

const int = (x: number): string => (Number.isFinite(x) ? Math.round(x).toLocaleString('en-US') : '-');
const fixed = (x: number, digits: number): string => (Number.isFinite(x) ? x.toFixed(digits) : '-');
const pct = (x: number): string => (Number.isFinite(x) ? `${Math.round(x * 100)}%` : '-');
const mb = (bytes: number): string => fixed(bytes / 2 ** 20, 0);
const load = (): string => loadavg().map((x) => x.toFixed(2)).join(' ');
const seconds = (r: RowResult): number => (r.report && r.result ? (r.report.lastAt - r.result.t0) / 1000 : Number.NaN);
const rate = (r: RowResult | undefined): number => (r ? r.n / seconds(r) : Number.NaN);

function printThroughput(results: RowResult[]): void {
  console.log('\nThroughput: delivered at the receiver, from the first write to the last event parsed');
  console.log(
    table(
      [
        'K', 'batch', 'events/endpoint', 'total events', 'POSTs', 'time (s)', 'events/s total', 'events/s per endpoint',
        ...(REPEAT > 1 ? [`events/s total, ${REPEAT} runs`] : []),
        'engine CPU', 'engine CPU us/event', 'receiver CPU', 'RSS at start (MB)', 'peak RSS (MB)', 'failed attempts', 'check',
      ],
      results.map((r) => {
        const s = seconds(r);
        const events = r.n * Math.max(r.k, 1);
        const res = r.result;
        return [
          r.k === 0 ? 'raw*' : String(r.k),
          String(r.batch),
          int(r.n),
          int(events),
          int(r.report?.requests ?? Number.NaN),
          fixed(s, 2),
          int(events / s),
          int(r.n / s),
          ...(REPEAT > 1 ? [r.spread ? r.spread.map(int).join(' / ') : '-'] : []),
          pct(res ? res.cpuS / s : Number.NaN),
          fixed(res ? (res.cpuS * 1e6) / events : Number.NaN, 1),
          pct(r.report ? r.report.cpuUs / 1e6 / s : Number.NaN),
          res ? mb(res.rssBefore) : '-',
          res ? mb(res.maxRss) : '-',
          res ? String(res.failures) : '-',
          r.problems.length === 0 ? 'ok' : r.problems.join('; ').slice(0, 200),
        ];
      }),
    ),
  );
  if (results.some((r) => r.k === 0)) {
    console.log('* raw: undici Pool alone (connections 1, pipelining 1, as HttpSink) POSTing one prebuilt envelope in a loop: the transport ceiling');
  }
  const find = (k: number, batch: number): RowResult | undefined => results.find((r) => r.k === k && r.batch === batch);
  const verdicts: string[] = [];
  for (const [batch, target, label] of [
    [1, 3_000, '>= 3,000'],
    [100, 30_001, '> 30,000'],
  ] as const) {
    const row = find(1, batch);
    if (!row) continue;
    const raw = find(0, batch);
    const ok = row.problems.length === 0 && rate(row) >= target;
    const ofRaw = raw ? ` (${pct(rate(row) / rate(raw))} of raw ${int(rate(raw))})` : '';
    verdicts.push(`K=1 batch ${batch} ${label} ev/s: ${int(rate(row))}${ofRaw} ${ok ? 'PASS' : 'MISS'}`);
  }
  if (verdicts.length > 0) console.log(`targets${QUICK ? ' (QUICK mode: short runs, indicative only)' : ''}: ${verdicts.join('; ')}`);
}

function printMemory(results: (MemoryResult | string)[]): void {
  console.log('\nMemory per pending event: endpoints at a dead 127.0.0.1 port (threshold 1, backoff 600 s), full GC before and after');
  const ok = results.filter((r): r is MemoryResult => typeof r !== 'string');
  for (const failure of results.filter((r): r is string => typeof r === 'string')) console.log(`error: ${failure}`);
  console.log(
    table(
      ['endpoints', 'events (fixture)', 'pending', 'heapUsed delta (MB)', 'bytes/event', 'bytes/queue entry', 'event JSON (B)', 'RSS delta (MB)', 'write time (s)', 'discarded on close'],
      ok.map((r) => [
        String(r.endpoints),
        `${int(r.events)} (${r.fixture.includes('/v3/') ? 'v3/' : ''}${r.fixture.split('/').pop()})`,
        int(r.pending),
        fixed(r.heapDelta / 2 ** 20, 1),
        int(r.heapDelta / r.events),
        int(r.heapDelta / (r.events * r.endpoints)),
        r.endpoints === 1 ? String(r.jsonBytes) : `${r.jsonBytes} shared`,
        fixed(r.rssDelta / 2 ** 20, 1),
        fixed(r.writeSeconds, 2),
        int(r.discarded),
      ]),
    ),
  );
  const one = ok.find((r) => r.endpoints === 1 && r.fixture === TEMPLATE_FIXTURE);
  if (one) {
    const perEvent = one.heapDelta / one.events;
    console.log(`target: < 1,024 B per pending event (1 endpoint, ${TEMPLATE_FIXTURE.split('/').pop()}): ${int(perEvent)} B, of which ${one.jsonBytes} B is the event's JSON ${perEvent < 1024 ? 'PASS' : 'MISS'}`);
  }
}

async function main(): Promise<void> {
  const started = performance.now();
  const cpu = cpus();
  console.log(`registry-notifier fan-out bench: node ${process.version} ${platform()}/${arch()}, ${cpu.length} x ${cpu[0]?.model ?? '?'}, mode ${QUICK ? 'QUICK' : 'full'}`);
  console.log(`load average at start: ${load()} (other processes on the machine compete for the same cores)`);
  console.log(`events: clones of ${TEMPLATE_FIXTURE.split('/').pop()} with fresh UUIDs (event and request id)`);
  if (PROFILE_DIR) mkdirSync(PROFILE_DIR, { recursive: true });

  const memoryRows: MemoryRow[] = !RUN_MEMORY || (ONLY && !ONLY.includes('memory')) ? [] : QUICK
    ? [{ k: 1, fixture: TEMPLATE_FIXTURE }]
    : [{ k: 1, fixture: TEMPLATE_FIXTURE }, { k: 4, fixture: TEMPLATE_FIXTURE }, { k: 1, fixture: V3_TEMPLATE_FIXTURE }];
  let receiver: Receiver | undefined;
  let port = 0;
  if (ROWS.length > 0) {
    receiver = new IpcChild('./receiver.ts', [], []);
    const ready = await receiver.next(['ready'], 10_000);
    if (!ready) throw new Error('receiver did not start');
    port = ready.port;
    console.log(`receiver: separate process (child_process.fork bench/receiver.ts, pid ${ready.pid}), node:http on 127.0.0.1:${port}, JSON.parse per envelope, 200`);
    console.log(
      `engine: ${QUICK ? 'ONE process for every row (quick mode: RSS columns are cumulative)' : 'one process per row (bench/engine-run.ts)'}; producer writes chunks of ${CHUNK}, yields after each, waits while set.pending > ${HIGH_WATER.toLocaleString('en-US')}; warm-up N/10 first`,
    );
  }
  const rows: RowResult[] = [];
  const memory: (MemoryResult | string)[] = [];
  try {
    if (QUICK) {
      const out = await runEngineProcess(receiver, port, ROWS, memoryRows);
      rows.push(...out.rows);
      memory.push(...out.memory);
    } else {
      for (const row of ROWS) {
        const runs: RowResult[] = [];
        for (let i = 0; i < REPEAT; i++) runs.push(...(await runEngineProcess(receiver, port, [row], [])).rows);
        rows.push(median(runs));
      }
      for (const m of memoryRows) memory.push(...(await runEngineProcess(undefined, port, [], [m])).memory);
    }
  } finally {
    if (receiver) {
      receiver.send({ type: 'stop' });
      await receiver.finish(2_000);
    }
  }
  if (rows.length > 0) printThroughput(rows);
  if (memory.length > 0) printMemory(memory);
  console.log(`\ntotal bench time ${fixed((performance.now() - started) / 1000, 1)} s; load average at end: ${load()}`);
  if (PROFILE_DIR) console.log(`CPU profiles of the measured runs: ${PROFILE_DIR}/<row>.cpuprofile`);
}

await main();
