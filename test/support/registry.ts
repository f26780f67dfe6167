// Runs the real CNCF Distribution registry (Debian's docker-registry 2.8) on loopback, and drives it with skopeo.
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, open, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { stringify } from 'yaml';
import { GiveUp, until } from './wait.ts';
import { freePort } from './free-port.ts';

/** Path of the registry binary (Debian package docker-registry); override with DOCKER_REGISTRY_BIN. */
export const REGISTRY_BIN = process.env.DOCKER_REGISTRY_BIN ?? '/usr/bin/docker-registry';

/** Path of skopeo (Debian package skopeo); override with SKOPEO_BIN. */
export const SKOPEO_BIN = process.env.SKOPEO_BIN ?? '/usr/bin/skopeo';

/** True when both the registry binary and skopeo are installed (see hack/install-e2e-deps.sh). */
export function e2eToolsAvailable(): boolean {
  return existsSync(REGISTRY_BIN) && existsSync(SKOPEO_BIN);
}

/** Options of TestRegistry.start: the single notification endpoint's settings, durations in Go syntax ("100ms"). */
export interface TestRegistryOptions {
  notifyUrl: string;
  token?: string;
  endpointName?: string;
  headers?: Record<string, string[]>;
  timeout?: string;
  threshold?: number;
  backoff?: string;
  ignoredMediaTypes?: string[];
  ignoreActions?: string[];
  startTimeoutMs?: number;
}

const SKOPEO_TIMEOUT_MS = 30_000;
const live = new Set<ChildProcess>();
process.once('exit', () => live.forEach((child) => child.kill('SIGKILL'))); // never leak a registry

function run(file: string, args: string[], env: NodeJS.ProcessEnv): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(file, args, { env, timeout: SKOPEO_TIMEOUT_MS, killSignal: 'SIGKILL' }, (err, stdout, stderr) => {
      if (!err) return resolve(stdout);
      const how = err.killed ? `killed after ${SKOPEO_TIMEOUT_MS} ms` : `exit code ${String(err.code)}`;
      reject(new Error(`${file} ${args.join(' ')} failed (${how}); stderr:\n${stderr.trim()}`));
    });
  });
}

/** A real registry on 127.0.0.1:<free port> with filesystem storage, deletes enabled and one notification endpoint. */
export class TestRegistry {
  /** "127.0.0.1:PORT", as used in image references and reported in `request.host`. */
  readonly host: string;
  /** "http://127.0.0.1:PORT". */
  readonly url: string;
  /** Temp directory holding config.yml, registry.log, storage and skopeo's config. */
  readonly dir: string;
  private readonly child: ChildProcess;
  private readonly exited: Promise<void>;
  private stopping: Promise<void> | undefined;

  private constructor(dir: string, port: number, child: ChildProcess, exited: Promise<void>) {
    this.dir = dir;
    this.child = child;
    this.exited = exited;
    this.host = `127.0.0.1:${port}`;
    this.url = `http://${this.host}`;
  }

  /** Path of the file receiving the registry's stdout and stderr. */
  get logFile(): string {
    return join(this.dir, 'registry.log');
  }

  /** Writes config.yml, starts `docker-registry serve`, resolves once `GET /v2/` answers 200 (retries a lost port race). */
  static async start(opts: TestRegistryOptions): Promise<TestRegistry> {
    const dir = await mkdtemp(join(tmpdir(), 'registry-notifier-e2e-'));
    try {
      await writeSkopeoConfig(dir);
      for (let attempt = 1; ; attempt++) {
        try {
          return await TestRegistry.launch(dir, await freePort(), opts);
        } catch (err) {
          const raced = err instanceof Error && err.message.includes('address already in use');
          if (!raced || attempt >= 3) throw err;
        }
      }
    } catch (err) {
      await rm(dir, { recursive: true, force: true });
      throw err;
    }
  }

  private static async launch(dir: string, port: number, opts: TestRegistryOptions): Promise<TestRegistry> {
    const headers: Record<string, string[]> = { ...opts.headers };
    if (opts.token !== undefined) headers.Authorization = [`Bearer ${opts.token}`];
    const endpoint: Record<string, unknown> = {
      name: opts.endpointName ?? 'e2e',
      url: opts.notifyUrl,
      headers,
      timeout: opts.timeout ?? '1s',
      threshold: opts.threshold ?? 3,
      backoff: opts.backoff ?? '100ms',
    };
    if (opts.ignoredMediaTypes) endpoint.ignoredmediatypes = opts.ignoredMediaTypes;
    if (opts.ignoreActions) endpoint.ignore = { actions: opts.ignoreActions };
    const config = {
      version: 0.1,
      log: { level: 'info', formatter: 'text', fields: { service: 'registry' } },
      storage: { filesystem: { rootdirectory: join(dir, 'storage') }, delete: { enabled: true } },
      http: { addr: `127.0.0.1:${port}`, secret: randomBytes(16).toString('hex') },
      notifications: { endpoints: [endpoint] },
    };
    const configFile = join(dir, 'config.yml');
    await writeFile(configFile, stringify(config));
    const log = await open(join(dir, 'registry.log'), 'w');
    const child = spawn(REGISTRY_BIN, ['serve', configFile], { stdio: ['ignore', log.fd, log.fd], env: cleanEnv() });
    live.add(child);
    let spawnError = '';
    const exited = new Promise<void>((resolve) => {
      child.once('exit', () => resolve());
      child.once('error', (err) => {
        spawnError = `${err.message}; `; // e.g. ENOENT, after which no 'exit' follows
        resolve();
      });
    });
    void exited.then(() => live.delete(child));
    await log.close(); // the child holds its own copy of the descriptor (listeners are attached first: no lost 'error')
    const registry = new TestRegistry(dir, port, child, exited);
    let early = false;
    void exited.then(() => (early = true));
    const up = await until(async () => {
      if (early) throw new GiveUp('exited');
      return fetch(`${registry.url}/v2/`, { signal: AbortSignal.timeout(1_000) }).then((res) => res.status === 200, () => false);
    }, 'GET /v2/ to answer 200', opts.startTimeoutMs ?? 15_000).then(() => true, () => false);
    if (up) return registry;
    await registry.kill();
    const why = early ? `${spawnError}exited with code ${child.exitCode}` : 'did not answer GET /v2/ in time';
    throw new Error(`docker-registry ${why}; log:\n${await registry.logs()}`);
  }

