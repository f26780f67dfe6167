// Many NotificationEndpoints on a real kube-apiserver (`npm run bench:endpoints`, issue 11): one real
// `serve --kubernetes` process, its heap sized as the chart sizes it in its container, against the envtest
// apiserver 1.20 + etcd (hack/envtest-assets.sh; watch cache on, as in a cluster). For each size (default 1,000 and
// 10,000 endpoints; `--sizes 500,2000`, `--quick` = 200) it prints:
//   1. Ready: the endpoints are created through the API, 32 at a time (what `kubectl apply` of a big file does,
//      in parallel); how long until every one shows Ready=True (a watch), after the last create and per object;
//   2. memory with every endpoint Ready and idle, then after 20 events fanned out to every endpoint (all delivered):
//      live heap after two full collections (bench/memory-probe.ts in the child) and RSS; per endpoint beyond the
//      same process with no endpoint;
//   3. `/metrics`: bytes and series;
//   4. status writes: PATCHes of notificationendpoints/status the apiserver counted;
//   5. a restart with every endpoint present: how long until /readyz and every endpoint running again.
// BENCH_PROFILE=1 writes the operator's CPU profiles to /tmp/registry-notifier-prof (`npm run bench:profile-summary`).
// Only loopback addresses; it stops by itself.
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { CoreV1Api, CustomObjectsApi, Watch, type KubeConfig } from '@kubernetes/client-node';
import { Agent, fetch } from 'undici';
import { NOTIFICATION_ENDPOINT_RESOURCE as R } from '../src/api/notification-endpoint.ts';
import { envtestAssets, installCRDs, TestCluster } from '../test/support/envtest.ts';
import { makeEvents } from '../test/support/events.ts';

const QUICK = process.argv.includes('--quick') || process.env.BENCH_QUICK === '1';
const sizesArg = process.argv.indexOf('--sizes');
const SIZES = sizesArg > 0 ? process.argv[sizesArg + 1]!.split(',').map(Number) : QUICK ? [200] : [1_000, 10_000];
const NS = 'registry';
const MAIN = join(import.meta.dirname, '../src/main.ts');
const PROBE = join(import.meta.dirname, 'memory-probe.ts');
const CONCURRENCY = 32;
const EVENTS = 20;

/** The container memory limit the README's sizing rule gives for `endpoints`, in MiB. */
function containerLimitMiB(endpoints: number): number {
  return Math.max(512, Math.ceil((256 + endpoints * 0.064) / 128) * 128);
}

/** The heap the chart gives Node in that container: NODE_OPTIONS=--max-old-space-size-percentage=75. */
function heapMiB(endpoints: number): number {
  return Math.floor(containerLimitMiB(endpoints) * 0.75);
}

interface Memory { heapUsed: number; heapTotal: number; rss: number; external: number; arrayBuffers: number; cpu: { user: number; system: number } }

class Operator {
  readonly child: ChildProcess;
  admin = '';
  ingest = '';
  readonly started = performance.now();
  #answers: Array<(m: Memory) => void> = [];

