// The RBAC rules shipped in deploy/ (and the chart) are really enough and really least. The product runs in-process
// against a real kube-apiserver 1.20 as a ServiceAccount (a static token authenticating as
// system:serviceaccount:<ns>:<sa> with the ServiceAccount groups), bound exactly as the manifests bind it:
// - enough: the whole NotificationEndpoint lifecycle works (Ready=True in status, a Secret-sourced header reaches
//   the receiver, an Event is recorded, delete removes it) and the controller logs no API error;
// - least: the effective permissions are exactly the four rules, and calls outside them are refused (403);
// - each rule matters: without the status rule the status never appears;
// - the chart's namespaced Roles suffice with --namespaces and give nothing outside those namespaces.
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { AuthorizationV1Api, CoreV1Api, CustomObjectsApi, type KubeConfig } from '@kubernetes/client-node';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { NOTIFICATION_ENDPOINT_RESOURCE as R, type NotificationEndpointStatus } from '../../src/api/notification-endpoint.ts';
import { parseCommand, type ServeConfig } from '../../src/config.ts';
import { statusCode } from '../../src/k8s/errors.ts';
import { EVENTS_MEDIA_TYPE } from '../../src/notifications/event.ts';
import { startServer, type Running } from '../../src/serve.ts';
import { applyManifests, envtestAssets, TestCluster, type TokenEntry } from '../support/envtest.ts';
import { makeEvents } from '../support/events.ts';
import { TestReceiver } from '../support/receiver.ts';
import { eventually } from '../support/wait.ts';
import { skipWithout } from '../support/tools.ts';
import { CHART_RENDERER, only, render, REPO, type Manifest } from './render.ts';
import { kustomize } from './kustomize.ts';
import { EXPECTED_RULES } from './rbac-rules.ts';

const assets = envtestAssets();
// Only the namespaced-Roles test needs the chart rendered; the rest runs from deploy/ alone.
const noRenderer = Boolean(assets) && skipWithout(CHART_RENDERER, 'the RBAC test of the chart\'s namespaced Roles');
const INGEST_TOKEN = 'rbac-test-ingest-token';

/** A static token that authenticates exactly like the ServiceAccount's own token would. */
const serviceAccount = (namespace: string, name: string): TokenEntry => ({
  token: randomBytes(24).toString('hex'),
  user: `system:serviceaccount:${namespace}:${name}`,
  groups: ['system:serviceaccounts', `system:serviceaccounts:${namespace}`, 'system:authenticated'],
});
const DEPLOYED = serviceAccount('registry-notifier', 'registry-notifier'); // bound by deploy/rbac.yaml
const NO_STATUS = serviceAccount('registry-notifier', 'no-status'); // deploy/'s rules minus notificationendpoints/status
const NAMESPACED = serviceAccount('registry', 'notifier'); // the chart's Roles in team-a and team-b

interface Server {
  running: Running;
  logs: string[];
}

/** `registry-notifier serve --kubernetes` in-process, as the given identity, logs captured. */
async function serve(kc: KubeConfig, extra: string[] = []): Promise<Server> {
  const config = parseCommand(['serve', '--kubernetes', '--listen', '127.0.0.1:0', '--metrics-listen', '127.0.0.1:0',
    '--status-interval', '300ms', '--shutdown-grace', '1s', '--allow-endpoint-cidrs', '127.0.0.0/8', ...extra],
  { REGISTRY_NOTIFIER_INGEST_TOKEN: INGEST_TOKEN }) as ServeConfig;
  const logs: string[] = [];
  const sink = new Writable({ write: (chunk: Buffer, _encoding, done) => (logs.push(chunk.toString()), done()) });
  return { running: await startServer(config, pino({ level: 'info' }, sink), { kubeConfig: kc }), logs };
}

/** Log lines that report a failed Kubernetes API call. */
const apiErrors = (logs: string[]): string[] => logs.filter((line) => /HTTP 40[13]|forbidden|status write failed|could not record event/i.test(line));

