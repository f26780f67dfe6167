// The examples users copy: examples/helm/ (registry-notifier beside the twuni docker-registry chart and
// kube-prometheus-stack) must agree with what the chart really renders (Service URL, token Secret, pod labels for the
// NetworkPolicy, the labels kube-prometheus-stack's Prometheus and Grafana sidecar select), and
// examples/registry/config.yml must work in a real Distribution registry (Debian's docker-registry 2.8): pushing an
// image through it reaches registry-notifier's ingest, authenticated, and a webhook behind it.
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdir, mkdtemp, open, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';
import { parseCommand, type ServeConfig } from '../../src/config.ts';
import { startServer, type Running } from '../../src/serve.ts';
import { buildOciLayout } from '../support/oci-image.ts';
import { TestReceiver } from '../support/receiver.ts';
import { e2eToolsAvailable, REGISTRY_BIN, SKOPEO_BIN } from '../support/registry.ts';
import { need, skipWithout, type Requirement } from '../support/tools.ts';
import { GiveUp, until } from '../support/wait.ts';
import { CHART_RENDERER, only, render, REPO, type Manifest } from './render.ts';
import { validate } from './json-schema.ts';
import { defaultValues, mergeValues, SCHEMA } from './values.ts';

const EXAMPLES = join(REPO, 'examples');
const noRenderer = skipWithout(CHART_RENDERER, 'the examples/helm render tests');

interface EnvVar { name: string; value?: string; valueFrom?: { secretKeyRef?: { name: string; key: string } } }
interface RegistryValues {
  configData: { notifications: { endpoints: { name: string; url: string; timeout: string; threshold: number; backoff: string }[] } };
  extraEnvVars: EnvVar[];
}

describe('examples/helm: registry-notifier beside the docker-registry chart', () => {
  const ours = parse(readFileSync(join(EXAMPLES, 'helm/registry-notifier.values.yaml'), 'utf8')) as Record<string, unknown>;
  const theirs = parse(readFileSync(join(EXAMPLES, 'helm/docker-registry.values.yaml'), 'utf8')) as RegistryValues;

  it('our values pass the chart schema', () => {
    expect(validate(mergeValues(defaultValues(), ours), SCHEMA)).toEqual([]);
  });

  it.skipIf(noRenderer)('our values render', async () => {
    await render({ release: 'registry-notifier', namespace: 'registry', valuesFiles: [join(EXAMPLES, 'helm/registry-notifier.values.yaml')] });
  });

  it.skipIf(noRenderer)('the registry notifies the rendered ingest Service with the token from the rendered Secret', async () => {
    const { objects } = await render({ release: 'registry-notifier', namespace: 'registry', valuesFiles: [join(EXAMPLES, 'helm/registry-notifier.values.yaml')] });
    const service = only(objects, 'Service');
    const ingest = (service.spec as { ports: { name: string; port: number }[] }).ports.find((p) => p.name === 'ingest')!;
    const [endpoint] = theirs.configData.notifications.endpoints;
    expect(endpoint!.url).toBe(`http://${service.metadata.name}.${service.metadata.namespace}.svc:${ingest.port}/events`);
    const secret = only(objects, 'Secret');
    const env = theirs.extraEnvVars;
    const tokenVar = env.findIndex((e) => e.valueFrom?.secretKeyRef?.name === secret.metadata.name);
    expect(tokenVar).toBeGreaterThanOrEqual(0);
    expect(env[tokenVar]!.valueFrom?.secretKeyRef?.key).toBe(Object.keys(secret.data as object)[0]);
    expect(env[tokenVar]!.name).not.toMatch(/^REGISTRY_/); // Distribution would read it as a configuration override
    // Distribution 3 sets notifications.endpoints[0].headers from this; Kubernetes expands $(VAR) of an earlier variable.
    const headers = env.findIndex((e) => e.name === 'REGISTRY_NOTIFICATIONS_ENDPOINTS_0_HEADERS');
    expect(headers).toBeGreaterThan(tokenVar);
    expect(parse(env[headers]!.value!)).toEqual({ Authorization: [`Bearer $(${env[tokenVar]!.name})`] });
  });

  it.skipIf(noRenderer)('the NetworkPolicy admits the docker-registry chart\'s pods to the ingest', async () => {
    const { objects } = await render({ release: 'registry-notifier', namespace: 'registry', valuesFiles: [join(EXAMPLES, 'helm/registry-notifier.values.yaml')] });
    const policy = only(objects, 'NetworkPolicy').spec as { ingress: { ports: { port: string }[]; from: { podSelector?: { matchLabels: Record<string, string> } }[] }[] };
    const rule = policy.ingress.find((r) => r.ports.some((p) => p.port === 'ingest'))!;
    // twuni/docker-registry's Deployment labels its pods `app: {{ template "docker-registry.name" . }}` and
    // `release: {{ .Release.Name }}`: app=docker-registry, release=docker-registry for the documented install.
    expect(rule.from).toContainEqual({ podSelector: { matchLabels: { app: 'docker-registry', release: 'docker-registry' } } });
  });
});