  private constructor(child: ChildProcess) {
    this.child = child;
    child.on('message', (m) => this.#answers.shift()?.(m as Memory));
  }

  static start(kubeconfig: string, heap: number): Promise<Operator> {
    const env = { ...process.env, KUBECONFIG: kubeconfig, NO_PROXY: '127.0.0.1', no_proxy: '127.0.0.1' };
    const child = spawn(process.execPath, [
      '--expose-gc', `--max-old-space-size=${heap}`, '--import', PROBE,
      ...(process.env.BENCH_PROFILE === '1' ? ['--cpu-prof', '--cpu-prof-dir=/tmp/registry-notifier-prof'] : []), MAIN, 'serve', '--kubernetes', '--namespaces', NS,
      '--listen', '127.0.0.1:0', '--metrics-listen', '127.0.0.1:0', '--allow-endpoint-cidrs', '127.0.0.0/8', '--log-level', 'info',
    ], { stdio: ['ignore', 'pipe', 'inherit', 'ipc'], env });
    const operator = new Operator(child);
    return new Promise((resolve, reject) => {
      createInterface(child.stdout!).on('line', (line) => {
        const entry = JSON.parse(line) as { msg?: string; ingest?: string; admin?: string; level?: string | number };
        if (entry.msg === 'serving') {
          operator.ingest = entry.ingest!;
          operator.admin = entry.admin!;
          resolve(operator);
        } else if (entry.level === 'error' || entry.level === 50) console.error(`  operator: ${line.slice(0, 300)}`);
      });
      child.once('exit', (code) => reject(new Error(`serve exited with ${code}`)));
    });
  }

  measure(): Promise<Memory> {
    return new Promise((resolve) => {
      this.#answers.push(resolve);
      this.child.send('measure');
    });
  }

  async stop(): Promise<void> {
    const exited = new Promise((resolve) => this.child.once('exit', resolve));
    this.child.kill('SIGTERM');
    await exited;
  }
}

async function receiver(): Promise<{ server: Server; url: string; count: () => number }> {
  let events = 0;
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      events += (JSON.parse(Buffer.concat(chunks).toString()) as { events: unknown[] }).events.length;
      res.end();
    });
  });
  server.keepAliveTimeout = 60_000;
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, count: () => events };
}

async function until(check: () => boolean | Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!(await check())) {
    if (performance.now() > deadline) throw new Error(`timed out after ${timeoutMs / 1000} s: ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** Watches the namespace's endpoints and records when each first showed Ready=True. */
async function watchReady(kc: KubeConfig, readyAt: Map<string, number>): Promise<AbortController> {
  const path = `/apis/${R.group}/${R.version}/namespaces/${NS}/${R.plural}`;
  const list = (await kc.makeApiClient(CustomObjectsApi).listNamespacedCustomObject({ group: R.group, version: R.version, namespace: NS, plural: R.plural })) as { metadata: { resourceVersion: string } };
  return new Watch(kc).watch(path, { resourceVersion: list.metadata.resourceVersion }, (_type, object: { metadata: { name: string }; status?: { conditions?: Array<{ type: string; status: string }> } }) => {
    const ready = object.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True');
    if (ready && !readyAt.has(object.metadata.name)) readyAt.set(object.metadata.name, performance.now());
  }, (err) => {
    if (err) console.error(`  watch ended: ${String(err)}`);
  });
}

async function metricsOf(url: string): Promise<{ bytes: number; series: number }> {
  const text = await (await fetch(`${url}/metrics`)).text();
  return { bytes: Buffer.byteLength(text), series: text.split('\n').filter((l) => l !== '' && !l.startsWith('#')).length };
}

/** The apiserver's request counts by `VERB resource[/subresource]`. */
async function apiRequests(cluster: TestCluster, dispatcher: Agent): Promise<Map<string, number>> {
  const text = await (await fetch(`${cluster.server}/metrics`, { dispatcher, headers: { authorization: `Bearer ${cluster.adminToken}` } })).text();
  const counts = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (!line.startsWith('apiserver_request_total{')) continue;
    const label = (name: string): string => new RegExp(`[{,]${name}="([^"]*)"`).exec(line)?.[1] ?? '';
    const sub = label('subresource');
    const key = `${label('verb')} ${label('resource')}${sub ? `/${sub}` : ''}`;
    counts.set(key, (counts.get(key) ?? 0) + Number(line.slice(line.lastIndexOf(' ') + 1)));
  }
  return counts;
}

function requestsBetween(before: Map<string, number>, after: Map<string, number>): string {
  return [...after].map(([key, n]) => [key, n - (before.get(key) ?? 0)] as const).filter(([key, n]) => n > 0 && !key.startsWith('WATCH') && !key.startsWith('LIST leases'))
    .sort((a, b) => b[1] - a[1]).slice(0, 8).map(([key, n]) => `${key} ${n}`).join(', ');
}

async function statusPatches(cluster: TestCluster, dispatcher: Agent): Promise<number> {
  let total = 0;
  for (const [key, n] of await apiRequests(cluster, dispatcher)) if (/^(PATCH|UPDATE) notificationendpoints\/status$/.test(key)) total += n;
  return total;
}

