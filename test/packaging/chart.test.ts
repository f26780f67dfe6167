// The Helm chart charts/registry-notifier, rendered by `helm template` (or helmtpl, its stand-in where Helm cannot be
// installed; see render.ts): defaults and every option on render and carry the promised properties; bad combinations fail at render time
// with messages that say what to set; values files are checked against values.schema.json; the chart's CRDs equal
// crds/; deploy/ equals the defaults. Then every rendered object passes a server-side dry run on a real
// kube-apiserver (1.20) with the CRDs installed from the chart's crds/ folder.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { parseCommand, type ServeConfig } from '../../src/config.ts';
import { applyManifests, envtestAssets, startCluster, type StartedCluster } from '../support/envtest.ts';
import { fileFromEnv, need, skipWithout } from '../support/tools.ts';
import { DryRunClient, droppedFields } from './dry-run.ts';
import { kustomize } from './kustomize.ts';
import { EXPECTED_RULES, leaderElectionRules, tenancyRules } from './rbac-rules.ts';
import { CHART, CHART_RENDERER, only, render, REPO, tryRender, type Manifest, type Rendered } from './render.ts';
import { validate } from './json-schema.ts';
import { defaultValues, mergeValues, SCHEMA, undocumentedValues, VALUES_TEXT } from './values.ts';

const ALL_ON = join(import.meta.dirname, 'fixtures/all-on.values.yaml');
// Every database option on (the chart's Secret, the migration Job, a lease duration, a status rate, a PDB).
const DATABASE_ON = join(import.meta.dirname, 'fixtures/database.values.yaml');
// The example users copy: three replicas on an existing PostgreSQL Secret.
const REPLICAS_EXAMPLE = join(REPO, 'examples/helm/replicas-postgres.values.yaml');
// The pod selector labels of release "rn".
const SELECTOR = { 'app.kubernetes.io/name': 'registry-notifier', 'app.kubernetes.io/instance': 'rn' };
// The prometheus-operator ServiceMonitor CRD (a third-party file, not in this repository) for the dry run of a ServiceMonitor.
const SERVICE_MONITOR_CRD = fileFromEnv('SERVICEMONITOR_CRD', 'the ServiceMonitor CRD', 'set SERVICEMONITOR_CRD to monitoring.coreos.com_servicemonitors.yaml of prometheus-operator v0.71 (hack/test.sh and .ci/run do when the shared folder is beside the clone)');
const NS = 'registry';
const assets = envtestAssets();
const noRenderer = skipWithout(CHART_RENDERER, 'the chart rendering tests');
// Asked only where the dry run runs at all, so a skipped suite adds no second line.
const noServiceMonitorCrd = !assets || noRenderer || skipWithout(SERVICE_MONITOR_CRD, 'the dry run of the every-option-on chart (it holds a ServiceMonitor)');

// What a values file must never loosen: the restricted Pod Security Standard.
const RESTRICTED_CONTAINER = {
  allowPrivilegeEscalation: false,
  readOnlyRootFilesystem: true,
  runAsNonRoot: true,
  capabilities: { drop: ['ALL'] },
  seccompProfile: { type: 'RuntimeDefault' },
};

interface Container {
  name: string;
  image: string;
  args: string[];
  env?: { name: string; value?: string; valueFrom?: { secretKeyRef?: { name: string; key: string }; fieldRef?: { fieldPath: string } } }[];
  ports: { name: string; containerPort: number }[];
  startupProbe: { httpGet: { path: string; port: string } };
  livenessProbe: { httpGet: { path: string; port: string } };
  readinessProbe: { httpGet: { path: string; port: string } };
  securityContext: Record<string, unknown>;
  volumeMounts: { name: string; mountPath: string }[];
  resources: Record<string, unknown>;
}
interface PodSpec {
  serviceAccountName: string;
  securityContext: Record<string, unknown>;
  containers: Container[];
  volumes: { name: string; emptyDir?: { sizeLimit?: string }; persistentVolumeClaim?: { claimName: string } }[];
}
const podSpec = (objects: Manifest[]): PodSpec =>
  (only(objects, 'Deployment').spec as { template: { spec: PodSpec } }).template.spec;
const container = (objects: Manifest[]): Container => podSpec(objects).containers[0]!;
// What the kubelet would put into variables that come from elsewhere: a Secret's value (a database URL for the
// database's variable), or the pod's own name for metadata.name.
const POD_NAME = 'rn-registry-notifier-5d8f7c9b4-x2x7q';
const FROM_SECRET_URL = 'postgres://notifier:from-secret@postgres.db.svc:5432/notifier';
const envOf = (c: Container): Record<string, string> => Object.fromEntries((c.env ?? []).map((e) => [e.name,
  e.value ?? (e.valueFrom?.fieldRef?.fieldPath === 'metadata.name' ? POD_NAME : e.name === 'REGISTRY_NOTIFIER_DATABASE_URL' ? FROM_SECRET_URL : 'from-secret')]));
/** What the container's command line means to the product: its own parser, with the env the pod gets. */
const serveConfig = (objects: Manifest[]): ServeConfig => {
  const c = container(objects);
  return parseCommand(c.args, envOf(c)) as ServeConfig;
};

let defaults: Rendered;
let allOn: Rendered;
let rendered: Promise<[Rendered, Rendered]> | undefined;

/** Renders the defaults and the every-option-on values once, for every describe that reads them. */
async function renderBoth(): Promise<void> {
  rendered ??= (async () => {
    const started = performance.now();
    const both = await Promise.all([render({ namespace: NS }), render({ namespace: NS, valuesFiles: [ALL_ON] })]);
    console.log(`[measure] two renders with ${CHART_RENDERER.what}: ${(performance.now() - started).toFixed(0)} ms`);
    return both;
  })();
  [defaults, allOn] = await rendered;
}