describe('examples/helm: three replicas on an existing PostgreSQL Secret', () => {
  const file = join(EXAMPLES, 'helm/replicas-postgres.values.yaml');
  const text = readFileSync(file, 'utf8');
  const values = parse(text) as { replicaCount: number; database: { existingSecret: { name: string; key: string } } };

  it('passes the chart schema, and the commands in its comment create the Secret it names, in the namespace it installs in', () => {
    expect(validate(mergeValues(defaultValues(), values), SCHEMA)).toEqual([]);
    expect(values.replicaCount).toBe(3);
    // "#   kubectl -n registry create secret generic NAME \ / #     --from-literal=KEY='postgres://...'", joined.
    const commands = text.split('\n').filter((l) => l.startsWith('#   ')).map((l) => l.slice(1).trim()).join(' ').replaceAll('\\ ', '');
    const created = /kubectl -n (\S+) create secret generic (\S+) --from-literal=([^=]+)='postgres:\/\//.exec(commands);
    expect(created?.slice(1)).toEqual(['registry', values.database.existingSecret.name, values.database.existingSecret.key]);
    expect(commands).toContain('helm install registry-notifier charts/registry-notifier -n registry -f examples/helm/replicas-postgres.values.yaml');
  });

  it.skipIf(noRenderer)('renders three replicas reading the URL from that Secret, electing on the Lease registry/registry-notifier', async () => {
    const { objects } = await render({ release: 'registry-notifier', namespace: 'registry', valuesFiles: [file] });
    const deployment = only(objects, 'Deployment').spec as { replicas: number; template: { spec: { containers: { env: EnvVar[] }[] } } };
    expect(deployment.replicas).toBe(3);
    const env = deployment.template.spec.containers[0]!.env;
    expect(env.find((e) => e.name === 'REGISTRY_NOTIFIER_DATABASE_URL')?.valueFrom?.secretKeyRef).toEqual({ name: values.database.existingSecret.name, key: values.database.existingSecret.key });
    expect(env.find((e) => e.name === 'REGISTRY_NOTIFIER_LEADER_ELECTION_LEASE')?.value).toBe('registry/registry-notifier');
    // The comment's `kubectl get lease` names that Lease.
    expect(text).toContain('kubectl -n registry get lease registry-notifier');
    expect(only(objects, 'PodDisruptionBudget').spec).toMatchObject({ maxUnavailable: 1 });
  });
});

interface KubePrometheusStackValues {
  prometheus: { prometheusSpec: Record<'serviceMonitorSelector' | 'ruleSelector' | 'serviceMonitorNamespaceSelector' | 'ruleNamespaceSelector', { matchLabels?: Record<string, string> }> & Record<string, unknown> };
  grafana: { sidecar: { dashboards: { enabled: boolean; label: string; labelValue: string; searchNamespace: string; folderAnnotation: string } } };
}

