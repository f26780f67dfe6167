// Envtest-style harness: a real etcd and kube-apiserver 1.20 (from hack/envtest-assets.sh), on 127.0.0.1 only.
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { existsSync, rmSync } from 'node:fs';
import { mkdtemp, open, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { ApiextensionsV1Api, CoreV1Api, CustomObjectsApi, KubeConfig, KubernetesObjectApi, loadAllYaml, type KubernetesObject } from '@kubernetes/client-node';
import { Agent, fetch } from 'undici';
import { GiveUp, until } from './wait.ts';
import { freePort } from './free-port.ts';

/** A failure of the harness; `code` is ERR_ENVTEST_ASSETS, ERR_ENVTEST_START, ERR_ENVTEST_TIMEOUT or ERR_ENVTEST_ETCD. */
export class EnvtestError extends Error {
  readonly code: string;
  constructor(code: string, message: string) {
    super(message);
    this.code = code;
    this.name = 'EnvtestError';
  }
}

/** A static bearer token for the apiserver's --token-auth-file (uid defaults to user). */
export interface TokenEntry { token: string; user: string; uid?: string; groups?: string[] }

/** Options of TestCluster.start; all optional. */
export interface TestClusterOptions {
  /** Directory holding etcd and kube-apiserver; defaults to envtestAssets(). */
  assets?: string;
  /** Extra static tokens, used through kubeConfigFor(token); the admin token is always present. */
  tokens?: TokenEntry[];
  /** The apiserver's watch cache; off by default so that compactEtcd() reliably expires old resourceVersions. */
  watchCache?: boolean;
  /** Deadline for each process to become ready; 60 s by default (a cold apiserver needs ~7 s on 2 cores). */
  startTimeoutMs?: number;
  /** Keep the temp dir (logs, etcd data) after stop(), for debugging. */
  keepDir?: boolean;
}

const FIX = 'export KUBEBUILDER_ASSETS=$(bash hack/envtest-assets.sh)';
const live = new Set<ChildProcess>();
const dirs = new Set<string>();
process.once('exit', () => { // a worker exiting without stop() must not leak an apiserver, etcd or temp dir
  live.forEach((child) => child.kill('SIGKILL'));
  dirs.forEach((dir) => rmSync(dir, { recursive: true, force: true, maxRetries: 3 }));
});
let warned = false;

// Where hack/envtest-assets.sh caches the binaries (its default), used when KUBEBUILDER_ASSETS is unset.
const DEFAULT_ASSETS = '/var/cache/registry-notifier/envtest/1.20.2';

/**
 * The KUBEBUILDER_ASSETS dir (throws if a binary is missing), else the script's default cache when it holds
 * both binaries; with neither, throws under CI, else warns once and returns undefined.
 */
export function envtestAssets(): string | undefined {
  const cached = ['etcd', 'kube-apiserver'].every((bin) => existsSync(join(DEFAULT_ASSETS, bin))) ? DEFAULT_ASSETS : undefined;
  const dir = process.env.KUBEBUILDER_ASSETS ?? cached;
  if (dir) {
    const missing = ['etcd', 'kube-apiserver'].filter((bin) => !existsSync(join(dir, bin)));
    if (missing.length === 0) return dir;
    throw new EnvtestError('ERR_ENVTEST_ASSETS', `KUBEBUILDER_ASSETS=${dir} lacks ${missing.join(', ')}; run: ${FIX}`);
  }
  if (process.env.CI) throw new EnvtestError('ERR_ENVTEST_ASSETS', `KUBEBUILDER_ASSETS is not set, and CI must not skip; run: ${FIX}`);
  if (!warned) process.stderr.write(`*** SKIPPING real kube-apiserver tests: KUBEBUILDER_ASSETS is not set; run: ${FIX} ***\n`);
  warned = true;
  return undefined;
}

/** Runs `start` on `count` fresh free loopback ports, retrying (3 attempts) when a process lost the race for a port. */
async function onFreePorts<T>(count: number, start: (ports: number[]) => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    const ports = await Promise.all(Array.from({ length: count }, freePort));
    try {
      return await start(ports);
    } catch (err) {
      if (!(err instanceof Error && err.message.includes('address already in use')) || attempt >= 3) throw err;
    }
  }
}

/** How to (re)start one process; its stdout and stderr are appended to `log`. */
interface Command { name: string; bin: string; args: string[]; log: string }