/** A call's HTTP status: 2xx when it succeeded, else the API's error code. */
async function status(call: () => Promise<unknown>): Promise<number> {
  try {
    await call();
    return 200;
  } catch (error) {
    const code = statusCode(error);
    if (code === undefined) throw error;
    return code;
  }
}

describe.skipIf(!assets)('RBAC: the shipped rules are enough and least (kube-apiserver 1.20, a ServiceAccount identity)', () => {
  let cluster: TestCluster;
  let admin: KubeConfig;
  let custom: CustomObjectsApi;
  let core: CoreV1Api;
  let receiver: TestReceiver;
  const servers: Server[] = [];

  beforeAll(async () => {
    const started = performance.now();
    cluster = await TestCluster.start({ tokens: [DEPLOYED, NO_STATUS, NAMESPACED] });
    admin = cluster.kubeConfig();
    custom = admin.makeApiClient(CustomObjectsApi);
    core = admin.makeApiClient(CoreV1Api);
    // deploy/ as `kubectl apply -k` would create it (the Deployment and Service need no pods here).
    const deployed = await kustomize(join(REPO, 'deploy'));
    const clusterRole = only(deployed, 'ClusterRole');
    expect(clusterRole.rules).toEqual(EXPECTED_RULES);
    const withoutStatus: Manifest = {
      ...clusterRole,
      metadata: { name: 'no-status' },
      rules: (clusterRole.rules as { resources: string[] }[]).filter((r) => !r.resources.includes('notificationendpoints/status')),
    };
    const noStatusBinding: Manifest = {
      ...only(deployed, 'ClusterRoleBinding'),
      metadata: { name: 'no-status' },
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'no-status' },
      subjects: [{ kind: 'ServiceAccount', name: 'no-status', namespace: 'registry-notifier' }],
    };
    // The chart's namespaced mode: a Role and RoleBinding in each watched namespace for ServiceAccount registry/notifier.
    const namespaced: Manifest[] = [];
    if (!noRenderer) {
      const chart = await render({ namespace: 'registry', set: { watchNamespaces: '[team-a, team-b]', 'serviceAccount.name': 'notifier' } });
      namespaced.push(...chart.objects.filter((o) => o.kind === 'Role' || o.kind === 'RoleBinding'));
      expect(namespaced).toHaveLength(4);
    }
    const namespaces = ['apps', 'lab', 'registry', 'team-a', 'team-b', 'team-c'].map((name): Manifest => ({ apiVersion: 'v1', kind: 'Namespace', metadata: { name } }));
    const objects = [
      ...deployed.filter((o) => o.kind !== 'Deployment' && o.kind !== 'Service'),
      withoutStatus, noStatusBinding, ...namespaces, ...namespaced,
    ];
    await applyManifests(admin, objects.map((o) => stringify(o)).join('---\n'));
    receiver = await TestReceiver.start();
    console.log(`[measure] RBAC cluster up, deploy/ applied in ${(performance.now() - started).toFixed(0)} ms`);
  });

  afterAll(async () => {
    for (const server of servers) await server.running.shutdown();
    await receiver?.close();
    await cluster?.stop();
  });

  const endpoint = (namespace: string, name: string, spec: Record<string, unknown>): Promise<unknown> =>
    custom.createNamespacedCustomObject({ group: R.group, version: R.version, namespace, plural: R.plural, body: { apiVersion: R.apiVersion, kind: R.kind, metadata: { name, namespace }, spec } });
  const get = (namespace: string, name: string): Promise<{ metadata: { generation: number }; spec: Record<string, unknown>; status?: NotificationEndpointStatus }> =>
    custom.getNamespacedCustomObject({ group: R.group, version: R.version, namespace, plural: R.plural, name });
  const ready = (s: NotificationEndpointStatus | undefined) => s?.conditions?.find((c) => c.type === 'Ready');
  const rulesOf = async (kc: KubeConfig, namespace: string): Promise<unknown[]> => {
    const review = await kc.makeApiClient(AuthorizationV1Api).createSelfSubjectRulesReview({ body: { spec: { namespace } } });
    // Every authenticated user may review its own access (system:basic-user); everything else comes from our binding.
    return (review.status?.resourceRules ?? [])
      .filter((r) => !(r.apiGroups?.includes('authorization.k8s.io') && r.resources?.every((x) => x.startsWith('selfsubject'))))
      .map((r) => ({ apiGroups: r.apiGroups, resources: r.resources, verbs: r.verbs }));
  };

  it('least: the ServiceAccount\'s effective permissions are exactly the four rules', async () => {
    const kc = cluster.kubeConfigFor(DEPLOYED.token);
    const sorted = (rules: unknown[]): string[] => rules.map((r) => JSON.stringify(r)).sort();
    expect(sorted(await rulesOf(kc, 'apps'))).toEqual(sorted(EXPECTED_RULES));
  });

  it('enough: create → Ready=True and live; a Secret-sourced header reaches the receiver; an Event; delete → gone', { timeout: 60_000 }, async () => {
    const server = await serve(cluster.kubeConfigFor(DEPLOYED.token));
    servers.push(server);
    const { running } = server;
    await core.createNamespacedSecret({ namespace: 'apps', body: { metadata: { name: 'hook-token' }, stringData: { token: 'Bearer from-a-secret' } } });
    await endpoint('apps', 'hook', { url: receiver.url, headers: [{ name: 'Authorization', valueFrom: { secretKeyRef: { name: 'hook-token', key: 'token' } } }] });
    const object = await eventually(async () => {
      const o = await get('apps', 'hook');
      expect(ready(o.status)).toMatchObject({ status: 'True', reason: 'Configured', observedGeneration: o.metadata.generation });
      return o;
    }, 15_000);
    expect(object.status?.observedGeneration).toBe(object.metadata.generation);
    expect(running.endpoints.get('apps/hook')).toBeDefined();
    // The ingest, authenticated; the receiver sees the header read from the Secret.
    const [event] = makeEvents(1, 'rbac');
    const response = await fetch(running.ingestUrl, { method: 'POST', headers: { 'content-type': EVENTS_MEDIA_TYPE, authorization: `Bearer ${INGEST_TOKEN}` }, body: JSON.stringify({ events: [event] }) });
    expect(response.status).toBe(202);
    await receiver.waitFor((requests) => requests.some((r) => r.headers.authorization === 'Bearer from-a-secret'));
    await eventually(async () => expect((await get('apps', 'hook')).status?.delivered).toBeGreaterThanOrEqual(1), 10_000);
    // The Event the controller created with its own identity.
    const events = await eventually(async () => {
      const list = await core.listNamespacedEvent({ namespace: 'apps', fieldSelector: 'involvedObject.name=hook' });
      expect(list.items.length).toBeGreaterThan(0);
      return list.items;
    });
    expect(events[0]).toMatchObject({ type: 'Normal', reason: 'Configured', source: { component: 'registry-notifier' }, involvedObject: { kind: 'NotificationEndpoint', name: 'hook' } });
    await custom.deleteNamespacedCustomObject({ group: R.group, version: R.version, namespace: 'apps', plural: R.plural, name: 'hook' });
    await eventually(() => expect(running.endpoints.get('apps/hook')).toBeUndefined());
    expect(apiErrors(server.logs)).toEqual([]);
  });

  it('least: everything outside the granted verbs is refused with 403', async () => {
    const kc = cluster.kubeConfigFor(DEPLOYED.token);
    const sa = { core: kc.makeApiClient(CoreV1Api), custom: kc.makeApiClient(CustomObjectsApi) };
    await endpoint('apps', 'spec-owner', { url: receiver.url });
    const current = await get('apps', 'spec-owner');
    const ne = { group: R.group, version: R.version, namespace: 'apps', plural: R.plural, name: 'spec-owner' };
    const refused = {
      'list pods': await status(() => sa.core.listNamespacedPod({ namespace: 'apps' })),
      'list namespaces': await status(() => sa.core.listNamespace()),
      'create a secret': await status(() => sa.core.createNamespacedSecret({ namespace: 'apps', body: { metadata: { name: 'x' }, stringData: { a: 'b' } } })),
      'delete a secret': await status(() => sa.core.deleteNamespacedSecret({ namespace: 'apps', name: 'hook-token' })),
      'update a secret': await status(() => sa.core.replaceNamespacedSecret({ namespace: 'apps', name: 'hook-token', body: { metadata: { name: 'hook-token' }, stringData: { token: 'stolen' } } })),
      'create a configmap': await status(() => sa.core.createNamespacedConfigMap({ namespace: 'apps', body: { metadata: { name: 'x' } } })),
      'update an endpoint spec': await status(() => sa.custom.replaceNamespacedCustomObject({ ...ne, body: { ...current, spec: { url: 'http://127.0.0.1:1/x' } } })),
      'create an endpoint': await status(() => sa.custom.createNamespacedCustomObject({ ...ne, body: { apiVersion: R.apiVersion, kind: R.kind, metadata: { name: 'new', namespace: 'apps' }, spec: { url: receiver.url } } })),
      'delete an endpoint': await status(() => sa.custom.deleteNamespacedCustomObject(ne)),
      'list events': await status(() => sa.core.listNamespacedEvent({ namespace: 'apps' })),
    };
    expect(refused).toEqual(Object.fromEntries(Object.keys(refused).map((k) => [k, 403])));
    // ... while what the controller does is allowed.
    expect(await status(() => sa.core.listSecretForAllNamespaces())).toBe(200);
    expect(await status(() => sa.custom.listClusterCustomObject({ group: R.group, version: R.version, plural: R.plural }))).toBe(200);
    expect((await get('apps', 'spec-owner')).spec.url).toBe(receiver.url);
  });

  it('each rule matters: without the notificationendpoints/status rule the status never appears', { timeout: 60_000 }, async () => {
    for (const server of servers.splice(0)) await server.running.shutdown(); // the fully bound controller would write it
    const server = await serve(cluster.kubeConfigFor(NO_STATUS.token));
    servers.push(server);
    await endpoint('lab', 'mute', { url: receiver.url });
    // The endpoint goes live (reading works) ...
    await eventually(() => expect(server.running.endpoints.get('lab/mute')).toBeDefined(), 10_000);
    // ... but every status write is refused, and said so in the log.
    await eventually(() => expect(server.logs.some((l) => l.includes('status write failed') && l.includes('lab/mute'))).toBe(true), 10_000);
    expect((await get('lab', 'mute')).status).toBeUndefined();
    const events = await core.listNamespacedEvent({ namespace: 'lab', fieldSelector: 'involvedObject.name=mute' });
    expect(events.items).toEqual([]); // Events follow status transitions, which never happened
  });

  it.skipIf(noRenderer)('the chart\'s namespaced Roles suffice with --namespaces and grant nothing elsewhere', { timeout: 60_000 }, async () => {
    for (const server of servers.splice(0)) await server.running.shutdown();
    const kc = cluster.kubeConfigFor(NAMESPACED.token);
    const sorted = (rules: unknown[]): string[] => rules.map((r) => JSON.stringify(r)).sort();
    expect(sorted(await rulesOf(kc, 'team-a'))).toEqual(sorted(EXPECTED_RULES));
    expect(await rulesOf(kc, 'team-c')).toEqual([]);
    const server = await serve(kc, ['--namespaces', 'team-a,team-b']);
    servers.push(server);
    await endpoint('team-b', 'hook', { url: receiver.url });
    await eventually(async () => expect(ready((await get('team-b', 'hook')).status)?.status).toBe('True'), 15_000);
    await endpoint('team-c', 'outside', { url: receiver.url });
    const sa = { core: kc.makeApiClient(CoreV1Api), custom: kc.makeApiClient(CustomObjectsApi) };
    expect(await status(() => sa.core.listSecretForAllNamespaces())).toBe(403);
    expect(await status(() => sa.core.listNamespacedSecret({ namespace: 'team-c' }))).toBe(403);
    expect(await status(() => sa.custom.getNamespacedCustomObject({ group: R.group, version: R.version, namespace: 'team-c', plural: R.plural, name: 'outside' }))).toBe(403);
    expect(server.running.endpoints.get('team-c/outside')).toBeUndefined();
    expect(apiErrors(server.logs)).toEqual([]);
  });
});