describe('examples/helm: monitored by kube-prometheus-stack', () => {
  const stack = parse(readFileSync(join(EXAMPLES, 'helm/kube-prometheus-stack.values.yaml'), 'utf8')) as KubePrometheusStackValues;
  // The namespace examples/helm/README.md installs kube-prometheus-stack in.
  const MONITORING = 'monitoring';
  const ours = async (): Promise<Manifest[]> =>
    (await render({ release: 'registry-notifier', namespace: 'registry', valuesFiles: [join(EXAMPLES, 'helm/registry-notifier.values.yaml')] })).objects;
  const matches = (selector: { matchLabels?: Record<string, string> }, labels: Record<string, string> | undefined): boolean =>
    Object.entries(selector.matchLabels ?? {}).every(([key, value]) => labels?.[key] === value);

  it.skipIf(noRenderer)('its Prometheus selects our ServiceMonitor and PrometheusRule, in any namespace', async () => {
    const spec = stack.prometheus.prometheusSpec;
    // Without these, kube-prometheus-stack would ignore the selectors below and use its own.
    expect(spec.serviceMonitorSelectorNilUsesHelmValues).toBe(false);
    expect(spec.ruleSelectorNilUsesHelmValues).toBe(false);
    expect(spec.serviceMonitorNamespaceSelector).toEqual({});
    expect(spec.ruleNamespaceSelector).toEqual({});
    const objects = await ours();
    expect(Object.keys(spec.serviceMonitorSelector.matchLabels ?? {})).not.toEqual([]);
    expect(matches(spec.serviceMonitorSelector, only(objects, 'ServiceMonitor').metadata.labels)).toBe(true);
    expect(matches(spec.ruleSelector, only(objects, 'PrometheusRule').metadata.labels)).toBe(true);
    // A release of another name is not selected: the labels are what selects, not luck.
    expect(matches({ matchLabels: { release: 'prometheus' } }, only(objects, 'PrometheusRule').metadata.labels)).toBe(false);
  });

  it.skipIf(noRenderer)('its Grafana sidecar loads our dashboard ConfigMap into the folder it names', async () => {
    const sidecar = stack.grafana.sidecar.dashboards;
    expect(sidecar.enabled).toBe(true);
    const map = only(await ours(), 'ConfigMap');
    expect(map.metadata.labels?.[sidecar.label]).toBe(sidecar.labelValue);
    expect(sidecar.searchNamespace === 'ALL' || sidecar.searchNamespace.split(',').includes(map.metadata.namespace!)).toBe(true);
    expect(map.metadata.annotations?.[sidecar.folderAnnotation]).toBe('Registry');
    expect(Object.keys(map.data as object)).toEqual(['registry-notifier.json']);
  });

  it.skipIf(noRenderer)('our NetworkPolicy admits its Prometheus to the metrics port', async () => {
    const policy = only(await ours(), 'NetworkPolicy').spec as { ingress: { ports: { port: string }[]; from: { namespaceSelector?: { matchLabels: Record<string, string> } }[] }[] };
    const rule = policy.ingress.find((r) => r.ports.some((p) => p.port === 'metrics'))!;
    expect(rule.from).toContainEqual({ namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': MONITORING } } });
  });
});

const REGISTRY_TOOLS: Requirement = {
  what: `${REGISTRY_BIN} and ${SKOPEO_BIN}`,
  path: e2eToolsAvailable() ? REGISTRY_BIN : undefined,
  fix: 'run `bash hack/install-e2e-deps.sh` (as root) to install Debian\'s docker-registry and skopeo',
};

describe.skipIf(skipWithout(REGISTRY_TOOLS, 'the examples/registry/config.yml test in a real registry'))('examples/registry/config.yml in a real registry (Distribution 2.8)', { timeout: 60_000 }, () => {
  const TOKEN = 'examples-test-ingest-token';
  let work: string;
  let receiver: TestReceiver;
  let server: Running;
  let registry: ChildProcess | undefined;
  let registryHost: string;

  beforeAll(async () => {
    need(REGISTRY_TOOLS);
    work = await mkdtemp(join(tmpdir(), 'examples-registry-'));
    receiver = await TestReceiver.start();
    const endpoints = join(work, 'endpoints.yaml');
    await writeFile(endpoints, stringify({ apiVersion: 'registry-notifier.io/v1alpha1', kind: 'NotificationEndpoint', metadata: { name: 'hook' }, spec: { url: receiver.url, ignore: { actions: ['pull'] } } }));
    const config = parseCommand(['serve', '--endpoints', endpoints, '--listen', '127.0.0.1:0', '--metrics-listen', '127.0.0.1:0', '--allow-endpoint-cidrs', '127.0.0.0/8', '--shutdown-grace', '1s'],
      { REGISTRY_NOTIFIER_INGEST_TOKEN: TOKEN }) as ServeConfig;
    server = await startServer(config, pino({ level: 'silent' }));
    // The example as shipped, with only the two placeholders a user fills in: the ingest URL and the token.
    const example = await readFile(join(EXAMPLES, 'registry/config.yml'), 'utf8');
    const url = 'http://registry-notifier.registry-notifier.svc:8080/events';
    expect(example.split(url)).toHaveLength(2);
    expect(example.split('<TOKEN>').length).toBeGreaterThanOrEqual(2);
    await writeFile(join(work, 'config.yml'), example.replace(url, server.ingestUrl).replaceAll('<TOKEN>', TOKEN));
    // Address and storage through Distribution's own environment overrides, so the file stays as shipped.
    const port = await freePort();
    registryHost = `127.0.0.1:${port}`;
    const log = await open(join(work, 'registry.log'), 'w');
    registry = spawn(REGISTRY_BIN, ['serve', join(work, 'config.yml')], {
      stdio: ['ignore', log.fd, log.fd],
      env: { ...cleanEnv(), REGISTRY_HTTP_ADDR: registryHost, REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY: join(work, 'storage') },
    });
    await log.close();
    const started = registry;
    await until(async () => {
      if (started.exitCode !== null) throw new GiveUp(`the registry exited (${started.exitCode}); log:\n${await readFile(join(work, 'registry.log'), 'utf8')}`);
      return fetch(`http://${registryHost}/v2/`, { signal: AbortSignal.timeout(1_000) }).then((r) => r.ok, () => false);
    }, async () => `the registry to answer GET /v2/; log:\n${await readFile(join(work, 'registry.log'), 'utf8')}`, 15_000);
  });

  afterAll(async () => {
    registry?.kill('SIGKILL');
    await server?.shutdown();
    await receiver?.close();
    if (work) await rm(work, { recursive: true, force: true });
  });

  it('a push reaches the ingest with the configured token and is delivered to a webhook', async () => {
    const layout = await buildOciLayout(join(work, 'image'), { seed: 'examples' });
    const skopeo = join(work, 'skopeo');
    await mkdir(join(skopeo, 'registries.d'), { recursive: true });
    await mkdir(join(skopeo, 'tmp'), { recursive: true });
    await writeFile(join(skopeo, 'registries.conf'), 'unqualified-search-registries = []\n');
    await writeFile(join(skopeo, 'policy.json'), JSON.stringify({ default: [{ type: 'insecureAcceptAnything' }] }));
    await writeFile(join(skopeo, 'auth.json'), '{}\n');
    await promisify(execFile)(SKOPEO_BIN, [
      '--policy', join(skopeo, 'policy.json'), '--registries.d', join(skopeo, 'registries.d'), '--tmpdir', join(skopeo, 'tmp'),
      'copy', '--authfile', join(skopeo, 'auth.json'), '--preserve-digests', '--dest-tls-verify=false', '--dest-no-creds',
      `oci:${layout.dir}:${layout.ref}`, `docker://${registryHost}/demo/app:v1`,
    ], { env: { ...cleanEnv(), CONTAINERS_REGISTRIES_CONF: join(skopeo, 'registries.conf') }, timeout: 30_000 });
    await receiver.waitFor(() => receiver.events().some((e) => e.action === 'push' && e.target.digest === layout.manifestDigest && e.target.tag === 'v1'), 20_000);
    // Had the header not been sent as configured, the ingest would have answered 401 and nothing would arrive.
    const metrics = await (await fetch(`${server.adminUrl}/metrics`)).text();
    expect(metrics).toMatch(/registry_notifier_ingest_requests_total\{code="202"\} [1-9]/);
    expect(metrics).not.toMatch(/registry_notifier_ingest_requests_total\{code="401"\}/);
  });
});

async function freePort(): Promise<number> {
  const probe = createServer();
  await new Promise<void>((resolve, reject) => probe.once('error', reject).listen(0, '127.0.0.1', resolve));
  const { port } = probe.address() as AddressInfo;
  await new Promise<void>((resolve) => probe.close(() => resolve()));
  return port;
}

/** The environment for child processes, without proxies (everything stays on loopback). */
function cleanEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, NO_PROXY: '127.0.0.1,localhost', no_proxy: '127.0.0.1,localhost' };
  for (const key of ['HTTP_PROXY', 'HTTPS_PROXY', 'ALL_PROXY', 'http_proxy', 'https_proxy', 'all_proxy']) delete env[key];
  return env;
}
