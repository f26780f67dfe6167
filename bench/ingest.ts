// Ingest burst benchmark (`npm run bench:ingest`): a 10k-event burst through the real `registry-notifier serve`
// process, posted the way Distribution posts (one event per request, each poster waiting for its answer), into
// one endpoint whose loopback receiver parses every envelope, after 5,000 requests of warm-up on the same process.
// Prints accepted events/s, ingest latency percentiles and delivered events/s: in memory, with the journal, and
// on PostgreSQL (a real server started here with fsync and synchronous commit on, as in production; skipped when
// its binaries are absent), and the share of the machine's CPU time a hypervisor stole meanwhile. Only 127.0.0.1;
// it stops by itself.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Pool } from 'undici';
import { machineCpu, machineShares } from './machine-cpu.ts';
import { startServe } from './serve-process.ts';
import { postgresBinaries, startPostgres, type TestPostgres } from '../test/support/postgres.ts';
import pg from 'pg';

const { Client: PgClient } = pg;

const QUICK = process.argv.includes('--quick') || process.env.BENCH_QUICK === '1';
const EVENTS = QUICK ? 2_000 : 10_000;
/** `BENCH_WARMUP`: requests each case's process serves before the measured burst (0: measure a fresh process). */
const WARMUP = Number(process.env.BENCH_WARMUP ?? (QUICK ? 500 : 5_000));
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

/** One measured case. */
interface Result {
  mode: string;
  posters: number;
  acceptedPerSec: number;
  p50: number;
  p99: number;
  max: number;
  deliveredPerSec: number;
  /** Events per request the receiver got (the endpoint batches up to 100). */
  perDelivery: number;
  /** The machine's CPU time stolen by the hypervisor while the events were posted, as a share. */
  steal: number;
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
  console.log(`\ningest burst: ${EVENTS} events, one per request (as Distribution sends them), one endpoint (batch 100), after ${WARMUP} requests of warm-up`);
  console.table(results.map((r) => ({
    mode: r.mode,
    posters: r.posters,
    'accepted ev/s': Math.round(r.acceptedPerSec),
    'p50 ms': r.p50.toFixed(2),
    'p99 ms': r.p99.toFixed(2),
    'max ms': r.max.toFixed(1),
    'delivered ev/s': Math.round(r.deliveredPerSec),
    'events per delivery': r.perDelivery.toFixed(1),
    stolen: `${Math.round(r.steal * 100)}%`,
  })));
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
  let received = 0;
  let requests = 0;
  let lastAt = 0;
  let expected = Infinity;
  let onAll: () => void = () => {};
  const receiver = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      received += (JSON.parse(Buffer.concat(chunks).toString()) as { events: unknown[] }).events.length;
      requests++;
      lastAt = performance.now();
      res.end();
      if (received >= expected) onAll();
    });
  });
  await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve));
  const port = (receiver.address() as AddressInfo).port;
  await writeFile(join(dir, 'endpoints.yaml'), `apiVersion: registry-notifier.io/v1alpha1\nkind: NotificationEndpoint\nmetadata:\n  name: bench\nspec:\n  url: http://127.0.0.1:${port}/events\n  maxBatchEvents: 100\n`);
  const args = ['--listen', '127.0.0.1:0', '--metrics-listen', '127.0.0.1:0', '--endpoints', join(dir, 'endpoints.yaml'),
    '--allow-endpoint-cidrs', '127.0.0.0/8', '--log-level', 'info',
    ...(mode === 'journal' ? ['--queue-dir', join(dir, 'journal')] : []),
    ...(mode.startsWith('postgres') && pg ? ['--database-url', await pg.createDatabase(), '--replica-id', 'bench'] : [])];
  const { child, ingest } = await startServe(args, 30_000);
  const pool = new Pool(new URL(ingest).origin, { connections: posters, pipelining: 1 });
  const path = new URL(ingest).pathname;
  // `count` events posted by `posters` registries, one per request, each waiting for its answer; resolves once
  // every one is delivered, with when the last was accepted and each request's latency.
  const burst = async (label: string, count: number): Promise<{ started: number; acceptedAt: number; latencies: number[] }> => {
    received = 0;
    requests = 0;
    expected = count;
    const all = new Promise<void>((resolve) => (onAll = resolve));
    const latencies: number[] = [];
    let next = 0;
    const started = performance.now();
    await Promise.all(Array.from({ length: posters }, async (_, poster) => {
      while (next < count) {
        const i = next++;
        const body = JSON.stringify({ events: [{ id: `${label}-${poster}-${i}`, ...template }] });
        const t0 = performance.now();
        const response = await pool.request({ method: 'POST', path, headers: { 'content-type': 'application/vnd.docker.distribution.events.v1+json' }, body });
        await response.body.dump();
        latencies.push(performance.now() - t0);
        if (response.statusCode !== 202) throw new Error(`ingest answered ${response.statusCode}`);
      }
    }));
    const acceptedAt = performance.now();
    // Unref'd: the run ends when the last event arrives, not when this would have fired.
    await Promise.race([all, new Promise((_, reject) => setTimeout(() => reject(new Error(`only ${received}/${count} delivered`)), 120_000).unref())]);
    return { started, acceptedAt, latencies };
  };
  // A registry posts for as long as the replica runs: the burst is measured on a process that has served WARMUP
  // requests already (V8 has optimized its request path by then), not on one that is still compiling it.
  if (WARMUP > 0) await burst('warmup', WARMUP);
  const machine0 = machineCpu();
  const { started, acceptedAt, latencies } = await burst('bench', EVENTS);
  const { steal } = machineShares(machine0, machineCpu());
  latencies.sort((a, b) => a - b);
  const pct = (p: number): number => latencies[Math.min(latencies.length - 1, Math.floor(latencies.length * p))]!;
  await pool.close();
  child.kill('SIGTERM');
  await new Promise((resolve) => child.once('exit', resolve));
  receiver.close();
  await rm(dir, { recursive: true, force: true });
  return {
    mode,
    posters,
    acceptedPerSec: EVENTS / ((acceptedAt - started) / 1000),
    p50: pct(0.5),
    p99: pct(0.99),
    max: latencies.at(-1)!,
    deliveredPerSec: EVENTS / ((lastAt - started) / 1000),
    perDelivery: EVENTS / requests,
    steal,
  };
}

await main();
