// Several replicas on one PostgreSQL (`npm run bench:replicas`, issue 11): real `serve` processes on a real
// PostgreSQL (fsync on) started here, a receiver process of its own (bench/receiver.ts) on 127.0.0.1. Prints:
//   1. delivered events/s for 64 endpoints whose receivers take 20 ms, with 1 and with 3 replicas, on freshly
//      started processes (cold) and on processes that have delivered 40,000 events each (steady: V8 has optimized
//      their delivery path by then, as in replicas that have been running for a while), the CPU per delivery of
//      the replicas, the receiver and PostgreSQL, and how many deliveries a replica makes per wake-up;
//   2. failover: an endpoint's owner is SIGKILLed, how long until its next event is delivered (lease 15 s);
//   3. 10,000 endpoints on one database: how long until every one is claimed, and the database's idle load;
//   4. rows and bytes per pending event.
// Only loopback addresses; it stops by itself. `--quick` runs smaller sizes; `--replica-cpu 0.3` limits each
// replica of part 1 to 0.3 CPU (cgroup v1, as root), `--only-throughput` runs part 1 alone.
import type { ChildProcess } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, mkdtemp, rm, rmdir, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { migrate } from '../src/database/migrate.ts';
import { openPool } from '../src/database/pool.ts';
import { machineCpu, machineShares, processCpu, processTreeCpu, processWakeups } from './machine-cpu.ts';
import { startReceiver } from './receiver-process.ts';
import { startServe } from './serve-process.ts';
import { until, within } from './until.ts';
import { postgresBinaries, startPostgres, type TestPostgres } from '../test/support/postgres.ts';

const QUICK = process.argv.includes('--quick') || process.env.BENCH_QUICK === '1';
// `--replica-cpu 0.3`: each replica of the throughput part gets 0.3 of a core (a cgroup v1 CPU quota, what a pod's
// CPU limit is), so one machine can show what more replicas add when each is bounded by its own CPU.
const cpuArg = process.argv.indexOf('--replica-cpu');
const REPLICA_CPU = cpuArg > 0 ? Number(process.argv[cpuArg + 1]) : undefined;
/** `BENCH_ENDPOINTS`: endpoints of the throughput part (default 64, as the issue sets it). */
const ENDPOINTS = Number(process.env.BENCH_ENDPOINTS ?? 64);
/** `BENCH_WARMUP`: deliveries each replica makes before the steady loads (see `throughput`). */
const WARMUP = Number(process.env.BENCH_WARMUP ?? (QUICK ? 0 : 40_000));
/** Loads measured once the replicas are warm; the speed-up is from their medians. */
const STEADY_LOADS = QUICK ? 1 : 3;
const CPU_CGROUP = '/sys/fs/cgroup/cpu';

/** Puts `pid` (every thread) in a CPU cgroup of its own limited to `cpus` cores; returns a remover. */
async function limitCpu(pid: number, name: string, cpus: number): Promise<() => Promise<void>> {
  const dir = join(CPU_CGROUP, name);
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, 'cpu.cfs_period_us'), '100000');
  await writeFile(join(dir, 'cpu.cfs_quota_us'), String(Math.round(cpus * 100_000)));
  await writeFile(join(dir, 'cgroup.procs'), String(pid));
  return async () => {
    await rmdir(dir).catch(() => undefined); // empty once the process has exited
  };
}

interface Replica {
  child: ChildProcess;
  ingest: string;
}

async function endpointsFile(dir: string, names: readonly string[], url: (name: string) => string, extra = ''): Promise<string> {
  const file = join(dir, 'endpoints.yaml');
  await writeFile(file, names.map((name) => `apiVersion: registry-notifier.io/v1alpha1\nkind: NotificationEndpoint\nmetadata:\n  name: ${name}\nspec:\n  url: ${url(name)}\n${extra}`).join('---\n'));
  return file;
}

/** One replica of the product on `url`, serving `file`'s endpoints. */
function serve(file: string, url: string, id: string, extra: string[] = []): Promise<Replica> {
  return startServe(['--listen', '127.0.0.1:0', '--metrics-listen', '127.0.0.1:0', '--endpoints', file, '--allow-endpoint-cidrs', '127.0.0.0/8',
    '--database-url', url, '--replica-id', id, '--log-level', 'info', ...extra]);
}