describe.skipIf(noRenderer)('chart: rendering', () => {
  beforeAll(renderBoth);

  it('defaults: exactly the expected objects, CRD first, every one labelled', () => {
    // CRDs come first; the rest in the renderer's order (helm sorts by kind, helmtpl by template file), so as a set.
    expect(`${defaults.objects[0]?.kind}/${defaults.objects[0]?.metadata.name}`).toBe('CustomResourceDefinition/notificationendpoints.registry-notifier.io');
    expect(defaults.objects.slice(1).map((o) => `${o.kind}/${o.metadata.name}`).sort()).toEqual([
      'ClusterRole/rn-registry-notifier',
      'ClusterRoleBinding/rn-registry-notifier',
      'Deployment/rn-registry-notifier',
      'Secret/rn-registry-notifier-ingest-token',
      'Service/rn-registry-notifier',
      'ServiceAccount/rn-registry-notifier',
    ]);
    for (const o of defaults.objects.slice(1)) {
      expect(o.metadata.labels, `${o.kind}`).toEqual({
        'helm.sh/chart': 'registry-notifier-0.1.0',
        'app.kubernetes.io/name': 'registry-notifier',
        'app.kubernetes.io/instance': 'rn',
        'app.kubernetes.io/version': '0.1.0',
        'app.kubernetes.io/component': 'controller',
        'app.kubernetes.io/part-of': 'registry-notifier',
        'app.kubernetes.io/managed-by': 'Helm',
      });
      if (!o.kind.startsWith('Cluster')) expect(o.metadata.namespace, o.kind).toBe(NS);
    }
  });

  it('defaults: the Deployment runs `serve --kubernetes` with the restricted security profile, named ports and probes', () => {
    const deployment = only(defaults.objects, 'Deployment');
    const spec = deployment.spec as { replicas: number; selector: { matchLabels: Record<string, string> }; strategy: { type: string }; template: { metadata: { labels: Record<string, string> } } };
    expect(spec.replicas).toBe(1);
    expect(spec.strategy.type).toBe('RollingUpdate');
    expect(spec.selector.matchLabels).toEqual({ 'app.kubernetes.io/name': 'registry-notifier', 'app.kubernetes.io/instance': 'rn' });
    expect(spec.template.metadata.labels).toMatchObject(spec.selector.matchLabels);
    const pod = podSpec(defaults.objects);
    expect(pod.serviceAccountName).toBe('rn-registry-notifier');
    expect(pod.securityContext).toEqual({ runAsNonRoot: true, runAsUser: 65532, runAsGroup: 65532, fsGroup: 65532, seccompProfile: { type: 'RuntimeDefault' } });
    const c = container(defaults.objects);
    expect(c.image).toBe('ghcr.io/registry-notifier/registry-notifier:0.1.0');
    expect(c.args.slice(0, 2)).toEqual(['serve', '--kubernetes']);
    expect(c.securityContext).toEqual(RESTRICTED_CONTAINER);
    expect(c.ports).toEqual([
      { name: 'ingest', containerPort: 8080, protocol: 'TCP' },
      { name: 'metrics', containerPort: 9090, protocol: 'TCP' },
    ]);
    expect(c.startupProbe.httpGet).toEqual({ path: '/healthz', port: 'metrics' });
    expect(c.livenessProbe.httpGet).toEqual({ path: '/healthz', port: 'metrics' });
    expect(c.readinessProbe.httpGet).toEqual({ path: '/readyz', port: 'metrics' });
    expect(c.resources).toEqual({ requests: { cpu: '50m', memory: '96Mi' }, limits: { memory: '512Mi' } });
    // Read-only root: /tmp is the only writable mount, an emptyDir with a limit.
    expect(c.volumeMounts).toEqual([{ name: 'tmp', mountPath: '/tmp' }]);
    expect(pod.volumes).toEqual([{ name: 'tmp', emptyDir: { sizeLimit: '32Mi' } }]);
    expect(c.env).toEqual([{ name: 'REGISTRY_NOTIFIER_INGEST_TOKEN', valueFrom: { secretKeyRef: { name: 'rn-registry-notifier-ingest-token', key: 'token' } } }]);
  });

  it('defaults: the product parses the container args (env twin included) into the configuration the values ask for', () => {
    const config = serveConfig(defaults.objects);
    expect(config).toMatchObject({
      command: 'serve', kubernetes: true, namespaces: [], endpoints: [], ingestToken: 'from-secret', queueDir: undefined,
      listen: { host: undefined, port: 8080 }, metricsListen: { host: undefined, port: 9090 },
      statusIntervalMs: 10_000, shutdownGraceMs: 25_000, maxBodySize: 1024 * 1024, maxPendingPerEndpoint: 100_000, maxPending: 200_000, logLevel: 'info',
      statusWritesPerSecond: 20, databaseUrl: undefined, tenancy: 'none', endpointHistograms: true,
    });
    // The kubelet must outlast the drain.
    expect((only(defaults.objects, 'Deployment').spec as { template: { spec: { terminationGracePeriodSeconds: number } } }).template.spec.terminationGracePeriodSeconds * 1000).toBeGreaterThan(config.shutdownGraceMs);
  });

  it('defaults: the Service exposes the named ingest and metrics ports; the ingest token Secret holds 48 random characters', () => {
    const service = only(defaults.objects, 'Service').spec as { type: string; selector: Record<string, string>; ports: unknown[] };
    expect(service.type).toBe('ClusterIP');
    expect(service.selector).toEqual({ 'app.kubernetes.io/name': 'registry-notifier', 'app.kubernetes.io/instance': 'rn' });
    expect(service.ports).toEqual([
      { name: 'ingest', port: 8080, targetPort: 'ingest', protocol: 'TCP' },
      { name: 'metrics', port: 9090, targetPort: 'metrics', protocol: 'TCP' },
    ]);
    const secret = only(defaults.objects, 'Secret') as Manifest & { data: { token: string } };
    expect(Object.keys(secret.data)).toEqual(['token']);
    expect(Buffer.from(secret.data.token, 'base64').toString()).toMatch(/^[A-Za-z0-9]{48}$/);
  });

  it('defaults: a ClusterRole with exactly the controller\'s API calls, bound to the ServiceAccount; every rule has a comment', () => {
    expect(only(defaults.objects, 'ClusterRole').rules).toEqual(EXPECTED_RULES);
    const binding = only(defaults.objects, 'ClusterRoleBinding');
    expect(binding.roleRef).toEqual({ apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'rn-registry-notifier' });
    expect(binding.subjects).toEqual([{ kind: 'ServiceAccount', name: 'rn-registry-notifier', namespace: NS }]);
    const text = defaults.text.slice(defaults.text.indexOf('\nkind: ClusterRole\n'));
    const rules = text.slice(text.indexOf('rules:'), text.indexOf('---'));
    expect(rules.match(/^ {2}- apiGroups/gm)).toHaveLength(4);
    expect(rules.match(/^ {2}#[^\n]*\n(?: {2}#[^\n]*\n)* {2}- apiGroups/gm)).toHaveLength(4);
  });

  it('every option on: namespaced RBAC, tenancy, existingSecret, journal on a claim, ServiceMonitor, PDB, NetworkPolicy', () => {
    const o = allOn.objects;
    expect(o.map((x) => `${x.kind}/${x.metadata.namespace ?? ''}/${x.metadata.name}`).sort()).toEqual([
      'ClusterRole//rn-registry-notifier-tenancy',
      'ClusterRoleBinding//rn-registry-notifier-tenancy',
      'CustomResourceDefinition//notificationendpoints.registry-notifier.io',
      'Deployment/registry/rn-registry-notifier',
      'NetworkPolicy/registry/rn-registry-notifier',
      'PersistentVolumeClaim/registry/rn-registry-notifier-journal',
      'PodDisruptionBudget/registry/rn-registry-notifier',
      'Role/team-a/rn-registry-notifier',
      'Role/team-b/rn-registry-notifier',
      'RoleBinding/team-a/rn-registry-notifier',
      'RoleBinding/team-b/rn-registry-notifier',
      'Service/registry/rn-registry-notifier',
      'ServiceAccount/registry/notifier',
      'ServiceMonitor/monitoring/rn-registry-notifier',
    ]);
    // No ClusterRole but tenancy's (the watched Namespaces only, by name), no generated Secret.
    expect(only(o, 'ClusterRole').rules).toEqual(tenancyRules(['team-a', 'team-b']));
    for (const ns of ['team-a', 'team-b']) {
      expect(o.find((x) => x.kind === 'Role' && x.metadata.namespace === ns)?.rules).toEqual(EXPECTED_RULES);
      expect(o.find((x) => x.kind === 'RoleBinding' && x.metadata.namespace === ns)?.subjects).toEqual([{ kind: 'ServiceAccount', name: 'notifier', namespace: NS }]);
    }
    const config = serveConfig(o);
    expect(config).toMatchObject({
      kubernetes: true, namespaces: ['team-a', 'team-b'], tenancy: 'namespace', queueDir: '/var/lib/registry-notifier/journal', logLevel: 'debug',
      statusIntervalMs: 30_000, shutdownGraceMs: 55_000, maxPendingPerEndpoint: 1_000_000, maxPending: 2_000_000,
      allowEndpointCidrs: ['10.0.0.0/8', 'fd00::/8'],
      maxBodySize: 8 * 1024 * 1024, // extraArgs come last and win
    });
    const c = container(o);
    expect(c.image).toBe('registry.example.com/mirror/registry-notifier:0.1.0-rc.1@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef');
    expect(c.env).toEqual([
      { name: 'REGISTRY_NOTIFIER_INGEST_TOKEN', valueFrom: { secretKeyRef: { name: 'notifier-token', key: 'password' } } },
      { name: 'TZ', value: 'UTC' },
    ]);
    expect(c.securityContext).toEqual(RESTRICTED_CONTAINER);
    expect(c.volumeMounts).toContainEqual({ name: 'journal', mountPath: '/var/lib/registry-notifier/journal' });
    expect(podSpec(o).volumes).toContainEqual({ name: 'journal', persistentVolumeClaim: { claimName: 'rn-registry-notifier-journal' } });
    expect((only(o, 'Deployment').spec as { strategy: unknown }).strategy).toEqual({ type: 'Recreate' });
    const pvc = only(o, 'PersistentVolumeClaim');
    expect(pvc.metadata.annotations).toEqual({ 'helm.sh/resource-policy': 'keep', 'backup.example.com/include': 'true' });
    expect(pvc.spec).toEqual({ accessModes: ['ReadWriteOnce'], storageClassName: 'fast-ssd', resources: { requests: { storage: '5Gi' } } });
    const monitor = only(o, 'ServiceMonitor');
    expect(monitor.metadata.labels).toMatchObject({ release: 'prometheus', 'app.kubernetes.io/name': 'registry-notifier' });
    expect(monitor.spec).toEqual({
      jobLabel: 'app.kubernetes.io/name',
      selector: { matchLabels: { 'app.kubernetes.io/name': 'registry-notifier', 'app.kubernetes.io/instance': 'rn' } },
      namespaceSelector: { matchNames: [NS] },
      endpoints: [{
        port: 'metrics', path: '/metrics', interval: '15s', scrapeTimeout: '5s', honorLabels: true,
        relabelings: [{ action: 'replace', sourceLabels: ['__meta_kubernetes_pod_node_name'], targetLabel: 'node' }],
        metricRelabelings: [
          // Always first: our `endpoint` label back from exported_endpoint (the operator's target label collides).
          { sourceLabels: ['exported_endpoint'], regex: '(.+)', targetLabel: 'endpoint', action: 'replace' },
          { regex: 'exported_endpoint', action: 'labeldrop' },
          { action: 'drop', regex: 'nodejs_.*', sourceLabels: ['__name__'] },
        ],
      }],
    });
    expect(only(o, 'PodDisruptionBudget').spec).toEqual({ minAvailable: 1, selector: { matchLabels: { 'app.kubernetes.io/name': 'registry-notifier', 'app.kubernetes.io/instance': 'rn' } } });
    const policy = only(o, 'NetworkPolicy').spec as { policyTypes: string[]; ingress: { ports: { port: string }[]; from: unknown[] }[]; egress: unknown[] };
    expect(policy.policyTypes).toEqual(['Ingress', 'Egress']);
    expect(policy.ingress.map((r) => r.ports[0]!.port)).toEqual(['ingest', 'metrics']);
    expect(policy.ingress[0]!.from).toEqual([
      { podSelector: { matchLabels: { app: 'docker-registry' } } },
      { namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'registry' } } },
    ]);
    expect(policy.egress).toHaveLength(2);
    const service = only(o, 'Service').spec as { type: string; ports: { name: string; port: number; targetPort: string }[] };
    expect(service.type).toBe('LoadBalancer');
    expect(service.ports.map((p) => [p.name, p.port, p.targetPort])).toEqual([['ingest', 80, 'ingest'], ['metrics', 9100, 'metrics']]);
  });

  it('tenancy: namespace: the flag, and a ClusterRole on Namespaces (all, or the watched ones by name) bound to the ServiceAccount', async () => {
    expect(container(defaults.objects).args.some((a) => a.startsWith('--tenancy'))).toBe(false); // deploy/ stays as it is
    const { objects, text } = await render({ namespace: NS, set: { tenancy: 'namespace' } });
    expect(serveConfig(objects)).toMatchObject({ kubernetes: true, tenancy: 'namespace', namespaces: [] });
    expect(container(objects).args).toContain('--tenancy=namespace');
    expect(only(objects, 'ClusterRole', 'rn-registry-notifier').rules).toEqual(EXPECTED_RULES); // unchanged
    expect(only(objects, 'ClusterRole', 'rn-registry-notifier-tenancy').rules).toEqual(tenancyRules());
    const binding = only(objects, 'ClusterRoleBinding', 'rn-registry-notifier-tenancy');
    expect(binding.roleRef).toEqual({ apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'rn-registry-notifier-tenancy' });
    expect(binding.subjects).toEqual([{ kind: 'ServiceAccount', name: 'rn-registry-notifier', namespace: NS }]);
    const rules = text.slice(text.indexOf('name: rn-registry-notifier-tenancy'));
    expect(rules.slice(rules.indexOf('rules:'), rules.indexOf('---'))).toMatch(/^ {2}#[^\n]*\n(?: {2}#[^\n]*\n)* {2}- apiGroups/m);
    const scoped = await render({ namespace: NS, set: { tenancy: 'namespace', watchNamespaces: '[team-a, team-b]' } });
    expect(serveConfig(scoped.objects)).toMatchObject({ tenancy: 'namespace', namespaces: ['team-a', 'team-b'] });
    expect(only(scoped.objects, 'ClusterRole').rules).toEqual(tenancyRules(['team-a', 'team-b']));
    // rbac.create=false grants nothing, tenancy or not; tenancy: none adds nothing.
    const own = await render({ namespace: NS, set: { tenancy: 'namespace', 'rbac.create': false } });
    expect(own.objects.filter((x) => x.kind.includes('Role'))).toEqual([]);
    expect(defaults.objects.filter((x) => x.metadata.name.endsWith('-tenancy'))).toEqual([]);
  });

  it('journal on an emptyDir; PDB maxUnavailable; no token; PDB defaults to maxUnavailable 1', async () => {
    const { objects } = await render({ namespace: NS, set: { 'journal.enabled': true, 'podDisruptionBudget.enabled': true, 'podDisruptionBudget.maxUnavailable': '50%', 'ingestToken.enabled': false } });
    expect(podSpec(objects).volumes).toContainEqual({ name: 'journal', emptyDir: { sizeLimit: '1Gi' } });
    expect((only(objects, 'Deployment').spec as { replicas: number; strategy: { type: string } })).toMatchObject({ replicas: 1, strategy: { type: 'RollingUpdate' } });
    expect(only(objects, 'PodDisruptionBudget').spec).toMatchObject({ maxUnavailable: '50%' });
    expect(objects.some((o) => o.kind === 'Secret')).toBe(false);
    expect(container(objects).env).toBeUndefined();
    expect(serveConfig(objects).ingestToken).toBeUndefined();
    const plain = await render({ namespace: NS, set: { 'podDisruptionBudget.enabled': true } });
    expect(only(plain.objects, 'PodDisruptionBudget').spec).toMatchObject({ maxUnavailable: 1 });
  });

  it('database from an existing Secret: replicas, the URL from the Secret, the pod name as replica id, the Lease named after the release', async () => {
    const { objects, text } = await render({ namespace: NS, valuesFiles: [REPLICAS_EXAMPLE] });
    const deployment = only(objects, 'Deployment').spec as { replicas: number; strategy: unknown };
    expect(deployment.replicas).toBe(3);
    // A rollout never has fewer ready pods than replicas: a new pod is ready before an old one is stopped.
    expect(deployment.strategy).toEqual({ type: 'RollingUpdate', rollingUpdate: { maxSurge: 1, maxUnavailable: 0 } });
    const c = container(objects);
    expect(c.env).toEqual([
      { name: 'REGISTRY_NOTIFIER_INGEST_TOKEN', valueFrom: { secretKeyRef: { name: 'rn-registry-notifier-ingest-token', key: 'token' } } },
      { name: 'REGISTRY_NOTIFIER_DATABASE_URL', valueFrom: { secretKeyRef: { name: 'registry-notifier-database', key: 'url' } } },
      { name: 'REGISTRY_NOTIFIER_REPLICA_ID', valueFrom: { fieldRef: { fieldPath: 'metadata.name' } } },
      { name: 'REGISTRY_NOTIFIER_LEADER_ELECTION_LEASE', value: `${NS}/rn-registry-notifier` },
    ]);
    // What the product makes of it: a database, no journal, this pod's name, the release's Lease, the default lease.
    expect(serveConfig(objects)).toMatchObject({
      kubernetes: true, databaseUrl: FROM_SECRET_URL, queueDir: undefined, replicaId: POD_NAME,
      leaderElectionLease: { namespace: NS, name: 'rn-registry-notifier' }, leaseDurationMs: 15_000, statusWritesPerSecond: 20,
    });
    // The chart creates no Secret for it (the user's), and nothing in the output holds a database URL.
    expect(objects.filter((o) => o.kind === 'Secret').map((o) => o.metadata.name)).toEqual(['rn-registry-notifier-ingest-token']);
    expect(text).not.toContain('postgres://');
    // The leader election's Role in the release namespace, bound to the ServiceAccount; every rule commented.
    const role = only(objects, 'Role', 'rn-registry-notifier-leader-election');
    expect(role.metadata.namespace).toBe(NS);
    expect(role.rules).toEqual(leaderElectionRules('rn-registry-notifier'));
    const roleText = text.slice(text.indexOf('# Source: registry-notifier/templates/leader-election-rbac.yaml'));
    const rules = roleText.slice(roleText.indexOf('rules:'), roleText.indexOf('---'));
    expect(rules.match(/^ {2}- apiGroups/gm)).toHaveLength(2);
    expect(rules.match(/^ {2}#[^\n]*\n(?: {2}#[^\n]*\n)* {2}- apiGroups/gm)).toHaveLength(2);
    const binding = only(objects, 'RoleBinding', 'rn-registry-notifier-leader-election');
    expect(binding.metadata.namespace).toBe(NS);
    expect(binding.roleRef).toEqual({ apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: 'rn-registry-notifier-leader-election' });
    expect(binding.subjects).toEqual([{ kind: 'ServiceAccount', name: 'rn-registry-notifier', namespace: NS }]);
    // The cluster-wide rules stay exactly the controller's: nothing about Leases outside the release namespace.
    expect(only(objects, 'ClusterRole').rules).toEqual(EXPECTED_RULES);
    // Drains take one replica at a time; replicas prefer different nodes.
    expect(only(objects, 'PodDisruptionBudget').spec).toEqual({ maxUnavailable: 1, selector: { matchLabels: SELECTOR } });
    expect((podSpec(objects) as PodSpec & { topologySpreadConstraints: unknown }).topologySpreadConstraints).toEqual([
      { maxSkew: 1, topologyKey: 'kubernetes.io/hostname', whenUnsatisfiable: 'ScheduleAnyway', labelSelector: { matchLabels: SELECTOR } },
    ]);
  });

  it('database.url: a Secret the chart creates holds it, the pod reads it from there; lease duration and status rate reach the flags', async () => {
    const url = 'postgres://notifier:s3cr3t-p%40ss@postgres.db.svc:5432/notifier?sslmode=require';
    const { objects } = await render({ namespace: NS, set: { 'database.url': url, replicaCount: 2, 'database.leaseDuration': '30s', statusRate: 5 } });
    const secret = only(objects, 'Secret', 'rn-registry-notifier-database') as Manifest & { data: Record<string, string> };
    expect(secret.metadata.namespace).toBe(NS);
    expect(Object.keys(secret.data)).toEqual(['url']);
    expect(Buffer.from(secret.data.url!, 'base64').toString()).toBe(url);
    // Never inline: neither the URL nor its password (in any encoding) is in the Deployment.
    const deployment = JSON.stringify(only(objects, 'Deployment'));
    for (const leak of ['s3cr3t', 'postgres://', secret.data.url!]) expect(deployment).not.toContain(leak);
    expect(container(objects).env).toContainEqual({ name: 'REGISTRY_NOTIFIER_DATABASE_URL', valueFrom: { secretKeyRef: { name: 'rn-registry-notifier-database', key: 'url' } } });
    expect(serveConfig(objects)).toMatchObject({ leaseDurationMs: 30_000, statusWritesPerSecond: 5, leaderElectionLease: { namespace: NS, name: 'rn-registry-notifier' } });
    // Without a database: no database Secret, no lease flags or variables, no leader election Role.
    const { objects: plain } = await render({ namespace: NS, set: { statusRate: 5 } });
    expect(plain.some((o) => o.kind === 'Role' || (o.kind === 'Secret' && o.metadata.name.endsWith('-database')))).toBe(false);
    expect(container(plain).args.some((a) => a.startsWith('--lease-duration'))).toBe(false);
    expect(container(plain).env?.map((e) => e.name)).toEqual(['REGISTRY_NOTIFIER_INGEST_TOKEN']);
    expect(serveConfig(plain)).toMatchObject({ databaseUrl: undefined, statusWritesPerSecond: 5 });
    // rbac.create=false: the leader election Role is the user's job too.
    const { objects: own } = await render({ namespace: NS, set: { 'database.existingSecret.name': 'pg', 'rbac.create': false } });
    expect(own.some((o) => o.kind.endsWith('Role') || o.kind.endsWith('RoleBinding'))).toBe(false);
  });

  it('endpointHistograms: false reaches --endpoint-histograms=false (one histogram of each for the pod); true is the default', async () => {
    expect(container(defaults.objects).args).toContain('--endpoint-histograms=true');
    const { objects } = await render({ namespace: NS, set: { endpointHistograms: false } });
    expect(container(objects).args).toContain('--endpoint-histograms=false');
    expect(container(objects).args.filter((a) => a.startsWith('--endpoint-histograms'))).toHaveLength(1);
    expect(serveConfig(objects)).toMatchObject({ endpointHistograms: false });
  });

  it('topologySpreadConstraints: the default prefers one pod per node of this release; a list of your own replaces it; [] turns it off', async () => {
    const spread = (objects: Manifest[]): unknown => (podSpec(objects) as PodSpec & { topologySpreadConstraints?: unknown }).topologySpreadConstraints;
    expect(spread(defaults.objects)).toEqual([{ maxSkew: 1, topologyKey: 'kubernetes.io/hostname', whenUnsatisfiable: 'ScheduleAnyway', labelSelector: { matchLabels: SELECTOR } }]);
    const zones = await render({ namespace: NS, set: { topologySpreadConstraints: '[{maxSkew: 2, topologyKey: topology.kubernetes.io/zone, whenUnsatisfiable: DoNotSchedule}, {maxSkew: 1, topologyKey: kubernetes.io/hostname, whenUnsatisfiable: ScheduleAnyway, labelSelector: {matchLabels: {team: a}}}]' } });
    expect(spread(zones.objects)).toEqual([
      { maxSkew: 2, topologyKey: 'topology.kubernetes.io/zone', whenUnsatisfiable: 'DoNotSchedule', labelSelector: { matchLabels: SELECTOR } },
      { maxSkew: 1, topologyKey: 'kubernetes.io/hostname', whenUnsatisfiable: 'ScheduleAnyway', labelSelector: { matchLabels: { team: 'a' } } },
    ]);
    expect(spread((await render({ namespace: NS, set: { topologySpreadConstraints: '[]' } })).objects)).toBeUndefined();
  });

  it('database.migrationJob: a pre-install/pre-upgrade hook Job runs `migrate` with the URL from a Secret, outside the Service\'s selector', async () => {
    const url = 'postgres://notifier:s3cr3t@postgres.db.svc:5432/notifier';
    const { objects } = await render({ namespace: NS, set: { 'database.url': url, 'database.migrationJob.enabled': true, 'database.migrationJob.backoffLimit': 5 } });
    const job = only(objects, 'Job', 'rn-registry-notifier-migrate') as Manifest & { spec: { backoffLimit: number; activeDeadlineSeconds: number; template: { metadata: { labels: Record<string, string> }; spec: PodSpec & { restartPolicy: string; automountServiceAccountToken: boolean } } } };
    const hook = only(objects, 'Secret', 'rn-registry-notifier-migrate') as Manifest & { data: Record<string, string> };
    // The hook copy of the Secret comes first (the chart's own Secret does not exist yet before install).
    expect(hook.metadata.annotations).toEqual({ 'helm.sh/hook': 'pre-install,pre-upgrade', 'helm.sh/hook-weight': '-1', 'helm.sh/hook-delete-policy': 'before-hook-creation,hook-succeeded' });
    expect(job.metadata.annotations).toEqual({ 'helm.sh/hook': 'pre-install,pre-upgrade', 'helm.sh/hook-weight': '0', 'helm.sh/hook-delete-policy': 'before-hook-creation,hook-succeeded' });
    expect(Buffer.from(hook.data.url!, 'base64').toString()).toBe(url);
    expect(job.spec).toMatchObject({ backoffLimit: 5, activeDeadlineSeconds: 240 });
    const pod = job.spec.template.spec;
    expect(pod).toMatchObject({ restartPolicy: 'Never', automountServiceAccountToken: false });
    const migrate = pod.containers[0]!;
    expect(migrate.env).toEqual([{ name: 'REGISTRY_NOTIFIER_DATABASE_URL', valueFrom: { secretKeyRef: { name: 'rn-registry-notifier-migrate', key: 'url' } } }]);
    expect(JSON.stringify(job)).not.toContain('s3cr3t');
    expect(migrate.securityContext).toEqual(RESTRICTED_CONTAINER);
    // The product reads it as `migrate` with that URL.
    expect(parseCommand(migrate.args, envOf(migrate))).toEqual({ command: 'migrate', databaseUrl: FROM_SECRET_URL });
    // Its pod is not one of the Deployment's: the Service would send it registry traffic.
    const selects = (selector: Record<string, string>, labels: Record<string, string>): boolean => Object.entries(selector).every(([k, v]) => labels[k] === v);
    expect(selects((only(objects, 'Service').spec as { selector: Record<string, string> }).selector, job.spec.template.metadata.labels)).toBe(false);
    expect(job.spec.template.metadata.labels).toMatchObject({ 'app.kubernetes.io/name': 'registry-notifier-migrate', 'app.kubernetes.io/instance': 'rn', 'app.kubernetes.io/component': 'migration' });
    // With an existing Secret the Job reads it directly: no hook copy.
    const existing = await render({ namespace: NS, set: { 'database.existingSecret.name': 'pg', 'database.existingSecret.key': 'DATABASE_URL', 'database.migrationJob.enabled': true } });
    expect(existing.objects.filter((o) => o.kind === 'Secret').map((o) => o.metadata.name)).toEqual(['rn-registry-notifier-ingest-token']);
    const fromExisting = (only(existing.objects, 'Job').spec as { template: { spec: PodSpec } }).template.spec.containers[0]!;
    expect(fromExisting.env).toEqual([{ name: 'REGISTRY_NOTIFIER_DATABASE_URL', valueFrom: { secretKeyRef: { name: 'pg', key: 'DATABASE_URL' } } }]);
    // Off by default.
    expect(objects.length - (await render({ namespace: NS, set: { 'database.url': url } })).objects.length).toBe(2);
  });

  it('database with the longest names: the Lease is the full name, the Job name fits a label (63), the Role is named after both', async () => {
    const release = 'a-very-long-release-name-that-helm-still-accepts-53ch';
    const { objects } = await render({ release, namespace: NS, set: { 'database.existingSecret.name': 'pg', 'database.migrationJob.enabled': true, replicaCount: 2 } });
    const fullname = only(objects, 'Deployment').metadata.name;
    expect(serveConfig(objects).leaderElectionLease).toEqual({ namespace: NS, name: fullname });
    expect(only(objects, 'Role').rules).toEqual(leaderElectionRules(fullname));
    expect(only(objects, 'Role').metadata.name).toBe(`${fullname}-leader-election`);
    const job = only(objects, 'Job');
    expect(job.metadata.name.length).toBeLessThanOrEqual(63);
    expect(job.metadata.name).toMatch(/[a-z0-9]-migrate$/);
    for (const o of objects.slice(1)) for (const value of Object.values(o.metadata.labels ?? {})) expect(value.length, `${o.kind} label ${value}`).toBeLessThanOrEqual(63);
  });

  it('names: fullname is truncated to 63 characters without a trailing "-"; a release containing the chart name is not repeated', async () => {
    const release = 'a-very-long-release-name-that-helm-still-accepts-53ch';
    expect(release).toHaveLength(53); // Helm's longest release name
    const long = await render({ release, namespace: NS });
    for (const o of long.objects.slice(1)) {
      expect(o.metadata.name.length, `${o.kind} ${o.metadata.name}`).toBeLessThanOrEqual(o.kind === 'Secret' ? 253 : 63);
      for (const value of Object.values(o.metadata.labels ?? {})) expect(value.length).toBeLessThanOrEqual(63);
    }
    // "<53 characters>-registry-notifier" cut at 63 ends in "-registry-"; the trailing "-" goes.
    expect(only(long.objects, 'Deployment').metadata.name).toBe(`${release}-registry`);
    const override = await render({ namespace: NS, set: { fullnameOverride: 'x'.repeat(70) } });
    expect(only(override.objects, 'Service').metadata.name).toBe('x'.repeat(63));
    const dash = await render({ namespace: NS, set: { fullnameOverride: `${'x'.repeat(62)}-suffix` } });
    expect(only(dash.objects, 'Deployment').metadata.name).toBe('x'.repeat(62));
    const same = await render({ release: 'registry-notifier', namespace: NS });
    expect(only(same.objects, 'Service').metadata.name).toBe('registry-notifier');
    const named = await render({ namespace: NS, set: { nameOverride: 'notifier' } });
    expect(only(named.objects, 'Service').metadata.name).toBe('rn-notifier');
    expect(only(named.objects, 'Service').metadata.labels?.['app.kubernetes.io/name']).toBe('notifier');
  });

  it('mutually exclusive or incomplete options fail at render time and say exactly what to set', async () => {
    const cases: [Record<string, string | number | boolean>, string][] = [
      [{ 'ingestToken.enabled': false, 'ingestToken.existingSecret': 'x' }, 'ingestToken.existingSecret is set but ingestToken.enabled is false: set ingestToken.enabled=true'],
      [{ 'journal.persistence.enabled': true }, 'journal.persistence.enabled needs the journal: set journal.enabled=true'],
      [{ 'journal.enabled': true, 'journal.persistence.existingClaim': 'claim' }, 'set journal.persistence.enabled=true'],
      // Several replicas need the shared database, whatever else is set (a journal on a claim, on an emptyDir, or none).
      [{ replicaCount: 2 }, 'replicaCount=2 needs a shared database: without one every pod keeps its own queues'],
      [{ 'journal.enabled': true, replicaCount: 3 }, 'Set database.existingSecret.name (a Secret holding a postgres:// URL) or database.url, or set replicaCount=1'],
      [{ 'journal.enabled': true, 'journal.persistence.enabled': true, replicaCount: 2 }, 'replicaCount=2 needs a shared database'],
      [{ 'database.url': 'postgres://a:b@db/x', 'database.existingSecret.name': 'pg' }, 'database.url and database.existingSecret.name are mutually exclusive: set only one of them'],
      [{ 'database.existingSecret.name': 'pg', 'journal.enabled': true }, 'journal.enabled cannot be combined with a database (database.url or database.existingSecret.name): with a database the queue lives there'],
      [{ 'database.url': 'postgres://a:b@db/x', 'journal.enabled': true, 'journal.persistence.enabled': true }, 'Set journal.enabled=false, or remove the database'],
      [{ 'database.migrationJob.enabled': true }, 'database.migrationJob.enabled needs a database: set database.existingSecret.name or database.url'],
      [{ 'database.existingSecret.name': 'pg', 'database.leaseDuration': '500ms' }, 'database.leaseDuration=500ms is shorter than 1s, which registry-notifier refuses: set database.leaseDuration to 1s or more'],
      [{ 'podDisruptionBudget.enabled': true, 'podDisruptionBudget.minAvailable': 1, 'podDisruptionBudget.maxUnavailable': 1 }, 'mutually exclusive: set only one of them'],
      [{ 'serviceAccount.create': false }, 'set serviceAccount.name to an existing ServiceAccount'],
      [{ 'image.repository': '' }, 'image.repository is required: set image.repository'],
    ];
    for (const [set, message] of cases) {
      const result = await tryRender({ namespace: NS, set });
      expect(result.ok, JSON.stringify(set)).toBe(false);
      if (!result.ok) expect(result.error, JSON.stringify(set)).toContain(message);
    }
    const flags = await tryRender({ namespace: NS, set: { extraArgs: '[--log-level=debug, --namespaces=a]' } });
    expect(flags.ok).toBe(false);
    if (!flags.ok) expect(flags.error).toContain('extraArgs must not contain --namespaces, which the chart manages: set watchNamespaces instead');
    // The database's flags and their environment twins are the chart's too: an inline URL would put the password
    // into the pod spec, and a second replica id or Lease would break the election.
    const managed: [Record<string, string>, string][] = [
      [{ extraArgs: '[--database-url=postgres://a:b@db/x]' }, 'extraArgs must not contain --database-url, which the chart manages: set database.existingSecret.name or database.url instead'],
      [{ extraArgs: '[--replica-id=x]' }, 'extraArgs must not contain --replica-id, which the chart manages'],
      [{ extraArgs: '[--leader-election-lease=a/b]' }, 'extraArgs must not contain --leader-election-lease, which the chart manages'],
      [{ extraArgs: '[--lease-duration=1m]' }, 'extraArgs must not contain --lease-duration, which the chart manages: set database.leaseDuration instead'],
      [{ extraArgs: '[--status-rate=5]' }, 'extraArgs must not contain --status-rate, which the chart manages: set statusRate instead'],
      [{ extraArgs: '[--endpoint-histograms=false]' }, 'extraArgs must not contain --endpoint-histograms, which the chart manages: set endpointHistograms instead'],
      [{ extraEnv: '[{name: REGISTRY_NOTIFIER_ENDPOINT_HISTOGRAMS, value: "false"}]' }, 'extraEnv must not set REGISTRY_NOTIFIER_ENDPOINT_HISTOGRAMS, which the chart manages: set endpointHistograms instead'],
      // The RBAC tenancy needs follows the value, so the flag must too.
      [{ extraArgs: '[--tenancy=namespace]' }, 'extraArgs must not contain --tenancy, which the chart manages: set tenancy (the RBAC it needs follows it) instead'],
      [{ extraEnv: '[{name: REGISTRY_NOTIFIER_TENANCY, value: namespace}]' }, 'extraEnv must not set REGISTRY_NOTIFIER_TENANCY, which the chart manages: set tenancy'],
      [{ extraEnv: '[{name: REGISTRY_NOTIFIER_DATABASE_URL, value: "postgres://a:b@db/x"}]' }, 'extraEnv must not set REGISTRY_NOTIFIER_DATABASE_URL, which the chart manages: set database.existingSecret.name or database.url instead'],
      [{ extraEnv: '[{name: REGISTRY_NOTIFIER_REPLICA_ID, value: x}]' }, 'extraEnv must not set REGISTRY_NOTIFIER_REPLICA_ID'],
      [{ extraEnv: '[{name: REGISTRY_NOTIFIER_INGEST_TOKEN, value: x}]' }, 'extraEnv must not set REGISTRY_NOTIFIER_INGEST_TOKEN, which the chart manages: set ingestToken.existingSecret instead'],
    ];
    for (const [set, message] of managed) {
      const result = await tryRender({ namespace: NS, set });
      expect(result.ok, JSON.stringify(set)).toBe(false);
      if (!result.ok) expect(result.error, JSON.stringify(set)).toContain(message);
    }
    // A ServiceAccount of your own works once named.
    const own = await render({ namespace: NS, set: { 'serviceAccount.create': false, 'serviceAccount.name': 'mine' } });
    expect(own.objects.some((o) => o.kind === 'ServiceAccount')).toBe(false);
    expect(podSpec(own.objects).serviceAccountName).toBe('mine');
    expect(only(own.objects, 'ClusterRoleBinding').subjects).toEqual([{ kind: 'ServiceAccount', name: 'mine', namespace: NS }]);
  });

  it('helpers: the token is kept from the Secret in the cluster (lookup), PDB apiVersion follows the Kubernetes version', async () => {
    const probe = `apiVersion: v1
kind: ConfigMap
metadata:
  name: probe
data:
  kept: {{ include "registry-notifier.ingestTokenData" (dict "existing" (dict "data" (dict "token" "a2VwdC10b2tlbg=="))) | quote }}
  fresh: {{ include "registry-notifier.ingestTokenData" (dict "existing" (dict)) | quote }}
  pdb1202: {{ include "registry-notifier.pdbApiVersion" (dict "Capabilities" (dict "KubeVersion" (dict "Version" "v1.20.2"))) | quote }}
  pdb1210: {{ include "registry-notifier.pdbApiVersion" (dict "Capabilities" (dict "KubeVersion" (dict "Version" "v1.21.0"))) | quote }}
  pdbEks: {{ include "registry-notifier.pdbApiVersion" (dict "Capabilities" (dict "KubeVersion" (dict "Version" "v1.29.4-eks-036c24b"))) | quote }}
`;
    const { objects } = await render({ namespace: NS, extraTemplates: { 'zz-probe.yaml': probe } });
    const data = only(objects, 'ConfigMap', 'probe').data as Record<string, string>;
    expect(data.kept).toBe('a2VwdC10b2tlbg==');
    expect(Buffer.from(data.fresh!, 'base64').toString()).toMatch(/^[A-Za-z0-9]{48}$/);
    expect([data.pdb1202, data.pdb1210, data.pdbEks]).toEqual(['policy/v1beta1', 'policy/v1', 'policy/v1']);
  });

  it('NOTES.txt prints the Distribution notifications snippet with the ingest Service URL and how to read the token', async () => {
    const text = await notes({});
    const snippet = text.slice(text.indexOf('notifications:'), text.indexOf('\n\n', text.indexOf('notifications:')));
    expect(parse(snippet)).toEqual({
      notifications: {
        endpoints: [{ name: 'registry-notifier', url: 'http://rn-registry-notifier.registry.svc:8080/events', headers: { Authorization: ['Bearer <TOKEN>'] }, timeout: '5s', threshold: 5, backoff: '1s' }],
      },
    });
    expect(text).toContain("kubectl -n registry get secret rn-registry-notifier-ingest-token -o jsonpath='{.data.token}' | base64 -d");
    expect(text).toContain('kubectl apply --server-side -f crds/');
    expect(text).toContain('every namespace');
    const existing = await notes({ 'ingestToken.existingSecret': 'mine', 'ingestToken.existingSecretKey': 'pw', 'service.ports.ingest': '80' });
    expect(existing).toContain("kubectl -n registry get secret mine -o jsonpath='{.data.pw}' | base64 -d");
    expect(existing).toContain('url: http://rn-registry-notifier.registry.svc:80/events');
    expect(text).not.toContain('replay');
    // The example endpoint is a complete heredoc (flush left, so the shell finds its end) for the release namespace.
    expect(heredoc(text)).toMatchObject({ kind: 'NotificationEndpoint', metadata: { name: 'ci-pushes', namespace: NS } });
    expect(heredoc(await notes({ watchNamespaces: '[team-a, team-b]' }))).toMatchObject({ metadata: { namespace: 'team-a' } });
    const journaled = await notes({ 'journal.enabled': true });
    expect(journaled).toContain('kubectl -n registry exec deploy/rn-registry-notifier -- /nodejs/bin/node /app/dist/main.js replay --endpoint <namespace>/<name>');
    // With a database: which Secret, and how to see the replica that writes status.
    expect(text).not.toContain('get lease');
    const replicated = await notes({ 'database.existingSecret.name': 'pg', replicaCount: '3' });
    expect(replicated).toContain('3 replica(s) share the PostgreSQL database of the Secret pg');
    expect(replicated).toContain("kubectl -n registry get lease rn-registry-notifier -o jsonpath='{.spec.holderIdentity}'");
    // With tenancy, how a cluster administrator grants the example's namespace its repositories.
    expect(text).not.toContain('registry-notifier.io/repositories');
    expect(await notes({ tenancy: 'namespace' })).toContain("kubectl annotate namespace registry registry-notifier.io/repositories='registry/*,shared/**'");
    expect(await notes({ tenancy: 'namespace', watchNamespaces: '[team-a, team-b]' })).toContain("kubectl annotate namespace team-a registry-notifier.io/repositories='team-a/*,shared/**'");
    const open = await notes({ 'ingestToken.enabled': false });
    expect(open).not.toContain('Authorization');
    expect(open).toContain('WARNING: ingestToken.enabled is false');
  });

  it('deploy/ equals the chart defaults (release registry-notifier in namespace registry-notifier), minus Helm\'s labels', async () => {
    const chart = await render({ release: 'registry-notifier', namespace: 'registry-notifier' });
    const deploy = await kustomize(join(REPO, 'deploy'));
    const key = (o: Manifest): string => `${o.kind}/${o.metadata.name}`;
    const helmOnly = new Set(['helm.sh/chart', 'app.kubernetes.io/managed-by']);
    const strip = (o: Manifest): unknown => JSON.parse(JSON.stringify(o, (k, v: unknown) =>
      k === 'labels' && v && typeof v === 'object' ? Object.fromEntries(Object.entries(v).filter(([l]) => !helmOnly.has(l))) : v));
    // The chart's Secret is generated; deploy/ asks the user to create it (see deploy/kustomization.yaml).
    expect(chart.objects.map(key).filter((k) => !k.startsWith('Secret/')).sort()).toEqual(deploy.map(key).filter((k) => k !== 'Namespace/registry-notifier').sort());
    for (const object of deploy.filter((o) => o.kind !== 'Namespace')) {
      expect(strip(object), key(object)).toEqual(strip(only(chart.objects, object.kind, object.metadata.name)));
    }
    expect(readFileSync(join(REPO, 'deploy/crds/registry-notifier.io_notificationendpoints.yaml'), 'utf8')).toBe(readFileSync(join(REPO, 'crds/registry-notifier.io_notificationendpoints.yaml'), 'utf8'));
  });
});

describe('chart: files', () => {
  it('the chart\'s crds/ are identical to the top-level crds/', () => {
    const files = (dir: string): string[] => readdirSync(dir).filter((f) => f.endsWith('.yaml')).sort();
    expect(files(join(CHART, 'crds'))).toEqual(files(join(REPO, 'crds')));
    for (const file of files(join(REPO, 'crds'))) {
      expect(readFileSync(join(CHART, 'crds', file), 'utf8'), file).toBe(readFileSync(join(REPO, 'crds', file), 'utf8'));
    }
  });
});

describe('chart: values.schema.json', () => {
  const check = (override: Record<string, unknown>): string[] =>
    validate(mergeValues(defaultValues(), override), SCHEMA).map((e) => `${e.path}: ${e.message}`);

  it('accepts values.yaml, the every-option-on file and the database file', () => {
    expect(check({})).toEqual([]);
    expect(check(parse(readFileSync(ALL_ON, 'utf8')) as Record<string, unknown>)).toEqual([]);
    expect(check(parse(readFileSync(DATABASE_ON, 'utf8')) as Record<string, unknown>)).toEqual([]);
  });

  it('refuses wrong types, unknown keys (at any depth) and out-of-range values, naming the path', () => {
    const cases: [Record<string, unknown>, string][] = [
      [{ replicaCount: '2' }, '$.replicaCount: expected integer, got string'],
      [{ replicas: 2 }, '$.replicas: unknown key "replicas"'],
      [{ image: { tga: 'x' } }, '$.image.tga: unknown key "tga"'],
      [{ securityContext: { readOnlyRootFileSystem: true } }, '$.securityContext.readOnlyRootFileSystem: unknown key'],
      [{ logLevel: 'verbose' }, '$.logLevel: "verbose" is not one of'],
      [{ statusInterval: '10' }, '$.statusInterval: "10" does not match'],
      [{ service: { ports: { ingest: 70000 } } }, '$.service.ports.ingest: 70000 is above the maximum 65535'],
      [{ watchNamespaces: ['Team_A'] }, '$.watchNamespaces[0]: "Team_A" does not match'],
      [{ watchNamespaces: ['a', 'a'] }, '$.watchNamespaces: items are not unique'],
      [{ podDisruptionBudget: { minAvailable: 'half' } }, '$.podDisruptionBudget.minAvailable: "half" does not match'],
      [{ resources: { limits: { memory: 'lots' } } }, '$.resources.limits.memory: "lots" does not match'],
      [{ extraEnv: [{ value: 'x' }] }, '$.extraEnv[0]: "name" is required'],
      [{ maxPending: 0 }, '$.maxPending: 0 is below the minimum 1'],
      [{ ingestToken: { enabled: 'yes' } }, '$.ingestToken.enabled: expected boolean, got string'],
      [{ serviceMonitor: { interval: 30 } }, '$.serviceMonitor.interval: expected string, got integer'],
      [{ extraArgs: ['serve'] }, '$.extraArgs[0]: "serve" does not match'],
      [{ statusRate: 0 }, '$.statusRate: 0 is below the minimum 1'],
      [{ endpointHistograms: 'false' }, '$.endpointHistograms: expected boolean, got string'],
      [{ tenancy: 'namespaces' }, '$.tenancy: "namespaces" is not one of'],
      [{ database: { urll: 'postgres://a:b@db/x' } }, '$.database.urll: unknown key "urll"'],
      [{ database: { existingSecret: { nam: 'pg' } } }, '$.database.existingSecret.nam: unknown key "nam"'],
      [{ database: { existingSecret: 'pg' } }, '$.database.existingSecret: expected object, got string'],
      [{ database: { existingSecret: { name: 'pg', key: '' } } }, '$.database.existingSecret.key: must NOT have fewer than 1 characters'],
      [{ database: { url: 'mysql://a:b@db/x' } }, '$.database.url: "mysql://a:b@db/x" does not match'],
      [{ database: { leaseDuration: '15' } }, '$.database.leaseDuration: "15" does not match'],
      [{ database: { migrationJob: { enabled: 'yes' } } }, '$.database.migrationJob.enabled: expected boolean, got string'],
      [{ database: { migrationJob: { ttl: 60 } } }, '$.database.migrationJob.ttl: unknown key "ttl"'],
    ];
    for (const [override, message] of cases) expect(check(override).join('\n'), JSON.stringify(override)).toContain(message);
  });

  it('documents every value: a comment with an example right above it in values.yaml', () => {
    expect(undocumentedValues(VALUES_TEXT, SCHEMA)).toEqual([]);
  });
});

describe.skipIf(!assets || noRenderer)('chart: every rendered object passes a server-side dry run (kube-apiserver 1.20)', () => {
  let env: StartedCluster;
  let client: DryRunClient;
  let serverVersion: string;

  beforeAll(async () => {
    await renderBoth();
    const started = performance.now();
    env = await startCluster({ crds: join(CHART, 'crds') }); // created for real: the chart's crds/ folder is accepted as is
    if (SERVICE_MONITOR_CRD.path !== undefined) await applyManifests(env.kc, readFileSync(SERVICE_MONITOR_CRD.path, 'utf8'));
    client = new DryRunClient(env.cluster);
    for (const name of [NS, 'team-a', 'team-b', 'monitoring']) await client.create({ apiVersion: 'v1', kind: 'Namespace', metadata: { name } });
    serverVersion = String((await client.request('GET', '/version')).body.gitVersion);
    console.log(`[measure] chart dry-run cluster (${serverVersion}) up with CRDs in ${(performance.now() - started).toFixed(0)} ms`);
  });

  afterAll(() => env?.stop(() => client?.close()));

  /** Dry-runs every object except the CRDs (installed above); each must be accepted and kept whole. */
  const dryRunAll = async (objects: Manifest[]): Promise<string[]> => {
    const problems: string[] = [];
    for (const object of objects.filter((o) => o.kind !== 'CustomResourceDefinition')) {
      const sent = object.kind === 'PodDisruptionBudget' ? { ...object, apiVersion: pdbApiVersion(serverVersion) } : object;
      const result = await client.dryRunCreate(sent);
      if (result.status !== 201) problems.push(`${result.object}: ${result.status} ${result.message}`);
      else for (const path of droppedFields(sent, result.stored)) problems.push(`${result.object}: the server dropped or changed ${path}`);
    }
    return problems;
  };

  it('defaults', async () => {
    expect(await dryRunAll(defaults.objects)).toEqual([]);
  });

  it.skipIf(noServiceMonitorCrd)('every option on (namespaced RBAC in two namespaces, ServiceMonitor, PDB, NetworkPolicy, journal claim)', async () => {
    need(SERVICE_MONITOR_CRD);
    expect(allOn.objects.some((o) => o.kind === 'ServiceMonitor')).toBe(true);
    expect(await dryRunAll(allOn.objects)).toEqual([]);
  });

  it('journal on emptyDir, PDB maxUnavailable, no token; and the longest names', async () => {
    const variant = await render({ namespace: NS, set: { 'journal.enabled': true, 'podDisruptionBudget.enabled': true, 'podDisruptionBudget.maxUnavailable': '50%', 'ingestToken.enabled': false } });
    expect(await dryRunAll(variant.objects)).toEqual([]);
    const long = await render({ release: 'a-very-long-release-name-that-helm-still-accepts-53ch', namespace: NS });
    expect(await dryRunAll(long.objects)).toEqual([]);
  });

  it('database mode: every database option on (chart Secret, migration Job and its hook Secret, leader election Role, PDB), and the replicas example', async () => {
    const on = await render({ namespace: NS, valuesFiles: [DATABASE_ON] });
    expect(on.objects.map((o) => o.kind).sort()).toEqual(expect.arrayContaining(['Job', 'PodDisruptionBudget', 'Role', 'RoleBinding', 'Secret', 'Secret']));
    expect(await dryRunAll(on.objects)).toEqual([]);
    const example = await render({ release: 'registry-notifier', namespace: NS, valuesFiles: [REPLICAS_EXAMPLE] });
    expect(await dryRunAll(example.objects)).toEqual([]);
    const long = await render({ release: 'a-very-long-release-name-that-helm-still-accepts-53ch', namespace: NS, valuesFiles: [DATABASE_ON] });
    expect(await dryRunAll(long.objects)).toEqual([]);
  });

  it('the NotificationEndpoint NOTES.txt suggests is accepted by the CRD', async () => {
    const result = await client.dryRunCreate(heredoc(await notes({})));
    expect(result.status, result.message).toBe(201);
  });

  it('a broken manifest is refused (the dry run really validates)', async () => {
    const deployment = structuredClone(only(defaults.objects, 'Deployment')) as Manifest & { spec: { template: { spec: PodSpec } } };
    deployment.spec.template.spec.containers[0]!.ports[0]!.name = 'ingest_port_name_too_long';
    expect((await client.dryRunCreate(deployment)).status).toBe(422);
    const typo = structuredClone(only(defaults.objects, 'Deployment')) as Manifest & { spec: { template: { spec: { containers: Record<string, unknown>[] } } } };
    typo.spec.template.spec.containers[0]!.securityContext = { readOnlyRootFileSystem: true };
    const result = await client.dryRunCreate(typo);
    expect(result.status).toBe(201); // 1.20 prunes unknown fields silently ...
    expect(droppedFields(typo, result.stored)).toContain('.spec.template.spec.containers[0].securityContext.readOnlyRootFileSystem'); // ... which this catches
  });
});

/** NOTES.txt as Helm prints it after install (rendered through a probe template that includes it). */
async function notes(set: Record<string, string | boolean>): Promise<string> {
  const probe = 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: notes\ndata:\n  text: {{ include "registry-notifier/templates/NOTES.txt" . | toJson }}\n';
  const { objects } = await render({ namespace: NS, set, extraTemplates: { 'zz-notes.yaml': probe } });
  return (only(objects, 'ConfigMap', 'notes').data as { text: string }).text;
}

/** The document of the `kubectl apply -f - <<'YAML' ... YAML` heredoc in the NOTES. */
function heredoc(text: string): Manifest {
  const match = /^kubectl apply -f - <<'YAML'\n([\s\S]*?)\nYAML$/m.exec(text);
  if (!match) throw new Error(`no complete heredoc in NOTES:\n${text}`);
  return parse(match[1]!) as Manifest;
}

/** The PodDisruptionBudget API the chart picks for a server version (registry-notifier.pdbApiVersion; tested above). */
function pdbApiVersion(gitVersion: string): string {
  const [major = 0, minor = 0] = gitVersion.replace(/^v/, '').split('.').map((n) => Number.parseInt(n, 10));
  return major > 1 || minor >= 21 ? 'policy/v1' : 'policy/v1beta1';
}
