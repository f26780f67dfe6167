// What `import-config` prints is accepted by a real kube-apiserver 1.20 with our CRD installed: every object passes a
// server-side dry run with nothing dropped, and `kubectl apply --dry-run=server -f -` takes the stream as printed,
// header values arriving in the Secrets byte for byte (YAML 1.1 traps such as `yes` and `0123` included).
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { MAIN_TS } from '../e2e/notifier-process.ts';
import { DryRunClient, droppedFields } from '../packaging/dry-run.ts';
import { KUBECTL } from '../packaging/kustomize.ts';
import type { Manifest } from '../packaging/render.ts';
import { envtestAssets, startCluster, type StartedCluster, type TestCluster } from '../support/envtest.ts';
import { need, skipWithout } from '../support/tools.ts';

const ROOT = join(import.meta.dirname, '..', '..');
const FIXTURES = join(ROOT, 'test', 'fixtures', 'distribution-configs');
const NAMESPACE = 'registry';
const CONFIGS = [
  join(FIXTURES, 'config-cache.yml'),
  join(FIXTURES, 'config-dev.yml'),
  join(FIXTURES, 'configuration-md.yml'),
  join(FIXTURES, 'notifications-md.yml'),
  join(ROOT, 'examples', 'registry', 'config.yml'),
];
// Values a YAML 1.1 reader (kubectl's) would take for a boolean or a number if they were printed unquoted.
const TRICKY = `notifications:
  endpoints:
    - name: Tricky Values
      url: "https://user:p%40ss@hooks.example/in"
      headers: {X-Yes: [yes], X-Octal: [0123], X-On: ["on"], X-Null: ["null"], X-Colon: ["a: b"], X-Hash: ["#x"], X-Multi: [a, b]}
      timeout: 1500000
      ignore: {actions: [pull]}
`;

const assets = envtestAssets();
const skipKubectl = skipWithout(KUBECTL, 'the import-config `kubectl apply --dry-run=server` test');

/** `node src/main.ts import-config ARGS` with `input` on stdin; fails the test unless it exits 0. */
async function importConfig(args: readonly string[], input = ''): Promise<string> {
  const child = spawn(process.execPath, [MAIN_TS, 'import-config', ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  child.stdin.end(input);
  const code = await new Promise<number | null>((resolve) => child.once('close', resolve));
  expect(code, stderr).toBe(0);
  return stdout;
}

/** `kubectl ARGS` against the test cluster with `input` on stdin: exit code, stdout, stderr. */
function runKubectl(cluster: TestCluster, args: readonly string[], input: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(need(KUBECTL), ['--kubeconfig', cluster.kubeconfigPath, ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    child.stdin.end(input);
    const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

const decoded = (data: Record<string, string> | undefined): Record<string, string> =>
  Object.fromEntries(Object.entries(data ?? {}).map(([key, value]) => [key, Buffer.from(value, 'base64').toString('utf8')]));

describe.skipIf(!assets)('import-config output on a real kube-apiserver 1.20 with crds/ installed', { timeout: 120_000 }, () => {
  let env: StartedCluster;
  let client: DryRunClient;

  beforeAll(async () => {
    env = await startCluster({ crds: join(ROOT, 'crds') });
    client = new DryRunClient(env.cluster);
    await client.create({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: NAMESPACE } });
  });

  afterAll(() => env?.stop(() => client?.close()));

  it.each([...CONFIGS.map((path) => [path.slice(ROOT.length + 1), path, '']), ['a config with YAML 1.1 traps and user-info', '-', TRICKY]])(
    '%s: every object passes a server-side dry run, nothing dropped, Secret values exact',
    async (_name, path, input) => {
      const stream = await importConfig([path, '--namespace', NAMESPACE], input);
      const objects = parseAllDocuments(stream).map((d) => d.toJS() as Manifest);
      expect(objects.length).toBeGreaterThan(0);
      const problems: string[] = [];
      for (const object of objects) {
        const result = await client.dryRunCreate(object);
        if (result.status !== 201) {
          problems.push(`${result.object}: ${result.status} ${result.message}`);
        } else if (object.kind === 'Secret') {
          // The server keeps stringData as base64 data.
          const { stringData, ...rest } = object;
          problems.push(...droppedFields(rest, result.stored).map((p) => `${result.object}: dropped ${p}`));
          const sorted = (data: unknown): string => JSON.stringify(Object.entries(data as Record<string, string>).sort());
          if (sorted(decoded(result.stored?.data as Record<string, string>)) !== sorted(stringData)) problems.push(`${result.object}: data differs from stringData`);
        } else {
          problems.push(...droppedFields(object, result.stored).map((p) => `${result.object}: dropped ${p}`));
        }
      }
      expect(problems).toEqual([]);
    },
  );

  it.skipIf(skipKubectl)('`kubectl apply --dry-run=server -f -` takes the stream as printed; values arrive exactly', async () => {
    const stream = await importConfig(['-', '--namespace', NAMESPACE], TRICKY);
    const applied = await runKubectl(env.cluster, ['apply', '--dry-run=server', '-o', 'json', '-f', '-'], stream);
    expect(applied.code, applied.stderr).toBe(0);
    const list = JSON.parse(applied.stdout) as { items: (Manifest & { data?: Record<string, string>; spec?: Record<string, unknown> })[] };
    expect(list.items.map((o) => `${o.kind} ${o.metadata.namespace}/${o.metadata.name}`)).toEqual(['Secret registry/tricky-values-headers', 'NotificationEndpoint registry/tricky-values']);
    expect(decoded(list.items[0]?.data)).toEqual({
      'X-Yes': 'yes', 'X-Octal': '0123', 'X-On': 'on', 'X-Null': 'null', 'X-Colon': 'a: b', 'X-Hash': '#x', 'X-Multi': 'a, b',
      Authorization: `Basic ${Buffer.from('user:p@ss').toString('base64')}`,
    });
    expect(list.items[1]?.spec).toMatchObject({ url: 'https://hooks.example/in', timeout: '1.5ms', ignore: { actions: ['pull'] }, threshold: 10, maxBatchEvents: 1 });

    // Every fixture in one go too, as a user pipes it.
    for (const path of CONFIGS) {
      const result = await runKubectl(env.cluster, ['apply', '--dry-run=server', '-f', '-'], await importConfig([path, '--namespace', NAMESPACE]));
      expect(result.code, `${path}: ${result.stderr}`).toBe(0);
      expect(result.stdout, path).toMatch(/notificationendpoint\.registry-notifier\.io\/\S+ created \(server dry run\)/);
    }
  });
});