async function stop(replicas: readonly Replica[]): Promise<void> {
  await Promise.all(replicas.map((r) => new Promise<void>((resolve) => {
    if (r.child.exitCode !== null || r.child.signalCode !== null) return resolve();
    r.child.once('exit', () => resolve());
    r.child.kill('SIGTERM');
  })));
}

/** Commits `events` events owed by every endpoint of `names`, straight through rn_accept (as the ingest does). */
async function load(url: string, names: readonly string[], events: number, prefix: string): Promise<void> {
  const client = await connect(url);
  try {
    for (let i = 0; i < events; i++) {
      const json = JSON.stringify({ id: `${prefix}-${i}`, action: 'push', target: { repository: 'bench/app', tag: 'v1', digest: `sha256:${String(i).padStart(64, '0')}` } });
      await client.query('SELECT rn_accept($1, $2, $3, $4, $5)', [[`${prefix}-${i}`], [json], [Date.now()], names, names.map(() => 1)]);
    }
  } finally {
    await client.end();
  }
}

/** Waits until each of `replicas` live replicas holds at most its fair share of the `endpoints` and every one is held. */
async function fairShares(client: pg.Client, endpoints: number, replicas: number): Promise<void> {
  const fair = Math.ceil(endpoints / replicas);
  await until(async () => {
    const { rows } = await client.query<{ owner: string; n: number }>('SELECT owner, count(*)::int AS n FROM endpoints WHERE owner IS NOT NULL GROUP BY owner');
    return rows.length === replicas && rows.every((row) => row.n <= fair) && rows.reduce((a, row) => a + row.n, 0) === endpoints;
  }, 120_000, 'fair shares');
}

/**
 * A client of the bench's own; an error on it is printed, not thrown as an unhandled 'error' event: the server
 * stops after a failure, and a client still open would end the bench before the failure itself is printed.
 */
async function connect(url: string): Promise<pg.Client> {
  const client = new pg.Client(url);
  client.on('error', (error) => console.error(`bench client: ${error.message}`));
  await client.connect();
  return client;
}

async function freshDatabase(pgServer: TestPostgres): Promise<string> {
  const url = await pgServer.createDatabase();
  const pool = openPool(url, { applicationName: 'bench' });
  await migrate(pool);
  await pool.end();
  return url;
}

/** How often a replica's CFS quota throttled it (cgroup v1 cpu.stat), or undefined without a limit. */
function throttled(name: string): number | undefined {
  const stat = join(CPU_CGROUP, name, 'cpu.stat');
  return existsSync(stat) ? Number(/nr_throttled (\d+)/.exec(readFileSync(stat, 'utf8'))?.[1] ?? 0) : undefined;
}

interface Throughput {
  replicas: number;
  /**
   * 'cold': the replicas' first deliveries since they started; 'warm-up': a load between, not printed; 'steady': a
   * load after each replica delivered `WARMUP` events, as replicas that have been running for a while deliver.
   */
  phase: 'cold' | 'warm-up' | 'steady';
  deliveries: number;
  seconds: number;
  /** How long loading every event took (the registry's side), from the start. */
  loaded: number;
  perSec: number;
  /** CPU the replicas used while delivering, in cores (summed), and the machine's busy share. */
  replicaCores: number;
  /** Replica CPU per delivery (all replicas), in milliseconds: what scale-out costs beyond one process. */
  cpuPerDelivery: number;
  /**
   * The receiver's and PostgreSQL's CPU per delivery (ms). The receiver's code is the same in every row: what its
   * figure moves by is what fewer requests per wake-up cost a process on this machine, beside the product's own.
   */
  receiverPerDelivery: number;
  postgresPerDelivery: number;
  /** Deliveries per wake-up of a replica's event loop (its main thread blocking, summed over the replicas). */
  deliveriesPerWakeup: number;
  machineBusy: number;
  /** The machine's CPU time the hypervisor gave to other guests meanwhile (steal), as a share. */
  machineSteal: number;
  throttledPeriods: number | undefined;
}

