// Many NotificationEndpoints on a real kube-apiserver (`npm run bench:endpoints`, issue 11): one real
// `serve --kubernetes` process, started with the Node flags of the image's ENTRYPOINT (Dockerfile) and the old
// generation Node gives itself in the container the README's sizing rule asks for (BENCH_CHILD_FLAGS='...' replaces
// the Dockerfile's flags, to compare others), against the envtest
// apiserver 1.20 + etcd (hack/envtest-assets.sh; watch cache on, as in a cluster). For each size (default 1,000 and
// 10,000 endpoints; `--sizes 500,2000`, `--quick` = 200) it prints:
//   1. Ready: the endpoints are created with `kubectl apply -f` of one file (or through the API, `--parallel 32` at a
//      time: a harsher load than kubectl's one at a time); how long until every one shows Ready=True (a watch), after
//      apply returned and per object (first seen by the watch to Ready);
//   2. memory with every endpoint Ready and idle (3 s and 30 s after), then after 20 events fanned out to every endpoint (all delivered;
//      at once, 12 s and 60 s later: by then the process has given back what the burst left behind):
//      live heap after two full collections (bench/memory-probe.ts in the child) and RSS; per endpoint beyond the
//      same process with no endpoint; what the RSS beyond it is made of (V8's spaces, malloc's heap, other mappings);
//   3. `/metrics`: bytes and series;
//   4. status writes: PATCHes of notificationendpoints/status the apiserver counted;
//   5. a restart with every endpoint present: how long until /readyz and every endpoint running again.
// BENCH_LAST_RESORT=1 has the child run a memory-reducing collection before each measurement (what V8 would give back).
// BENCH_PROFILE=1 writes the operator's CPU profiles to /tmp/registry-notifier-prof (`npm run bench:profile-summary`).
// Only loopback addresses; it stops by itself.
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { CoreV1Api, CustomObjectsApi, Watch, type KubeConfig } from '@kubernetes/client-node';
import { Agent, fetch } from 'undici';
import { stringify } from 'yaml';
import { NOTIFICATION_ENDPOINT_RESOURCE as R } from '../src/api/notification-endpoint.ts';
import { envtestAssets, installCRDs, TestCluster } from '../test/support/envtest.ts';
import { makeEvents } from '../test/support/events.ts';
import { startReceiver } from './receiver-process.ts';
import { until } from './until.ts';

const QUICK = process.argv.includes('--quick') || process.env.BENCH_QUICK === '1';
const sizesArg = process.argv.indexOf('--sizes');
const SIZES = sizesArg > 0 ? process.argv[sizesArg + 1]!.split(',').map(Number) : QUICK ? [200] : [1_000, 10_000];
const NS = 'registry';
const MAIN = join(import.meta.dirname, '../src/main.ts');
const PROBE = join(import.meta.dirname, 'memory-probe.ts');
/** `--parallel 32`: create through the API, 32 at a time, instead of `kubectl apply -f` of one file (one at a time). */
const parallelArg = process.argv.indexOf('--parallel');
const PARALLEL = parallelArg > 0 ? Number(process.argv[parallelArg + 1]) : 0;
const EVENTS = 20;

/** The container memory limit the README's sizing rule gives for `endpoints`, in MiB. */
function containerLimitMiB(endpoints: number): number {
  return Math.max(512, Math.ceil((256 + endpoints * 0.064) / 128) * 128);
}

/**
 * The old generation Node 24 gives itself in that container: half the memory limit (read in a memory cgroup: 256 MiB
 * of 512, 448 of 896). Its young generation is the image's `--max-semi-space-size` (shippedNodeFlags): without it,
 * Node would pick 1 MiB semi-spaces in 512 MiB but 64 MiB outside a container, so the bench would not measure what ships.
 */
function heapMiB(endpoints: number): number {
  return Math.floor(containerLimitMiB(endpoints) / 2);
}

/** The Node flags of the image's ENTRYPOINT (Dockerfile), given to the benchmarked process too. */
function shippedNodeFlags(): string[] {
  const entrypoint = /^ENTRYPOINT (\[.*\])$/m.exec(readFileSync(join(import.meta.dirname, '../Dockerfile'), 'utf8'));
  if (!entrypoint) throw new Error('Dockerfile: no ENTRYPOINT in exec form');
  const argv = JSON.parse(entrypoint[1]!) as string[];
  return argv.slice(1, argv.findIndex((arg) => arg.endsWith('main.js'))).filter((arg) => arg.startsWith('--'));
}
const NODE_FLAGS = process.env.BENCH_CHILD_FLAGS !== undefined ? process.env.BENCH_CHILD_FLAGS.split(' ').filter(Boolean) : shippedNodeFlags();

