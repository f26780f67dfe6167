// Ingest burst benchmark (`npm run bench:ingest`): 10k-event bursts through the real `registry-notifier serve`
// process, posted the way Distribution posts (one event per request, each poster waiting for its answer, each
// event's id a random UUID), into one endpoint whose loopback receiver (bench/receiver.ts, a process of its own)
// parses every envelope. Each case first posts 30,000 requests of warm-up to the same process in loads of 5,000
// (printing each load's rate and CPU), then three measured bursts; its row is the median burst. Prints accepted
// events/s, ingest latency percentiles, delivered events/s and the CPU per request of the replica, the database
// and the poster: in memory, with the journal, and on PostgreSQL (a real server started here with fsync and
// synchronous commit on, as in production; skipped when its binaries are absent), and the share of the machine's
// CPU time a hypervisor stole meanwhile. Only 127.0.0.1; it stops by itself.
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type Dispatcher, Pool } from 'undici';
import { machineCpu, machineShares, processCpu, processTreeCpu } from './machine-cpu.ts';
import { startReceiver } from './receiver-process.ts';
import { startServe } from './serve-process.ts';
import { within } from './until.ts';
import { EVENTS_MEDIA_TYPE } from '../src/notifications/event.ts';
import { postgresBinaries, startPostgres, type TestPostgres } from '../test/support/postgres.ts';
import pg from 'pg';

const { Client: PgClient } = pg;

const QUICK = process.argv.includes('--quick') || process.env.BENCH_QUICK === '1';
const EVENTS = QUICK ? 2_000 : 10_000;
/**
 * `BENCH_WARMUP`: requests each case's process serves before the measured bursts (0: measure a fresh process).
 * V8 keeps optimizing the request path, the replica's and the poster's, for about 25,000 requests: on PostgreSQL
 * after 5,000 the replica still spent 400-450 µs of CPU per request and the poster 180-210, after 30,000 290-345
 * and 100-120.
 */
const WARMUP = Number(process.env.BENCH_WARMUP ?? (QUICK ? 500 : 30_000));
/** Warm-up requests per load: each load's rate and CPU is printed, so the warm-up shows where it levels off. */
const WARMUP_LOAD = 5_000;
/** `BENCH_BURSTS`: measured bursts per case; the row is the median one (a shared machine's pace drifts). */
const BURSTS = Math.max(1, Number(process.env.BENCH_BURSTS ?? (QUICK ? 1 : 3)));
/** `--only postgres` (or memory, journal): one backend's rows. */
const onlyArg = process.argv.indexOf('--only');
const ONLY = onlyArg > 0 ? process.argv[onlyArg + 1] : undefined;
const CONCURRENCY = process.env.BENCH_POSTERS ? [Number(process.env.BENCH_POSTERS)] : [1, 8];
/**
 * `--fsync-off-too`: the postgres rows again on a server with fsync off (a commit still waits for its write to
 * reach the operating system, not the disk): not durable, never for production; it shows what the product itself
 * reaches where the disk flushes fast, apart from this machine's flush time.
 */
const FSYNC_OFF_TOO = process.argv.includes('--fsync-off-too');
/**
 * `--wal-sync-method fdatasync,open_datasync`: the postgres rows once per method, fsync on (durable either way).
 * Which is fastest depends on the disk: PostgreSQL's `pg_test_fsync` tells, and its result is a setting of the
 * database's server, not of registry-notifier. Without it the server's default (fdatasync on Linux).
 */
const walArg = process.argv.indexOf('--wal-sync-method');
const WAL_SYNC_METHODS: (string | undefined)[] = walArg > 0 ? (process.argv[walArg + 1] ?? '').split(',').filter(Boolean) : [undefined];