/** What the throughput part measured for one replica count: its rows, and the warm-up between them. */
interface ThroughputRun {
  rows: Throughput[];
  /** Loads delivered between the cold row and the steady ones, and each one's CPU per delivery (ms). */
  warmup: number[];
}

async function throughput(pgServer: TestPostgres, replicas: number): Promise<ThroughputRun> {
  const url = await freshDatabase(pgServer);
  const dir = await mkdtemp(join(tmpdir(), 'rn-bench-replicas-'));
  const hook = await startReceiver({ delayMs: 20 });
  const names = Array.from({ length: ENDPOINTS }, (_, i) => `ep-${i}`);
  const events = QUICK ? 40 : Number(process.env.BENCH_EVENTS ?? 150);
  const file = await endpointsFile(dir, names, (name) => `${hook.url}/${name}`);
  const running = await Promise.all(Array.from({ length: replicas }, (_, i) => serve(file, url, `bench-${i}`)));
  const limits = REPLICA_CPU === undefined ? [] : await Promise.all(running.map((r, i) => limitCpu(r.child.pid!, `rn-bench-${i}`, REPLICA_CPU)));
  // Shares settle first (a replica that started alone claimed everything): then the work is loaded at once.
  const client = await connect(url);
  await fairShares(client, names.length, replicas);
  await client.end();
  let loads = 0;
  const deliveries = names.length * events;
  // One load: every endpoint owes `events` events, committed at once; measured until the last is delivered.
  const measure = async (phase: Throughput['phase']): Promise<Throughput> => {
    const { done } = await hook.expect(deliveries);
    const cpu0 = running.map((r) => processCpu(r.child.pid!));
    const wakeups0 = running.map((r) => processWakeups(r.child.pid!));
    const postgres0 = processTreeCpu(pgServer.pid!);
    const machine0 = machineCpu();
    const throttled0 = running.map((_, i) => throttled(`rn-bench-${i}`));
    const started = performance.now();
    await load(url, names, events, `tp${replicas}-${loads++}`);
    const loaded = (performance.now() - started) / 1000;
    const report = await within(done, 600_000, 'every delivery');
    const seconds = (report.lastAt - report.firstAt) / 1000; // from the first request received: start-up excluded
    const wall = (performance.now() - started) / 1000;
    const postgresSeconds = processTreeCpu(pgServer.pid!) - postgres0;
    const replicaSeconds = running.reduce((sum, r, i) => sum + processCpu(r.child.pid!) - cpu0[i]!, 0);
    const wakeups = running.reduce((sum, r, i) => sum + processWakeups(r.child.pid!) - wakeups0[i]!, 0);
    const replicaCores = replicaSeconds / wall;
    const { busy: machineBusy, steal: machineSteal } = machineShares(machine0, machineCpu());
    const throttledPeriods = REPLICA_CPU === undefined ? undefined : running.reduce((sum, _, i) => sum + (throttled(`rn-bench-${i}`) ?? 0) - (throttled0[i] ?? 0), 0);
    return { replicas, phase, deliveries, seconds, loaded, perSec: deliveries / seconds, replicaCores, cpuPerDelivery: (replicaSeconds * 1000) / deliveries,
      receiverPerDelivery: report.cpuUs / 1000 / deliveries, postgresPerDelivery: (postgresSeconds * 1000) / deliveries, deliveriesPerWakeup: deliveries / Math.max(wakeups, 1), machineBusy, machineSteal, throttledPeriods };
  };
  // A fresh process runs its delivery path through V8's baseline tiers first; only after tens of thousands of
  // deliveries is it fully optimized (measured: CPU per delivery fell from 0.26 to 0.12-0.15 ms over 40,000, and
  // stayed at 0.34-0.41 with optimization turned off). Three replicas each see a third of the deliveries, so after
  // the same load they are further from it: the same load again ("warm") compared processes at different stages.
  // So: the first load on fresh processes (cold), then loads until each replica delivered WARMUP events, then the
  // measured ones (steady), as replicas that have been running for a while deliver.
  const rows: Throughput[] = [await measure('cold')];
  const warmup: number[] = [];
  while ((loads * deliveries) / replicas < WARMUP) warmup.push((await measure('warm-up')).cpuPerDelivery);
  for (let i = 0; i < STEADY_LOADS; i++) rows.push(await measure('steady'));
  await stop(running);
  for (const remove of limits) await remove();
  hook.stop();
  await rm(dir, { recursive: true, force: true });
  return { rows, warmup };
}