async function endpointsRunning(admin: string): Promise<number> {
  const body = (await (await fetch(`${admin}/endpoints`)).json()) as { endpoints?: Array<{ ready?: boolean }> } | Array<{ ready?: boolean }>;
  const list = Array.isArray(body) ? body : body.endpoints ?? [];
  return list.filter((e) => e.ready).length;
}

const mib = (bytes: number): string => `${(bytes / 2 ** 20).toFixed(1)} MiB`;
const kib = (bytes: number): string => `${(bytes / 1024).toFixed(1)} KiB`;
const pct = (sorted: readonly number[], p: number): number => sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))]!;

async function run(n: number): Promise<void> {
  const heap = heapMiB(n);
  console.log(`\n== ${n} endpoints (container limit ${containerLimitMiB(n)} MiB, --max-old-space-size=${heap}) ==`);
  const cluster = await TestCluster.start({ watchCache: true });
  const dispatcher = new Agent({ connect: { ca: cluster.caPem } });
  const sink = await receiver();
  let operator: Operator | undefined;
  let watch: AbortController | undefined;
  try {
    const kc = cluster.kubeConfig();
    await installCRDs(kc, join(import.meta.dirname, '../crds'));
    await kc.makeApiClient(CoreV1Api).createNamespace({ body: { metadata: { name: NS } } });
    operator = await Operator.start(cluster.kubeconfigPath, heap);
    await until(async () => (await fetch(`${operator!.admin}/readyz`)).ok, 60_000, '/readyz');
    const base = await operator.measure();
    console.log(`  no endpoint: heap ${mib(base.heapUsed)} (of ${mib(base.heapTotal)}), external ${mib(base.external)}, RSS ${mib(base.rss)}`);

    const readyAt = new Map<string, number>();
    const createdAt = new Map<string, number>();
    watch = await watchReady(kc, readyAt);
    const custom = kc.makeApiClient(CustomObjectsApi);
    const names = Array.from({ length: n }, (_, i) => `hook-${String(i).padStart(5, '0')}`);
    const patchesBefore = await statusPatches(cluster, dispatcher);
    const requestsBefore = await apiRequests(cluster, dispatcher);
    const cpuBefore = (await operator.measure()).cpu;
    const t0 = performance.now();
    let next = 0;
    await Promise.all(Array.from({ length: CONCURRENCY }, async () => {
      while (next < names.length) {
        const name = names[next++]!;
        await custom.createNamespacedCustomObject({ group: R.group, version: R.version, namespace: NS, plural: R.plural, body: {
          apiVersion: R.apiVersion, kind: R.kind, metadata: { name, namespace: NS }, spec: { url: `${sink.url}/${name}` },
        } });
        createdAt.set(name, performance.now());
      }
    }));
    const applied = performance.now();
    await until(() => readyAt.size === n, 600_000, `every endpoint Ready (${readyAt.size}/${n})`);
    const lags = names.map((name) => readyAt.get(name)! - createdAt.get(name)!).sort((a, b) => a - b);
    const allReady = Math.max(...readyAt.values());
    console.log(`  created in ${((applied - t0) / 1000).toFixed(1)} s (${Math.round(n / ((applied - t0) / 1000))}/s); ` +
      `every one Ready ${((allReady - applied) / 1000).toFixed(1)} s after the last create ` +
      `(${((allReady - t0) / 1000).toFixed(1)} s after the first); created to Ready per object: p50 ${(pct(lags, 0.5) / 1000).toFixed(2)} s, ` +
      `p99 ${(pct(lags, 0.99) / 1000).toFixed(2)} s, max ${(lags.at(-1)! / 1000).toFixed(2)} s`);
    const patchesReady = await statusPatches(cluster, dispatcher);
    const cpuReady = (await operator.measure()).cpu;
    console.log(`  operator CPU until every one Ready: ${((cpuReady.user + cpuReady.system - cpuBefore.user - cpuBefore.system) / 1000 / n).toFixed(2)} ms per endpoint; ` +
      `API requests: ${requestsBetween(requestsBefore, await apiRequests(cluster, dispatcher))}`);
    console.log(`  status writes until every one Ready: ${patchesReady - patchesBefore} (${((patchesReady - patchesBefore) / n).toFixed(2)} per endpoint)`);

    await new Promise((resolve) => setTimeout(resolve, 3_000));
    const idle = await operator.measure();
    console.log(`  idle, every one Ready: heap ${mib(idle.heapUsed)} (${kib((idle.heapUsed - base.heapUsed) / n)} per endpoint), ` +
      `RSS ${mib(idle.rss)} (${kib((idle.rss - base.rss) / n)} per endpoint); heap total ${mib(idle.heapTotal)}, external ${mib(idle.external)}`);
    const idleMetrics = await metricsOf(operator.admin);
    console.log(`  /metrics idle: ${mib(idleMetrics.bytes)}, ${idleMetrics.series} series`);

    const patchesBeforeEvents = await statusPatches(cluster, dispatcher);
    const t1 = performance.now();
    const response = await fetch(`${operator.ingest}`, {
      method: 'POST', headers: { 'content-type': 'application/vnd.docker.distribution.events.v1+json' }, body: JSON.stringify({ events: makeEvents(EVENTS, 'scale') }),
    });
    if (response.status !== 202) throw new Error(`ingest answered ${response.status}: ${await response.text()}`);
    await until(() => sink.count() >= EVENTS * n, 900_000, `${EVENTS * n} deliveries (${sink.count()})`);
    const delivered = performance.now() - t1;
    const busy = await operator.measure();
    console.log(`  ${EVENTS} events to each of ${n}: delivered in ${(delivered / 1000).toFixed(1)} s (${Math.round((EVENTS * n) / (delivered / 1000))} ev/s); ` +
      `heap ${mib(busy.heapUsed)} (${kib((busy.heapUsed - base.heapUsed) / n)} per endpoint), RSS ${mib(busy.rss)} (${kib((busy.rss - base.rss) / n)} per endpoint)`);
    const busyMetrics = await metricsOf(operator.admin);
    console.log(`  /metrics after delivery: ${mib(busyMetrics.bytes)}, ${busyMetrics.series} series (${((busyMetrics.series - idleMetrics.series) / n + idleMetrics.series / n).toFixed(1)} per endpoint in all)`);
    await new Promise((resolve) => setTimeout(resolve, 12_000)); // one --status-interval (10 s) and a little
    const patchesAfter = await statusPatches(cluster, dispatcher);
    const window = (performance.now() - t1) / 1000;
    console.log(`  status writes from the events on: ${patchesAfter - patchesBeforeEvents} in ${window.toFixed(0)} s (${((patchesAfter - patchesBeforeEvents) / window).toFixed(1)}/s; --status-rate 20)`);

    await operator.stop();
    operator = await Operator.start(cluster.kubeconfigPath, heap);
    const restarted = operator.started;
    await until(async () => (await fetch(`${operator!.admin}/readyz`)).ok, 120_000, '/readyz after restart');
    const readyz = performance.now() - restarted;
    await until(async () => (await endpointsRunning(operator!.admin)) === n, 120_000, 'every endpoint running after restart');
    console.log(`  restart with ${n} present: /readyz after ${(readyz / 1000).toFixed(1)} s, every endpoint running after ${((performance.now() - restarted) / 1000).toFixed(1)} s`);
  } finally {
    watch?.abort();
    await operator?.stop().catch(() => undefined);
    sink.server.closeAllConnections();
    sink.server.close();
    await dispatcher.close();
    await cluster.stop();
  }
}

if (!envtestAssets()) {
  console.error('bench:endpoints needs the envtest apiserver: export KUBEBUILDER_ASSETS=$(bash hack/envtest-assets.sh)');
  process.exit(1);
}
console.log(`registry-notifier: NotificationEndpoints at scale on kube-apiserver 1.20 (node ${process.version})`);
for (const n of SIZES) await run(n);