/** One child process; `waitReady` and `stop` are its whole lifecycle. */
class Proc {
  readonly cmd: Command;
  readonly child: ChildProcess;
  readonly exited: Promise<void>;

  private constructor(cmd: Command, child: ChildProcess) {
    this.cmd = cmd;
    this.child = child;
    live.add(child);
    this.exited = new Promise((resolve) => child.once('exit', () => resolve()));
    void this.exited.then(() => live.delete(child));
  }

  static async spawn(cmd: Command): Promise<Proc> {
    const log = await open(cmd.log, 'a');
    const env = Object.fromEntries(Object.entries(process.env).filter(([key]) => !key.startsWith('ETCD_')));
    const child = spawn(cmd.bin, cmd.args, { stdio: ['ignore', log.fd, log.fd], env });
    await log.close(); // the child holds its own copy of the descriptor
    return new Proc(cmd, child);
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  /** Polls `ready` until true; if the process exits or the deadline passes, stops it and throws with the log's last 40 lines. */
  async waitReady(ready: () => Promise<boolean>, timeoutMs: number): Promise<void> {
    const up = await until(async () => {
      if (!this.running) throw new GiveUp('exited');
      return ready();
    }, `${this.cmd.name} to be ready`, timeoutMs).then(() => true, () => false);
    if (up) return;
    const why = this.running ? `not ready within ${timeoutMs} ms` : `exited (code ${this.child.exitCode}, signal ${this.child.signalCode})`;
    await this.stop();
    const tail = (await readFile(this.cmd.log, 'utf8').catch(() => '')).trimEnd().split('\n').slice(-40).join('\n');
    throw new EnvtestError('ERR_ENVTEST_START', `${this.cmd.name} ${why}; the last lines of its log:\n${tail}`);
  }

  /** SIGTERM, then SIGKILL after 10 s; resolves once the process has exited. Idempotent. */
  async stop(): Promise<void> {
    if (!this.running) return;
    this.child.kill('SIGTERM');
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 10_000);
    await this.exited;
    clearTimeout(timer);
  }
}

/** Writes tokens.csv, a self-signed serving cert for 127.0.0.1 (openssl) and a service-account key pair; returns the cert. */
async function writeCredentials(dir: string, tokens: TokenEntry[]): Promise<string> {
  const csv = tokens.map((t) => `${t.token},${t.user},${t.uid ?? t.user},"${(t.groups ?? []).join(',')}"\n`).join('');
  await writeFile(join(dir, 'tokens.csv'), csv, { mode: 0o600 });
  await promisify(execFile)('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
    '-days', '7', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost',
    '-keyout', join(dir, 'serving.key'), '-out', join(dir, 'serving.crt')]);
  const sa = generateKeyPairSync('rsa', {
    modulusLength: 2048,
    publicKeyEncoding: { type: 'spki', format: 'pem' },
    privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
  });
  await writeFile(join(dir, 'sa.key'), sa.privateKey, { mode: 0o600 });
  await writeFile(join(dir, 'sa.pub'), sa.publicKey);
  return readFile(join(dir, 'serving.crt'), 'utf8');
}

/** The kube-apiserver command line: loopback only, static tokens, RBAC, our certs, no Endpoints reconciler. */
function apiserverCommand(assets: string, dir: string, port: number, etcdUrl: string, watchCache: boolean): Command {
  const file = (name: string): string => join(dir, name);
  return { name: 'kube-apiserver', bin: join(assets, 'kube-apiserver'), log: file('kube-apiserver.log'), args: [
    '--bind-address=127.0.0.1', `--secure-port=${port}`, '--insecure-port=0', '--advertise-address=127.0.0.1',
    `--etcd-servers=${etcdUrl}`, `--watch-cache=${watchCache}`, `--cert-dir=${file('certs')}`,
    `--tls-cert-file=${file('serving.crt')}`, `--tls-private-key-file=${file('serving.key')}`,
    '--authorization-mode=RBAC', `--token-auth-file=${file('tokens.csv')}`,
    '--service-account-issuer=https://kubernetes.default.svc.cluster.local',
    `--service-account-key-file=${file('sa.pub')}`, `--service-account-signing-key-file=${file('sa.key')}`,
    '--service-cluster-ip-range=10.0.0.0/24', '--disable-admission-plugins=ServiceAccount', '--allow-privileged=true',
    '--endpoint-reconciler-type=none', // Endpoints may not hold a loopback address, and nothing here needs them
    '--profiling=false',
  ] };
}