/** The median of `values` (the mean of the middle two for an even count). */
function median(values: readonly number[]): number {
  const sorted = values.toSorted((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

async function failover(pgServer: TestPostgres): Promise<number> {
  const url = await freshDatabase(pgServer);
  const dir = await mkdtemp(join(tmpdir(), 'rn-bench-failover-'));
  const hook = await startReceiver();
  const names = Array.from({ length: 6 }, (_, i) => `fo-${i}`);
  const file = await endpointsFile(dir, names, (name) => `${hook.url}/${name}`);
  const running = await Promise.all([0, 1, 2].map((i) => serve(file, url, `fo-replica-${i}`)));
  const client = await connect(url);
  // Every replica holding its share, not only every endpoint owned: a replica that started first may hold them all.
  await fairShares(client, names.length, running.length);
  const { rows } = await client.query<{ name: string; owner: string }>("SELECT name, owner FROM endpoints WHERE owner = 'fo-replica-0' LIMIT 1");
  const victim = rows[0]!;
  const { done } = await hook.expect(1);
  running[0]!.child.kill('SIGKILL');
  const killed = performance.now();
  await load(url, [victim.name], 1, 'after-kill');
  await within(done, 120_000, 'the event after the kill');
  const took = (performance.now() - killed) / 1000;
  await client.end();
  await stop(running.slice(1));
  hook.stop();
  await rm(dir, { recursive: true, force: true });
  return took;
}

async function manyEndpoints(pgServer: TestPostgres): Promise<{ endpoints: number; claimSeconds: number; idleCommitsPerSec: number; idleQueriesPerSec: number; rssMb: number }> {
  const url = await freshDatabase(pgServer);
  const dir = await mkdtemp(join(tmpdir(), 'rn-bench-many-'));
  const count = QUICK ? 1_000 : 10_000;
  const names = Array.from({ length: count }, (_, i) => `many-${i}`);
  const file = await endpointsFile(dir, names, () => 'http://127.0.0.1:9/hook', '  disabled: true\n');
  const client = await connect(url);
  const started = performance.now();
  const replica = await serve(file, url, 'many');
  await until(async () => (await client.query("SELECT count(*)::int AS n FROM endpoints WHERE owner = 'many'")).rows[0].n === count, 600_000, 'every endpoint claimed');
  const claimSeconds = (performance.now() - started) / 1000;
  const stat = async (): Promise<{ commits: number; tuples: number }> => {
    const { rows } = await client.query<{ commits: string; tuples: string }>('SELECT xact_commit AS commits, tup_returned + tup_fetched AS tuples FROM pg_stat_database WHERE datname = current_database()');
    return { commits: Number(rows[0]!.commits), tuples: Number(rows[0]!.tuples) };
  };
  const a = await stat();
  const window = QUICK ? 10 : 30;
  await new Promise((resolve) => setTimeout(resolve, window * 1000)); // measuring an idle window, not a synchronisation
  const b = await stat();
  const rss = Number(readFileSync(`/proc/${replica.child.pid}/status`, 'utf8').match(/VmRSS:\s+(\d+)/)?.[1] ?? 0) / 1024;
  await client.end();
  await stop([replica]);
  await rm(dir, { recursive: true, force: true });
  return { endpoints: count, claimSeconds, idleCommitsPerSec: (b.commits - a.commits - 2) / window, idleQueriesPerSec: (b.tuples - a.tuples) / window, rssMb: rss };
}

async function footprint(pgServer: TestPostgres): Promise<{ pending: number; rowsPerPending: number; bytesPerPending: number }> {
  const url = await freshDatabase(pgServer);
  const names = ['a', 'b', 'c', 'd'];
  const events = QUICK ? 500 : 5_000;
  await load(url, names, events, 'fp');
  const client = await connect(url);
  await client.query('VACUUM ANALYZE');
  const { rows } = await client.query<{ rows: string; bytes: string }>(`
    SELECT (SELECT count(*) FROM events) + (SELECT count(*) FROM deliveries) + (SELECT count(*) FROM recent_ids) AS rows,
           pg_total_relation_size('events') + pg_total_relation_size('deliveries') + pg_total_relation_size('recent_ids') AS bytes`);
  await client.end();
  const pending = names.length * events;
  return { pending, rowsPerPending: Number(rows[0]!.rows) / pending, bytesPerPending: Number(rows[0]!.bytes) / pending };
}

if (!postgresBinaries()) {
  console.log('no PostgreSQL binaries: nothing to measure (hack/install-postgres.sh installs them)');
} else {
  const server = await startPostgres({ fsync: true, settings: { max_connections: '200' } });
  try {
    if (REPLICA_CPU !== undefined && !existsSync(join(CPU_CGROUP, 'cpu.cfs_quota_us'))) throw new Error(`--replica-cpu needs cgroup v1's ${CPU_CGROUP} (and root)`);
    const one = await throughput(server, 1);
    const three = await throughput(server, 3);
    const rate = (run: ThroughputRun, phase: Throughput['phase']): number => median(run.rows.filter((r) => r.phase === phase).map((r) => r.perSec));
    console.log(`\n${ENDPOINTS} endpoints, receivers answering after 20 ms, maxBatchEvents 1, events preloaded${REPLICA_CPU === undefined ? '' : `; each replica limited to ${REPLICA_CPU} CPU`}`);
    console.table([...one.rows, ...three.rows].map((r) => ({
      replicas: r.replicas, phase: r.phase, deliveries: r.deliveries, seconds: r.seconds.toFixed(1), 'loaded in s': r.loaded.toFixed(1), 'delivered ev/s': Math.round(r.perSec),
      'replica CPU (cores)': r.replicaCores.toFixed(2), 'CPU ms/delivery': r.cpuPerDelivery.toFixed(3), 'deliveries/wake-up': r.deliveriesPerWakeup.toFixed(1),
      'receiver ms/delivery': r.receiverPerDelivery.toFixed(3), 'PostgreSQL ms/delivery': r.postgresPerDelivery.toFixed(3), 'machine busy': `${Math.round(r.machineBusy * 100)}%`, stolen: `${Math.round(r.machineSteal * 100)}%`,
      ...(r.throttledPeriods !== undefined && { 'throttled periods': r.throttledPeriods }),
    })));
    for (const run of [one, three]) {
      const replicas = run.rows[0]!.replicas;
      console.log(WARMUP === 0
        ? `no warm-up (BENCH_WARMUP=0): the ${replicas === 1 ? 'replica' : 'replicas'} delivered only the cold load before the "steady" one`
        : `warm-up, ${replicas} ${replicas === 1 ? 'replica' : 'replicas'}: ${run.warmup.length} loads between cold and steady (each replica ${WARMUP} deliveries at least), CPU ms/delivery ${run.warmup.map((ms) => ms.toFixed(3)).join(' ')}`);
    }
    console.log(`speed-up 3 vs 1 replica: ${(rate(three, 'steady') / rate(one, 'steady')).toFixed(2)}x steady (${STEADY_LOADS === 1 ? 'one load' : `medians of ${STEADY_LOADS} loads`}), ${(rate(three, 'cold') / rate(one, 'cold')).toFixed(2)}x cold (the first deliveries of fresh processes)`);
    if (!process.argv.includes('--only-throughput')) {
      console.log(`\nfailover after SIGKILL of the owner (lease 15 s): next event delivered after ${(await failover(server)).toFixed(1)} s`);
      const many = await manyEndpoints(server);
      console.log(`\n${many.endpoints} endpoints, one replica: all claimed after ${many.claimSeconds.toFixed(1)} s; idle: ${many.idleCommitsPerSec.toFixed(1)} commits/s, ${Math.round(many.idleQueriesPerSec)} tuples read/s; replica RSS ${Math.round(many.rssMb)} MB`);
      const fp = await footprint(server);
      console.log(`\nfootprint: ${fp.pending} pending deliveries (4 endpoints): ${fp.rowsPerPending.toFixed(2)} rows and ${Math.round(fp.bytesPerPending)} bytes per pending delivery (events, deliveries, recent ids, with indexes)`);
    }
  } finally {
    await server.stop();
  }
}