interface Memory {
  heapUsed: number; heapTotal: number; rss: number; external: number; arrayBuffers: number; cpu: { user: number; system: number };
  /** V8's heap spaces by name: committed bytes (`size`), live bytes (`used`), resident bytes (`physical`). */
  spaces: Record<string, { size: number; used: number; physical: number }>;
  /** Resident KiB by kind of mapping (/proc/self/smaps): brkHeap (malloc's main heap), anon, file, other. */
  mappings: Record<string, number>;
  /** V8's heap limit (old generation and young generation together). */
  heapLimit: number;
}

/** Where resident memory went since `base`: V8's spaces (resident, live), malloc's main heap, other anonymous memory. */
function breakdown(m: Memory, base: Memory): string {
  const spaces = Object.entries(m.spaces).map(([name, s]) => {
    const b = base.spaces[name] ?? { physical: 0, used: 0 };
    return [name.replace(/_space$/, ''), s.physical - b.physical, s.used - b.used] as const;
  }).filter(([, physical]) => Math.abs(physical) >= 2 ** 20).map(([name, physical, used]) => `${name} ${mib(physical)} (live ${mib(used)})`);
  const maps = Object.entries(m.mappings).map(([kind, k]) => `${kind} ${mib((k - (base.mappings[kind] ?? 0)) * 1024)}`);
  return `    beyond no endpoint: V8 resident by space: ${spaces.join(', ') || 'none over 1 MiB'}; mappings: ${maps.join(', ')}; ` +
    `external ${mib(m.external - base.external)}, arrayBuffers ${mib(m.arrayBuffers - base.arrayBuffers)}`;
}

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

  static start(kubeconfig: string, heap: number, histograms: boolean): Promise<Operator> {
    const env = { ...process.env, KUBECONFIG: kubeconfig, NO_PROXY: '127.0.0.1', no_proxy: '127.0.0.1' };
    const child = spawn(process.execPath, [
      ...NODE_FLAGS, '--expose-gc', `--max-old-space-size=${heap}`, '--import', PROBE,
      ...(process.env.BENCH_PROFILE === '1' ? ['--cpu-prof', '--cpu-prof-dir=/tmp/registry-notifier-prof'] : []), MAIN, 'serve', '--kubernetes', '--namespaces', NS,
      '--listen', '127.0.0.1:0', '--metrics-listen', '127.0.0.1:0', '--allow-endpoint-cidrs', '127.0.0.0/8', '--log-level', 'info',
      `--endpoint-histograms=${histograms}`,
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

/**
 * Watches the namespace's endpoints and records when each was first seen (created) and first showed Ready=True;
 * a watch the server ends is opened again from the last resourceVersion seen, until `stop` is aborted.
 */
async function watchReady(kc: KubeConfig, readyAt: Map<string, number>, createdAt: Map<string, number>): Promise<AbortController> {
  const path = `/apis/${R.group}/${R.version}/namespaces/${NS}/${R.plural}`;
  const list = (await kc.makeApiClient(CustomObjectsApi).listNamespacedCustomObject({ group: R.group, version: R.version, namespace: NS, plural: R.plural })) as { metadata: { resourceVersion: string } };
  let resourceVersion = list.metadata.resourceVersion;
  const stop = new AbortController();
  const once = (): Promise<void> => new Promise((resolve) => {
    void new Watch(kc).watch(path, { resourceVersion, allowWatchBookmarks: true }, (_type, object: { metadata: { name: string; resourceVersion: string }; status?: { conditions?: Array<{ type: string; status: string }> } }) => {
      resourceVersion = object.metadata.resourceVersion;
      if (!object.metadata.name) return; // a bookmark
      if (!createdAt.has(object.metadata.name)) createdAt.set(object.metadata.name, performance.now());
      const ready = object.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True');
      if (ready && !readyAt.has(object.metadata.name)) readyAt.set(object.metadata.name, performance.now());
    }, () => resolve()).then((request) => stop.signal.addEventListener('abort', () => request.abort(), { once: true }), () => resolve());
  });
  void (async () => {
    while (!stop.signal.aborted) {
      await once();
      await new Promise((resolve) => setTimeout(resolve, 100)); // never a hot loop against a server that refuses
    }
  })();
  return stop;
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

/** Events in attempts that failed or got no answer, summed over the endpoints (`registry_notifications_events_total`). */
async function failedAttempts(admin: string): Promise<number> {
  const text = await (await fetch(`${admin}/metrics`)).text();
  return text.split('\n').filter((l) => l.startsWith('registry_notifications_events_total{') && /type="(Failures|Errors)"/.test(l))
    .reduce((sum, l) => sum + Number(l.slice(l.lastIndexOf(' ') + 1)), 0);
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
  const histograms = n <= 1_000; // the README's advice: --endpoint-histograms=false beyond about 1,000 endpoints
  console.log(`\n== ${n} endpoints (container limit ${containerLimitMiB(n)} MiB, ${[...NODE_FLAGS, `--max-old-space-size=${heap}`].join(' ')}, --endpoint-histograms=${histograms}) ==`);
  const cluster = await TestCluster.start({ watchCache: true });
  const dispatcher = new Agent({ connect: { ca: cluster.caPem } });
  const sink = await startReceiver();
  let operator: Operator | undefined;
  let watch: AbortController | undefined;
  try {
    const kc = cluster.kubeConfig();
    await installCRDs(kc, join(import.meta.dirname, '../crds'));
    await kc.makeApiClient(CoreV1Api).createNamespace({ body: { metadata: { name: NS } } });
    operator = await Operator.start(cluster.kubeconfigPath, heap, histograms);
    await until(async () => (await fetch(`${operator!.admin}/readyz`)).ok, 60_000, '/readyz', 100);
    const base = await operator.measure();
    console.log(`  no endpoint: heap ${mib(base.heapUsed)} (of ${mib(base.heapTotal)}), external ${mib(base.external)}, RSS ${mib(base.rss)}`);
    console.log(`    heap limit ${mib(base.heapLimit)}; spaces resident: ${Object.entries(base.spaces).map(([name, sp]) => `${name.replace(/_space$/, '')} ${mib(sp.physical)}`).join(', ')}; mappings: ${Object.entries(base.mappings).map(([k, v]) => `${k} ${mib(v * 1024)}`).join(', ')}`);

    const readyAt = new Map<string, number>();
    const createdAt = new Map<string, number>();
    watch = await watchReady(kc, readyAt, createdAt);
    const names = Array.from({ length: n }, (_, i) => `hook-${String(i).padStart(5, '0')}`);
    const spec = (name: string): Record<string, unknown> => ({ url: `${sink.url}/${name}`, timeout: '10s' });
    const patchesBefore = await statusPatches(cluster, dispatcher);
    const requestsBefore = await apiRequests(cluster, dispatcher);
    const cpuBefore = (await operator.measure()).cpu;
    const t0 = performance.now();
    if (PARALLEL > 0) {
      const custom = kc.makeApiClient(CustomObjectsApi);
      let next = 0;
      await Promise.all(Array.from({ length: PARALLEL }, async () => {
        while (next < names.length) {
          const name = names[next++]!;
          await custom.createNamespacedCustomObject({ group: R.group, version: R.version, namespace: NS, plural: R.plural, body: {
            apiVersion: R.apiVersion, kind: R.kind, metadata: { name, namespace: NS }, spec: spec(name),
          } });
        }
      }));
    } else {
      const file = join(cluster.dir, 'endpoints.yaml');
      await writeFile(file, names.map((name) => stringify({ apiVersion: R.apiVersion, kind: R.kind, metadata: { name, namespace: NS }, spec: spec(name) })).join('---\n'));
      await new Promise<void>((resolve, reject) => {
        const kubectl = spawn(process.env.KUBECTL ?? 'kubectl', ['--kubeconfig', cluster.kubeconfigPath, 'apply', '-f', file], { stdio: ['ignore', 'ignore', 'inherit'] });
        kubectl.once('error', reject);
        kubectl.once('exit', (code) => (code === 0 ? resolve() : reject(new Error(`kubectl apply exited with ${code}`))));
      });
    }
    const applied = performance.now();
    await until(() => readyAt.size === n, 600_000, `every endpoint Ready (${readyAt.size}/${n})`, 100);
    const lags = names.map((name) => readyAt.get(name)! - createdAt.get(name)!).sort((a, b) => a - b);
    const allReady = Math.max(...readyAt.values());
    console.log(`  ${PARALLEL > 0 ? `created through the API, ${PARALLEL} at a time,` : 'kubectl apply -f (one file)'} in ${((applied - t0) / 1000).toFixed(1)} s (${Math.round(n / ((applied - t0) / 1000))}/s); ` +
      `every one Ready ${((allReady - applied) / 1000).toFixed(1)} s after it returned ` +
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
    console.log(breakdown(idle, base));
    // V8 gives memory back only after a while of little allocation (its memory reducer): the same, 30 s later.
    await new Promise((resolve) => setTimeout(resolve, 30_000));
    const settled = await operator.measure();
    console.log(`  idle 30 s later: heap ${mib(settled.heapUsed)} (${kib((settled.heapUsed - base.heapUsed) / n)} per endpoint), ` +
      `RSS ${mib(settled.rss)} (${kib((settled.rss - base.rss) / n)} per endpoint); heap total ${mib(settled.heapTotal)}`);
    console.log(breakdown(settled, base));
    const idleMetrics = await metricsOf(operator.admin);
    console.log(`  /metrics idle: ${mib(idleMetrics.bytes)}, ${idleMetrics.series} series`);

    const patchesBeforeEvents = await statusPatches(cluster, dispatcher);
    const { done } = await sink.expect(EVENTS * n);
    const t1 = performance.now();
    const response = await fetch(`${operator.ingest}`, {
      method: 'POST', headers: { 'content-type': 'application/vnd.docker.distribution.events.v1+json' }, body: JSON.stringify({ events: makeEvents(EVENTS, 'scale') }),
    });
    if (response.status !== 202) throw new Error(`ingest answered ${response.status}: ${await response.text()}`);
    const received = await done;
    const delivered = performance.now() - t1;
    const failed = await failedAttempts(operator.admin);
    console.log(`  receiver: ${received.requests} requests, ${Object.keys(received.perPath).length} paths; attempts without success: ${failed}`);
    const busy = await operator.measure();
    console.log(`  ${EVENTS} events to each of ${n}: delivered in ${(delivered / 1000).toFixed(1)} s (${Math.round((EVENTS * n) / (delivered / 1000))} ev/s); ` +
      `heap ${mib(busy.heapUsed)} (${kib((busy.heapUsed - base.heapUsed) / n)} per endpoint), RSS ${mib(busy.rss)} (${kib((busy.rss - base.rss) / n)} per endpoint); heap total ${mib(busy.heapTotal)}`);
    console.log(breakdown(busy, base));
    const busyMetrics = await metricsOf(operator.admin);
    console.log(`  /metrics after delivery: ${mib(busyMetrics.bytes)}, ${busyMetrics.series} series (${((busyMetrics.series - idleMetrics.series) / n + idleMetrics.series / n).toFixed(1)} per endpoint in all)`);
    await new Promise((resolve) => setTimeout(resolve, 12_000)); // one --status-interval (10 s) and a little
    const patchesAfter = await statusPatches(cluster, dispatcher);
    const window = (performance.now() - t1) / 1000;
    console.log(`  status writes from the events on: ${patchesAfter - patchesBeforeEvents} in ${window.toFixed(0)} s (${((patchesAfter - patchesBeforeEvents) / window).toFixed(1)}/s; --status-rate 20)`);
    const delivered12 = await operator.measure();
    console.log(`  delivered, 12 s later: heap ${mib(delivered12.heapUsed)} (${kib((delivered12.heapUsed - base.heapUsed) / n)} per endpoint), ` +
      `RSS ${mib(delivered12.rss)} (${kib((delivered12.rss - base.rss) / n)} per endpoint); heap total ${mib(delivered12.heapTotal)}`);
    console.log(breakdown(delivered12, base));
    // Once the loop is quiet (status written), the process gives back what the burst left behind (src/memory-release.ts).
    await new Promise((resolve) => setTimeout(resolve, 48_000));
    const delivered60 = await operator.measure();
    console.log(`  delivered, 60 s later: heap ${mib(delivered60.heapUsed)} (${kib((delivered60.heapUsed - base.heapUsed) / n)} per endpoint), ` +
      `RSS ${mib(delivered60.rss)} (${kib((delivered60.rss - base.rss) / n)} per endpoint); heap total ${mib(delivered60.heapTotal)}`);
    console.log(breakdown(delivered60, base));

    await operator.stop();
    operator = await Operator.start(cluster.kubeconfigPath, heap, histograms);
    const restarted = operator.started;
    await until(async () => (await fetch(`${operator!.admin}/readyz`)).ok, 120_000, '/readyz after restart', 100);
    const readyz = performance.now() - restarted;
    await until(async () => (await endpointsRunning(operator!.admin)) === n, 120_000, 'every endpoint running after restart', 100);
    console.log(`  restart with ${n} present: /readyz after ${(readyz / 1000).toFixed(1)} s, every endpoint running after ${((performance.now() - restarted) / 1000).toFixed(1)} s`);
  } finally {
    watch?.abort();
    await operator?.stop().catch(() => undefined);
    sink.stop();
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