  /** The registry's log so far. */
  logs(): Promise<string> {
    return readFile(this.logFile, 'utf8').catch(() => '');
  }

  /** `skopeo copy oci:LAYOUT:REF docker://HOST/REPO:TAG`, keeping the manifest digest; `ref` defaults to "latest". */
  async push(layoutDir: string, repo: string, tag: string, ref = 'latest'): Promise<void> {
    await this.skopeo('copy', '--preserve-digests', '--dest-tls-verify=false', '--dest-no-creds',
      `oci:${layoutDir}:${ref}`, `docker://${this.host}/${repo}:${tag}`);
  }

  /** Registry-to-registry `skopeo copy` of "repo:tag" to "repo:tag" on this registry (blobs arrive by cross-repository mount). */
  async copy(from: string, to: string): Promise<void> {
    await this.skopeo('copy', '--preserve-digests', '--src-tls-verify=false', '--src-no-creds',
      '--dest-tls-verify=false', '--dest-no-creds', `docker://${this.host}/${from}`, `docker://${this.host}/${to}`);
  }

  /** `skopeo copy docker://HOST/REPO:TAG oci:DEST:TAG` (the registry emits pull events). */
  async pull(repo: string, tag: string, destDir: string): Promise<void> {
    await mkdir(destDir, { recursive: true });
    await this.skopeo('copy', '--src-tls-verify=false', '--src-no-creds',
      `docker://${this.host}/${repo}:${tag}`, `oci:${destDir}:${tag}`);
  }

  /** `skopeo delete docker://HOST/REPO@DIGEST`: deletes the manifest and, in 2.8, untags every tag pointing at it. */
  async deleteManifest(repo: string, digest: string): Promise<void> {
    await this.skopeo('delete', '--tls-verify=false', '--no-creds', `docker://${this.host}/${repo}@${digest}`);
  }

  /** `DELETE /v2/REPO/manifests/TAG` and its HTTP status: 2.8 does not support tag deletes (400 DIGEST_INVALID), 3.x answers 202. */
  async deleteTag(repo: string, tag: string): Promise<number> {
    const res = await fetch(`${this.url}/v2/${repo}/manifests/${tag}`, {
      method: 'DELETE',
      headers: { 'user-agent': 'registry-notifier-e2e' },
      signal: AbortSignal.timeout(5_000),
    });
    await res.arrayBuffer();
    return res.status;
  }

  /** Kills the registry (SIGTERM, then SIGKILL after 5 s), waits for it to exit, removes its temp dir unless E2E_KEEP_DIRS is set; idempotent. */
  stop(): Promise<void> {
    const keep = Boolean(process.env.E2E_KEEP_DIRS);
    this.stopping ??= this.kill().then(() => (keep ? undefined : rm(this.dir, { recursive: true, force: true })));
    return this.stopping;
  }

  private async kill(): Promise<void> {
    if (!live.has(this.child)) return;
    this.child.kill('SIGTERM');
    const timedOut = await Promise.race([
      this.exited.then(() => false),
      new Promise<boolean>((resolve) => setTimeout(() => resolve(true), 5_000).unref()),
    ]);
    if (timedOut) {
      this.child.kill('SIGKILL');
      await this.exited;
    }
  }

  private skopeo(...args: string[]): Promise<string> {
    const [command, ...rest] = args as [string, ...string[]];
    const global = ['--policy', join(this.dir, 'skopeo', 'policy.json'), '--registries.d', join(this.dir, 'skopeo', 'registries.d'),
      '--tmpdir', join(this.dir, 'skopeo', 'tmp'), '--command-timeout', `${SKOPEO_TIMEOUT_MS / 1000 - 2}s`];
    const env = { ...cleanEnv(), CONTAINERS_REGISTRIES_CONF: join(this.dir, 'skopeo', 'registries.conf'),
      REGISTRY_AUTH_FILE: join(this.dir, 'skopeo', 'auth.json') };
    return run(SKOPEO_BIN, [...global, command, '--authfile', env.REGISTRY_AUTH_FILE, ...rest], env);
  }
}

/** Skopeo's isolated config: an empty registries.conf (no search registries, no mirrors), `{}` auth, accept-anything policy. */
async function writeSkopeoConfig(dir: string): Promise<void> {
  const base = join(dir, 'skopeo');
  await mkdir(join(base, 'registries.d'), { recursive: true });
  await mkdir(join(base, 'tmp'), { recursive: true });
  await writeFile(join(base, 'registries.conf'), 'unqualified-search-registries = []\n');
  await writeFile(join(base, 'auth.json'), '{}\n');
  await writeFile(join(base, 'policy.json'), JSON.stringify({ default: [{ type: 'insecureAcceptAnything' }] }));
}

/** The environment for child processes, without proxies (all traffic stays on loopback). */
function cleanEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, NO_PROXY: '127.0.0.1,localhost', no_proxy: '127.0.0.1,localhost' };
  for (const key of ['HTTP_PROXY', 'HTTPS_PROXY', 'ALL_PROXY', 'http_proxy', 'https_proxy', 'all_proxy']) delete env[key];
  return env;
}