/** POSTs JSON to etcd's HTTP gateway; returns whether it answered 2xx and the response text. */
async function etcdPost(url: string, body: unknown): Promise<{ ok: boolean; text: string }> {
  const res = await fetch(url, { method: 'POST', body: JSON.stringify(body), signal: AbortSignal.timeout(10_000) });
  return { ok: res.ok, text: await res.text() };
}

/** A running etcd + kube-apiserver pair; the admin token's user is in group system:masters. */
export class TestCluster {
  /** Temp dir: certs, tokens.csv, kubeconfig, etcd data, etcd.log and kube-apiserver.log. */
  readonly dir: string;
  /** "https://127.0.0.1:PORT" of the apiserver. */
  readonly server: string;
  /** "http://127.0.0.1:PORT" of etcd's client endpoint. */
  readonly etcdUrl: string;
  /** PEM of the self-signed serving certificate, which clients trust as their CA. */
  readonly caPem: string;
  /** Bearer token of the admin (group system:masters). */
  readonly adminToken: string;
  /** A kubeconfig file for the admin token, for child processes and kubectl. */
  readonly kubeconfigPath: string;
  readonly #etcd: Proc;
  readonly #dispatcher: Agent;
  readonly #opts: TestClusterOptions;
  #apiserver: Proc | undefined;
  #stopping: Promise<void> | undefined;

  private constructor(dir: string, port: number, etcd: { url: string; proc: Proc }, ca: string, token: string, opts: TestClusterOptions) {
    this.dir = dir;
    this.server = `https://127.0.0.1:${port}`;
    this.etcdUrl = etcd.url;
    this.#etcd = etcd.proc;
    this.caPem = ca;
    this.adminToken = token;
    this.kubeconfigPath = join(dir, 'kubeconfig');
    this.#dispatcher = new Agent({ connect: { ca } });
    this.#opts = opts;
  }