/** What one burst measured. */
interface Burst {
  acceptedPerSec: number;
  /** Request latencies, ms, ascending. */
  latencies: number[];
  deliveredPerSec: number;
  /** Events per request the receiver got (the endpoint batches up to 100). */
  perDelivery: number;
  /** The machine's CPU time stolen by the hypervisor while the events were posted, as a share. */
  steal: number;
  /** CPU per request until the last event was delivered, µs: the serve process, the database server (every one of its processes), this poster. */
  cpu: { replica: number; database?: number; poster: number };
}

/** One measured case: its median burst, and the accepted events/s of every burst. */
interface Result extends Burst {
  mode: string;
  posters: number;
  bursts: number[];
}

const template = {
  timestamp: '2026-11-22T16:13:29.216677486Z',
  action: 'push',
  target: {
    mediaType: 'application/vnd.oci.image.manifest.v1+json',
    size: 418,
    digest: 'sha256:736bca91cb546b3ff8ee785c3ab7111cfb7e81d61a09a927d960157e65825edd',
    length: 418,
    repository: 'demo/app',
    url: 'http://127.0.0.1:5000/v2/demo/app/manifests/sha256:736bca91cb546b3ff8ee785c3ab7111cfb7e81d61a09a927d960157e65825edd',
    tag: 'v1',
  },
  request: { id: 'f56df54c-b8ed-4119-8d69-6f0aab8ae89d', addr: '127.0.0.1:52590', host: '127.0.0.1:5000', method: 'PUT', useragent: 'skopeo/1.9.3' },
  actor: {},
  source: { addr: 'vm:5000', instanceID: '42586a47-a8a0-436c-b94b-29715cb6ec6b' },
};

async function main(): Promise<void> {
  const results: Result[] = [];
  const ceilings: { mode: string; commits: number }[] = [];
  let ceilingNoFsync: number | undefined;
  for (const mode of ['memory', 'journal'] as const) {
    if (ONLY && ONLY !== mode) continue;
    for (const posters of CONCURRENCY) results.push(await runCase(mode, posters));
  }
  if (ONLY && ONLY !== 'postgres') {
    // skipped
  } else if (postgresBinaries()) {
    const servers = [
      ...WAL_SYNC_METHODS.map((method) => ({ fsync: true, method })),
      ...(FSYNC_OFF_TOO ? [{ fsync: false, method: undefined }] : []),
    ];
    for (const { fsync, method } of servers) {
      const pg = await startPostgres({ fsync, ...(method && { settings: { wal_sync_method: method } }) });
      const mode = !fsync ? 'postgres, fsync off' : method ? `postgres, ${method}` : 'postgres';
      try {
        let commits = await serialCommits(pg);
        for (const posters of CONCURRENCY) results.push(await runCase(mode, posters, pg));
        commits = (commits + await serialCommits(pg)) / 2; // before and after: the disk's rate drifts
        if (fsync) ceilings.push({ mode, commits });
        else ceilingNoFsync = commits;
      } finally {
        await pg.stop();
      }
    }
  } else {
    console.log('(no PostgreSQL binaries: the postgres rows are skipped; hack/install-postgres.sh installs them)');
  }
  console.log(`\ningest bursts: ${EVENTS} events each, one per request (as Distribution sends them), one endpoint (batch 100), after ${WARMUP} requests of warm-up; ` +
    `each row is the median of ${BURSTS} burst${BURSTS === 1 ? '' : 's'}`);
  console.table(results.map((r) => ({
    mode: r.mode,
    posters: r.posters,
    'accepted ev/s': Math.round(r.acceptedPerSec),
    'p50 ms': percentile(r.latencies, 0.5).toFixed(2),
    'p99 ms': percentile(r.latencies, 0.99).toFixed(2),
    'max ms': r.latencies.at(-1)!.toFixed(1),
    'delivered ev/s': Math.round(r.deliveredPerSec),
    'events per delivery': r.perDelivery.toFixed(1),
    'replica µs/req': Math.round(r.cpu.replica),
    'db µs/req': r.cpu.database === undefined ? '' : Math.round(r.cpu.database),
    'poster µs/req': Math.round(r.cpu.poster),
    stolen: `${Math.round(r.steal * 100)}%`,
  })));
  if (BURSTS > 1) for (const r of results) console.log(`${r.mode}, ${r.posters} poster${r.posters === 1 ? '' : 's'}: accepted ev/s of each burst ${r.bursts.map((n) => Math.round(n).toLocaleString('en-US')).join(', ')}`);
  console.log('µs/req: CPU time per request until the burst was delivered, of the serve process, of the database server (all its processes) and of the ' +
    'poster (this Node.js process and its HTTP client, standing in for the registry)');
  console.log('stolen: the share of the machine\'s CPU time its hypervisor gave to other guests while the events were posted; ' +
    'on a virtual machine whose host is busy everything runs slower too, so compare the rows of runs with little stolen');
  for (const { mode, commits } of ceilings) {
    console.log(`PostgreSQL's own ceiling for one poster (${mode}): ${Math.round(commits)} commits/s, one connection committing a one-row INSERT at a time ` +
      '(each waits for its WAL flush: no request that must be durable before its answer can be accepted faster one at a time)');
  }
  if (ceilingNoFsync !== undefined) console.log(`with fsync off (not durable: the product's own ceiling apart from the disk): ${Math.round(ceilingNoFsync)} commits/s`);
}