  /** Starts etcd and kube-apiserver on free loopback ports and resolves once /readyz answers 200; call stop() when done. */
  static async start(opts: TestClusterOptions = {}): Promise<TestCluster> {
    const assets = opts.assets ?? envtestAssets();
    if (assets === undefined) throw new EnvtestError('ERR_ENVTEST_ASSETS', `no envtest assets; run: ${FIX}`);
    const dir = await mkdtemp(join(tmpdir(), 'envtest-'));
    if (!opts.keepDir) dirs.add(dir);
    let etcd: Proc | undefined;
    try {
      const admin: TokenEntry = { token: randomBytes(24).toString('hex'), user: 'envtest-admin', groups: ['system:masters'] };
      const caPem = await writeCredentials(dir, [admin, ...(opts.tokens ?? [])]);
      const url = await onFreePorts(2, async ([client, peer]) => {
        const [url, peerUrl] = [`http://127.0.0.1:${client}`, `http://127.0.0.1:${peer}`];
        await rm(join(dir, 'etcd'), { recursive: true, force: true }); // a lost port race may have left data behind
        etcd = await Proc.spawn({ name: 'etcd', bin: join(assets, 'etcd'), log: join(dir, 'etcd.log'), args: [
          '--name=envtest', `--data-dir=${join(dir, 'etcd')}`, '--logger=zap', '--log-outputs=stderr',
          `--listen-client-urls=${url}`, `--advertise-client-urls=${url}`, `--listen-peer-urls=${peerUrl}`,
          `--initial-advertise-peer-urls=${peerUrl}`, `--initial-cluster=envtest=${peerUrl}`, '--initial-cluster-state=new',
        ] });
        const healthy = async (): Promise<boolean> => (await fetch(`${url}/health`, { signal: AbortSignal.timeout(1_000) })).ok;
        await etcd.waitReady(healthy, opts.startTimeoutMs ?? 60_000);
        return url;
      });
      return await onFreePorts(1, async ([port = 0]) => {
        const cluster = new TestCluster(dir, port, { url, proc: etcd! }, caPem, admin.token, opts);
        await writeFile(cluster.kubeconfigPath, cluster.kubeConfig().exportConfig(), { mode: 0o600 });
        const cmd = apiserverCommand(assets, dir, port, url, opts.watchCache ?? false);
        await cluster.#startApiServer(cmd).catch(async (err: unknown) => {
          await cluster.#dispatcher.close();
          throw err;
        });
        return cluster;
      });
    } catch (err) {
      await etcd?.stop();
      await removeDir(dir, opts.keepDir);
      throw err;
    }
  }

  async #startApiServer(cmd: Command): Promise<void> {
    const proc = (this.#apiserver = await Proc.spawn(cmd));
    await proc.waitReady(async () => {
      const headers = { authorization: `Bearer ${this.adminToken}` };
      const res = await fetch(`${this.server}/readyz`, { headers, dispatcher: this.#dispatcher, signal: AbortSignal.timeout(2_000) });
      await res.arrayBuffer();
      return res.status === 200;
    }, this.#opts.startTimeoutMs ?? 60_000);
  }

  /** A KubeConfig for the admin token that trusts the cluster's CA. */
  kubeConfig(): KubeConfig {
    return this.kubeConfigFor(this.adminToken);
  }

  /** A KubeConfig that authenticates with `token`: one of opts.tokens, or any other string to get a 401. */
  kubeConfigFor(token: string): KubeConfig {
    const kc = new KubeConfig();
    kc.loadFromOptions({
      clusters: [{ name: 'envtest', server: this.server, caData: Buffer.from(this.caPem).toString('base64'), skipTLSVerify: false }],
      users: [{ name: 'envtest-user', token }],
      contexts: [{ name: 'envtest', cluster: 'envtest', user: 'envtest-user' }],
      currentContext: 'envtest',
    });
    return kc;
  }

  /** Stops the kube-apiserver process and starts it again (same port, same etcd), resolving once /readyz answers 200. */
  async restartApiServer(): Promise<void> {
    if (this.#stopping || !this.#apiserver) throw new EnvtestError('ERR_ENVTEST_START', 'the cluster is stopped');
    await this.#apiserver.stop();
    await this.#startApiServer(this.#apiserver.cmd);
  }

  /** Physically compacts etcd at its current revision, so watches from older resourceVersions get 410; returns the revision. */
  async compactEtcd(): Promise<number> {
    // A range read's response header carries the current revision (an int64, so a JSON string).
    const range = await etcdPost(`${this.etcdUrl}/v3/kv/range`, { key: Buffer.from('\0').toString('base64') });
    const revision = range.ok ? Number((JSON.parse(range.text) as { header?: { revision?: string } }).header?.revision) : NaN;
    if (!Number.isSafeInteger(revision)) throw new EnvtestError('ERR_ENVTEST_ETCD', `etcd returned no revision: ${range.text}`);
    const compaction = await etcdPost(`${this.etcdUrl}/v3/kv/compaction`, { revision: String(revision), physical: true });
    // Nothing was written since the last compaction: it already happened at this revision, which is what was asked.
    if (!compaction.ok && !compaction.text.includes('required revision has been compacted')) {
      throw new EnvtestError('ERR_ENVTEST_ETCD', `etcd compaction at revision ${revision} failed: ${compaction.text}`);
    }
    return revision;
  }

  /** Stops kube-apiserver, then etcd, waits for both to exit and removes the temp dir (unless keepDir); idempotent. */
  stop(): Promise<void> {
    this.#stopping ??= (async () => {
      await this.#apiserver?.stop();
      await this.#etcd.stop();
      await this.#dispatcher.close();
      await removeDir(this.dir, this.#opts.keepDir);
    })();
    return this.#stopping;
  }
}

async function removeDir(dir: string, keep = false): Promise<void> {
  if (keep) return;
  await rm(dir, { recursive: true, force: true });
  dirs.delete(dir);
}

/** Creates, or replaces if it exists, every object of the multi-document YAML in order; waits until each CRD is Established. */
export async function applyManifests(kc: KubeConfig, yamlText: string, timeoutMs = 30_000): Promise<KubernetesObject[]> {
  const client = KubernetesObjectApi.makeApiClient(kc);
  const applied: KubernetesObject[] = [];
  // client-node's loadAllYaml deserialises into its typed models (`default` -> `_default`, `enum` -> `_enum`,
  // `x-kubernetes-*` ...), which KubernetesObjectApi serialises back losslessly. Plain JSON would be passed
  // through the same typed serialiser and silently lose those fields (a CRD without defaults or enums).
  for (const doc of loadAllYaml(yamlText) as unknown[]) {
    const spec = doc as (KubernetesObject & { metadata: { name: string } }) | null;
    if (!spec?.kind) continue; // an empty document
    const existing = await client.read(spec).catch((err: unknown) => {
      if ((err as { code?: unknown }).code === 404) return undefined;
      throw err;
    });
    const resourceVersion = existing?.metadata?.resourceVersion;
    applied.push(existing ? await client.replace({ ...spec, metadata: { ...spec.metadata, resourceVersion } }) : await client.create(spec));
  }
  const crds = applied.filter((o) => o.kind === 'CustomResourceDefinition');
  await Promise.all(crds.map((crd) => waitEstablished(kc, crd.metadata?.name ?? '', timeoutMs)));
  return applied;
}

/** Applies every *.yaml / *.yml file of `dir`, sorted by name, with applyManifests. */
export async function installCRDs(kc: KubeConfig, dir: string, timeoutMs = 30_000): Promise<KubernetesObject[]> {
  const files = (await readdir(dir)).filter((f) => /\.ya?ml$/.test(f)).sort();
  const texts = await Promise.all(files.map((f) => readFile(join(dir, f), 'utf8')));
  return applyManifests(kc, texts.join('\n---\n'), timeoutMs);
}

async function waitEstablished(kc: KubeConfig, name: string, timeoutMs: number): Promise<void> {
  const api = kc.makeApiClient(ApiextensionsV1Api);
  await until(async () => {
    const conditions = (await api.readCustomResourceDefinition({ name })).status?.conditions ?? [];
    const names = conditions.find((c) => c.type === 'NamesAccepted' && c.status === 'False');
    if (names) throw new GiveUp(`CRD ${name}: names not accepted: ${names.message ?? names.reason ?? ''}`);
    return conditions.some((c) => c.type === 'Established' && c.status === 'True');
  }, `CRD ${name} to be Established`, timeoutMs).catch((err: Error) => {
    throw new EnvtestError(err instanceof GiveUp ? 'ERR_ENVTEST_START' : 'ERR_ENVTEST_TIMEOUT', err.message);
  });
}

/** The repository's crds/ folder: the NotificationEndpoint CRD the operator serves. */
export const REPO_CRDS = join(import.meta.dirname, '../../crds');

/** Options of startCluster: TestCluster.start's, plus a CRD folder to install and namespaces to create. */
export interface StartClusterOptions extends TestClusterOptions {
  /** A folder of CRD manifests, installed with installCRDs; none when omitted. */
  crds?: string;
  /** Namespaces created once the CRDs are Established, in order. */
  namespaces?: string[];
}

/** A cluster from startCluster: the TestCluster, its admin KubeConfig and the clients made from it. */
export interface StartedCluster {
  /** The running etcd and kube-apiserver. */
  readonly cluster: TestCluster;
  /** The admin KubeConfig (cluster.kubeConfig()). */
  readonly kc: KubeConfig;
  /** Custom objects as the admin. */
  readonly custom: CustomObjectsApi;
  /** The core API group as the admin. */
  readonly core: CoreV1Api;
  /** Awaits each of `first` in order (servers, receivers, databases: each may find its thing never started), then stops the cluster. */
  stop(...first: (() => unknown)[]): Promise<void>;
}

/**
 * A suite's real apiserver: starts a TestCluster, installs `crds` and creates `namespaces`; if that fails, the
 * cluster is stopped again. Call it in beforeAll, under describe.skipIf(!envtestAssets()), and its stop() in afterAll.
 */
export async function startCluster(opts: StartClusterOptions = {}): Promise<StartedCluster> {
  const { crds, namespaces = [], ...clusterOptions } = opts;
  const cluster = await TestCluster.start(clusterOptions);
  try {
    const kc = cluster.kubeConfig();
    const core = kc.makeApiClient(CoreV1Api);
    if (crds !== undefined) await installCRDs(kc, crds);
    for (const name of namespaces) await core.createNamespace({ body: { metadata: { name } } });
    return {
      cluster, kc, core, custom: kc.makeApiClient(CustomObjectsApi),
      async stop(...first: (() => unknown)[]): Promise<void> {
        for (const step of first) await step();
        await cluster.stop();
      },
    };
  } catch (err) {
    await cluster.stop();
    throw err;
  }
}