/** Commits a second on this server by one connection, each a one-row INSERT waiting for its WAL flush. */
async function serialCommits(pg: TestPostgres): Promise<number> {
  const client = new PgClient({ connectionString: await pg.createDatabase() });
  await client.connect();
  try {
    await client.query('CREATE TABLE bench_commits (n int)');
    const n = QUICK ? 300 : 2_000;
    const started = performance.now();
    for (let i = 0; i < n; i++) await client.query('INSERT INTO bench_commits VALUES ($1)', [i]);
    return n / ((performance.now() - started) / 1000);
  } finally {
    await client.end();
  }
}

async function runCase(mode: string, posters: number, pg?: TestPostgres): Promise<Result> {
  const dir = await mkdtemp(join(tmpdir(), 'rn-bench-ingest-'));
  const receiver = await startReceiver();
  let child: Awaited<ReturnType<typeof startServe>>['child'] | undefined;
  try {
    await writeFile(join(dir, 'endpoints.yaml'), `apiVersion: registry-notifier.io/v1alpha1\nkind: NotificationEndpoint\nmetadata:\n  name: bench\nspec:\n  url: ${receiver.url}/events\n  maxBatchEvents: 100\n`);
    const args = ['--listen', '127.0.0.1:0', '--metrics-listen', '127.0.0.1:0', '--endpoints', join(dir, 'endpoints.yaml'),
      '--allow-endpoint-cidrs', '127.0.0.0/8', '--log-level', 'info',
      ...(mode === 'journal' ? ['--queue-dir', join(dir, 'journal')] : []),
      ...(mode.startsWith('postgres') && pg ? ['--database-url', await pg.createDatabase(), '--replica-id', 'bench'] : [])];
    const serve = await startServe(args, 30_000);
    child = serve.child;
    const replicaPid = child.pid!;
    const pool = new Pool(new URL(serve.ingest).origin, { connections: posters, pipelining: 1 });
    const path = new URL(serve.ingest).pathname;
    const cpuNow = (): Burst['cpu'] => ({
      replica: processCpu(replicaPid),
      ...(pg?.pid !== undefined && { database: processTreeCpu(pg.pid) }),
      poster: processCpu(process.pid),
    });
    // `count` events posted by `posters` registries, one per request, each waiting for its answer; resolves once
    // the receiver has every one.
    const burst = async (count: number): Promise<Burst> => {
      const { done } = await receiver.expect(count);
      const latencies: number[] = [];
      let next = 0;
      const cpu0 = cpuNow();
      const machine0 = machineCpu();
      const started = performance.now();
      await Promise.all(Array.from({ length: posters }, async () => {
        while (next < count) {
          next++;
          const body = JSON.stringify({ events: [{ id: randomUUID(), ...template }] });
          const t0 = performance.now();
          const status = await post(pool, path, body);
          latencies.push(performance.now() - t0);
          if (status !== 202) throw new Error(`ingest answered ${status}`);
        }
      }));
      const acceptedAt = performance.now();
      const { steal } = machineShares(machine0, machineCpu());
      const report = await within(done, 120_000, `every one of ${count} events delivered`);
      const cpu1 = cpuNow();
      const perRequest = (from: number | undefined, to: number | undefined): number => ((to ?? 0) - (from ?? 0)) * 1e6 / count;
      return {
        acceptedPerSec: count / ((acceptedAt - started) / 1000),
        latencies: latencies.sort((a, b) => a - b),
        deliveredPerSec: count / ((report.lastAt - performance.timeOrigin - started) / 1000),
        perDelivery: count / report.requests,
        steal,
        cpu: {
          replica: perRequest(cpu0.replica, cpu1.replica),
          ...(cpu0.database !== undefined && { database: perRequest(cpu0.database, cpu1.database) }),
          poster: perRequest(cpu0.poster, cpu1.poster),
        },
      };
    };
    // A registry posts for as long as the replica runs: the bursts are measured on a process that has served WARMUP
    // requests already (V8 has optimized its request path by then), not on one that is still compiling it.
    const loads: string[] = [];
    for (let posted = 0; posted < WARMUP; posted += WARMUP_LOAD) {
      const load = await burst(Math.min(WARMUP_LOAD, WARMUP - posted));
      loads.push(`${Math.round(load.acceptedPerSec).toLocaleString('en-US')}/s ${Math.round(load.cpu.replica)} µs${load.steal >= 0.02 ? ` (${Math.round(load.steal * 100)}% stolen)` : ''}`);
    }
    if (loads.length > 0) console.log(`${mode}, ${posters} poster${posters === 1 ? '' : 's'}, warm-up loads of ${Math.min(WARMUP, WARMUP_LOAD).toLocaleString('en-US')} (accepted, replica CPU per request): ${loads.join(', ')}`);
    const measured: Burst[] = [];
    for (let k = 0; k < BURSTS; k++) measured.push(await burst(EVENTS));
    await pool.close();
    const median = [...measured].sort((a, b) => a.acceptedPerSec - b.acceptedPerSec)[Math.floor(measured.length / 2)]!;
    return { mode, posters, ...median, bursts: measured.map((b) => b.acceptedPerSec) };
  } finally {
    if (child && child.exitCode === null && child.signalCode === null) {
      const exited = new Promise((resolve) => child!.once('exit', resolve));
      child.kill('SIGTERM');
      await exited;
    }
    receiver.stop();
    await rm(dir, { recursive: true, force: true });
  }
}

/**
 * POSTs one envelope and resolves with the answer's status once the answer has been read, its body discarded:
 * undici's `dispatch`, without the response stream `request` builds, so the poster (standing in for a registry,
 * a Go program) spends about 25 µs less of CPU per request than with `request` and `body.dump()`.
 */
function post(pool: Pool, path: string, body: string): Promise<number> {
  return new Promise((resolve, reject) => {
    let status = 0;
    const handler: Dispatcher.DispatchHandler = {
      onRequestStart: () => {},
      onResponseStart: (_controller, statusCode) => void (status = statusCode),
      onResponseData: () => {},
      onResponseEnd: () => resolve(status),
      onResponseError: (_controller, error) => reject(error),
    };
    pool.dispatch({ method: 'POST', path, headers: { 'content-type': EVENTS_MEDIA_TYPE }, body }, handler);
  });
}

/** The `p` quantile of ascending `sorted`. */
function percentile(sorted: readonly number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))]!;
}

await main();
