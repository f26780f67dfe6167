// The RBAC rules shipped in deploy/ (and the chart) are really enough and really least. The product runs in-process
// against a real kube-apiserver 1.20 as a ServiceAccount (a static token authenticating as
// system:serviceaccount:<ns>:<sa> with the ServiceAccount groups), bound exactly as the manifests bind it:
// - enough: the whole NotificationEndpoint lifecycle works (Ready=True in status, a Secret-sourced header reaches
//   the receiver, an Event is recorded, delete removes it) and the controller logs no API error;
// - least: the effective permissions are exactly the four rules, and calls outside them are refused (403);
// - each rule matters: without the status rule the status never appears;
// - the chart's namespaced Roles suffice with --namespaces and give nothing outside those namespaces;
// - with a database, the chart adds exactly the leader election's Lease rules, in the release namespace only: the
//   product's own elector (LeaderElector on KubeLeaseLock, on the Lease the rendered Deployment names) takes, renews
//   and releases it as the ServiceAccount, a second replica takes it over, and without either Lease rule no replica
//   ever leads; without a database there are no Lease rules at all;
// - with tenancy: namespace, the chart adds exactly Namespaces get/list/watch (every Namespace, or with watchNamespaces
//   only those, by name): grants are read and followed live as the ServiceAccount, other Namespaces stay unreadable,
//   and without the rule the product's Namespace calls are refused.
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { AuthorizationV1Api, CoordinationV1Api, CoreV1Api, CustomObjectsApi, PatchStrategy, setHeaderOptions, type KubeConfig } from '@kubernetes/client-node';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { NOTIFICATION_ENDPOINT_RESOURCE as R, REPOSITORIES_ANNOTATION, type NotificationEndpointStatus } from '../../src/api/notification-endpoint.ts';
import { parseCommand, type ServeConfig } from '../../src/config.ts';
import { statusCode } from '../../src/k8s/errors.ts';
import { KubeClusterApi } from '../../src/k8s/kube-cluster-api.ts';
import { KubeLeaseLock } from '../../src/k8s/kube-lease-lock.ts';
import { LeaderElector } from '../../src/k8s/leader-election.ts';
import { EVENTS_MEDIA_TYPE } from '../../src/notifications/event.ts';
import { startServer, type Running } from '../../src/serve.ts';
import { applyManifests, envtestAssets, startCluster, type StartedCluster, type TokenEntry } from '../support/envtest.ts';
import { makeEvents } from '../support/events.ts';
import { TestReceiver } from '../support/receiver.ts';
import { eventually } from '../support/wait.ts';
import { HINT as POSTGRES_HINT } from '../support/postgres-binaries.ts';
import { postgresBinaries, startPostgres } from '../support/postgres.ts';
import { skipWithout, type Requirement } from '../support/tools.ts';
import { CHART_RENDERER, only, render, REPO, type Manifest } from './render.ts';
import { kustomize } from './kustomize.ts';
import { EXPECTED_RULES, leaderElectionRules, tenancyRules } from './rbac-rules.ts';

const assets = envtestAssets();
// Only the namespaced-Roles test needs the chart rendered; the rest runs from deploy/ alone.
const noRenderer = Boolean(assets) && skipWithout(CHART_RENDERER, 'the RBAC test of the chart\'s namespaced Roles');
const INGEST_TOKEN = 'rbac-test-ingest-token';
const POSTGRES: Requirement = { what: 'PostgreSQL server binaries', path: postgresBinaries(), fix: POSTGRES_HINT };
// Only the test that runs replicas on a real database needs them.
const noPostgres = Boolean(assets) && !noRenderer && skipWithout(POSTGRES, 'the RBAC test of two replicas on PostgreSQL');

/** A static token that authenticates exactly like the ServiceAccount's own token would. */
const serviceAccount = (namespace: string, name: string): TokenEntry => ({
  token: randomBytes(24).toString('hex'),
  user: `system:serviceaccount:${namespace}:${name}`,
  groups: ['system:serviceaccounts', `system:serviceaccounts:${namespace}`, 'system:authenticated'],
});
const DEPLOYED = serviceAccount('registry-notifier', 'registry-notifier'); // bound by deploy/rbac.yaml
const NO_STATUS = serviceAccount('registry-notifier', 'no-status'); // deploy/'s rules minus notificationendpoints/status
const NAMESPACED = serviceAccount('registry', 'notifier'); // the chart's Roles in team-a and team-b
// The chart with a database: release "db" in namespace "registry", its own ServiceAccount, ClusterRole and Lease Role.
const RELEASE = { name: 'db', namespace: 'registry', fullname: 'db-registry-notifier' };
const ELECTED = serviceAccount(RELEASE.namespace, RELEASE.fullname);
// The chart's Lease Role, copied into namespace "lab" minus one of its two rules each.
const NO_LEASE_CREATE = serviceAccount('lab', 'no-lease-create');
const NO_LEASE_GET_UPDATE = serviceAccount('lab', 'no-lease-get-update');
// The chart with tenancy: namespace, every namespace (release "tw"), and with watchNamespaces team-a, team-b (release "ts").
const TENANT_WIDE = serviceAccount('registry', 'tenant-wide');
const TENANT_SCOPED = serviceAccount('registry', 'tenant-scoped');
const RBAC_KINDS = ['ClusterRole', 'ClusterRoleBinding', 'Role', 'RoleBinding'];

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
  let env: StartedCluster;
  let admin: KubeConfig;
  let custom: CustomObjectsApi;
  let core: CoreV1Api;
  let receiver: TestReceiver;
  const servers: Server[] = [];
  const electors: LeaderElector[] = [];
  // REGISTRY_NOTIFIER_LEADER_ELECTION_LEASE as the chart's Deployment sets it with a database.
  let leaseOfChart: string | undefined;

  beforeAll(async () => {
    const started = performance.now();
    env = await startCluster({ tokens: [DEPLOYED, NO_STATUS, NAMESPACED, ELECTED, NO_LEASE_CREATE, NO_LEASE_GET_UPDATE, TENANT_WIDE, TENANT_SCOPED] });
    ({ kc: admin, custom, core } = env);
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
    // The chart with a database: its RBAC as rendered, and the Lease Role minus one rule for each variant SA.
    const elected: Manifest[] = [];
    // The chart with tenancy, in both RBAC modes.
    const tenancy: Manifest[] = [];
    if (!noRenderer) {
      const chart = await render({ namespace: 'registry', set: { watchNamespaces: '[team-a, team-b]', 'serviceAccount.name': 'notifier' } });
      namespaced.push(...chart.objects.filter((o) => o.kind === 'Role' || o.kind === 'RoleBinding'));
      expect(namespaced).toHaveLength(4);
      const db = await render({ release: RELEASE.name, namespace: RELEASE.namespace, set: { 'database.existingSecret.name': 'pg', replicaCount: 2 } });
      leaseOfChart = (only(db.objects, 'Deployment').spec as { template: { spec: { containers: { env: { name: string; value?: string }[] }[] } } })
        .template.spec.containers[0]!.env.find((e) => e.name === 'REGISTRY_NOTIFIER_LEADER_ELECTION_LEASE')?.value;
      elected.push(...db.objects.filter((o) => ['ClusterRole', 'ClusterRoleBinding', 'Role', 'RoleBinding'].includes(o.kind)));
      expect(elected.map((o) => `${o.kind}/${o.metadata.namespace ?? ''}/${o.metadata.name}`).sort()).toEqual([
        `ClusterRole//${RELEASE.fullname}`, `ClusterRoleBinding//${RELEASE.fullname}`,
        `Role/${RELEASE.namespace}/${RELEASE.fullname}-leader-election`, `RoleBinding/${RELEASE.namespace}/${RELEASE.fullname}-leader-election`,
      ]);
      const leaseRole = only(elected, 'Role');
      for (const [sa, drop] of [[NO_LEASE_CREATE, 'create'], [NO_LEASE_GET_UPDATE, 'get']] as const) {
        const name = sa.user.split(':').at(-1)!;
        elected.push(
          { ...leaseRole, metadata: { name, namespace: 'lab' }, rules: (leaseRole.rules as { verbs: string[] }[]).filter((r) => !r.verbs.includes(drop)) },
          { apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'RoleBinding', metadata: { name, namespace: 'lab' }, roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name }, subjects: [{ kind: 'ServiceAccount', name, namespace: 'lab' }] },
        );
      }
      const wide = await render({ release: 'tw', namespace: 'registry', set: { tenancy: 'namespace', 'serviceAccount.name': 'tenant-wide' } });
      const scoped = await render({ release: 'ts', namespace: 'registry', set: { tenancy: 'namespace', watchNamespaces: '[team-a, team-b]', 'serviceAccount.name': 'tenant-scoped' } });
      tenancy.push(...[...wide.objects, ...scoped.objects].filter((o) => RBAC_KINDS.includes(o.kind)));
      expect(tenancy.map((o) => `${o.kind}/${o.metadata.namespace ?? ''}/${o.metadata.name}`).sort()).toEqual([
        'ClusterRole//ts-registry-notifier-tenancy', 'ClusterRole//tw-registry-notifier', 'ClusterRole//tw-registry-notifier-tenancy',
        'ClusterRoleBinding//ts-registry-notifier-tenancy', 'ClusterRoleBinding//tw-registry-notifier', 'ClusterRoleBinding//tw-registry-notifier-tenancy',
        'Role/team-a/ts-registry-notifier', 'Role/team-b/ts-registry-notifier', 'RoleBinding/team-a/ts-registry-notifier', 'RoleBinding/team-b/ts-registry-notifier',
      ]);
    }
    const namespaces = ['apps', 'lab', 'registry', 'team-a', 'team-b', 'team-c', 'tenant-x', 'tenant-y'].map((name): Manifest => ({
      apiVersion: 'v1', kind: 'Namespace', metadata: { name, ...(name === 'tenant-x' && { annotations: { [REPOSITORIES_ANNOTATION]: 'tenant-x/*' } }) },
    }));
    const objects = [
      ...deployed.filter((o) => o.kind !== 'Deployment' && o.kind !== 'Service'),
      withoutStatus, noStatusBinding, ...namespaces, ...namespaced, ...elected, ...tenancy,
    ];
    await applyManifests(admin, objects.map((o) => stringify(o)).join('---\n'));
    receiver = await TestReceiver.start();
    console.log(`[measure] RBAC cluster up, deploy/ applied in ${(performance.now() - started).toFixed(0)} ms`);
  });

  afterAll(() => env?.stop(...electors.map((elector) => () => elector.stop()), ...servers.map((server) => () => server.running.shutdown()), () => receiver?.close()));

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
      .map((r) => ({ apiGroups: r.apiGroups, resources: r.resources, ...(r.resourceNames?.length && { resourceNames: r.resourceNames }), verbs: r.verbs }));
  };
  /** Rules as comparable strings, whatever order the keys and the rules come in. */
  const sorted = (rules: unknown[]): string[] => rules.map((r) => JSON.stringify(r, Object.keys(r as object).sort())).sort();

  it('least: the ServiceAccount\'s effective permissions are exactly the four rules', async () => {
    const kc = env.cluster.kubeConfigFor(DEPLOYED.token);
    expect(sorted(await rulesOf(kc, 'apps'))).toEqual(sorted(EXPECTED_RULES));
  });

  it('enough: create → Ready=True and live; a Secret-sourced header reaches the receiver; an Event; delete → gone', { timeout: 60_000 }, async () => {
    const server = await serve(env.cluster.kubeConfigFor(DEPLOYED.token));
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
    const kc = env.cluster.kubeConfigFor(DEPLOYED.token);
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
    const server = await serve(env.cluster.kubeConfigFor(NO_STATUS.token));
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
    const kc = env.cluster.kubeConfigFor(NAMESPACED.token);
    expect(sorted(await rulesOf(kc, 'team-a'))).toEqual(sorted(EXPECTED_RULES));
    expect(await rulesOf(kc, 'team-c')).toEqual([]);
    // Without a database nothing elects: no Lease rules in the release namespace either.
    expect(await rulesOf(kc, 'registry')).toEqual([]);
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

  /** The product's elector as `token`'s ServiceAccount on `namespace/name`, its log lines captured. */
  const elector = (token: string, lease: { namespace: string; name: string }, identity: string): { elector: LeaderElector; logs: string[] } => {
    const logs: string[] = [];
    const sink = new Writable({ write: (chunk: Buffer, _encoding, done) => (logs.push(chunk.toString()), done()) });
    // client-go's ratios, shortened so renewals come every 300 ms.
    const candidate = new LeaderElector({
      lock: new KubeLeaseLock(env.cluster.kubeConfigFor(token), lease.namespace, lease.name), identity,
      leaseDurationMs: 3_000, renewDeadlineMs: 2_000, retryPeriodMs: 300, logger: pino({ level: 'info' }, sink),
    });
    electors.push(candidate);
    return { elector: candidate, logs };
  };
  const leases = (): CoordinationV1Api => admin.makeApiClient(CoordinationV1Api);
  const lease = (namespace: string, name: string) => leases().readNamespacedLease({ namespace, name });

  it.skipIf(noRenderer)('with a database: exactly the controller\'s rules plus the Lease rules, and those only in the release namespace', async () => {
    const kc = env.cluster.kubeConfigFor(ELECTED.token);
    expect(sorted(await rulesOf(kc, RELEASE.namespace))).toEqual(sorted([...EXPECTED_RULES, ...leaderElectionRules(RELEASE.fullname)]));
    expect(sorted(await rulesOf(kc, 'apps'))).toEqual(sorted(EXPECTED_RULES));
    // deploy/ (no database) has none either.
    expect(sorted(await rulesOf(env.cluster.kubeConfigFor(DEPLOYED.token), 'registry-notifier'))).toEqual(sorted(EXPECTED_RULES));
  });

  it.skipIf(noRenderer)('with a database, enough: the elector takes, renews and releases the chart\'s Lease as the ServiceAccount; a second replica takes over', { timeout: 30_000 }, async () => {
    // The Lease the rendered Deployment names, as the product parses it.
    const { leaderElectionLease: target } = parseCommand(['serve', '--kubernetes'], { REGISTRY_NOTIFIER_LEADER_ELECTION_LEASE: leaseOfChart }) as ServeConfig;
    expect(target).toEqual({ namespace: RELEASE.namespace, name: RELEASE.fullname });
    const first = elector(ELECTED.token, target, 'db-registry-notifier-5d8f7c9b4-aaaaa');
    first.elector.start();
    // Created (create), then renewed (get + update with the resourceVersion read): the resourceVersion moves on.
    await eventually(() => expect(first.elector.isLeader).toBe(true), 10_000);
    const taken = await lease(target.namespace, target.name);
    expect(taken.spec?.holderIdentity).toBe('db-registry-notifier-5d8f7c9b4-aaaaa');
    await eventually(async () => {
      const renewed = await lease(target.namespace, target.name);
      expect(renewed.metadata?.resourceVersion).not.toBe(taken.metadata?.resourceVersion);
      expect(renewed.spec?.holderIdentity).toBe('db-registry-notifier-5d8f7c9b4-aaaaa');
    }, 10_000);
    // A second replica waits while the first leads; the first releases on stop (update); the second takes over (update).
    const second = elector(ELECTED.token, target, 'db-registry-notifier-5d8f7c9b4-bbbbb');
    second.elector.start();
    await eventually(() => expect(second.elector.leader).toBe('db-registry-notifier-5d8f7c9b4-aaaaa'), 10_000);
    expect(second.elector.isLeader).toBe(false);
    await first.elector.stop();
    await eventually(() => expect(second.elector.isLeader).toBe(true), 10_000);
    expect((await lease(target.namespace, target.name)).spec).toMatchObject({ holderIdentity: 'db-registry-notifier-5d8f7c9b4-bbbbb', leaseTransitions: 1 });
    await second.elector.stop();
    expect((await lease(target.namespace, target.name)).spec?.holderIdentity ?? '').toBe('');
    for (const { logs } of [first, second]) expect(logs.filter((l) => /cannot read or write|releasing the lease failed/.test(l))).toEqual([]);
  });

  it.skipIf(noRenderer)('with a database, least: every other Lease call, or this one elsewhere, is refused with 403', async () => {
    const sa = env.cluster.kubeConfigFor(ELECTED.token).makeApiClient(CoordinationV1Api);
    const body = (namespace: string, name: string) => ({ metadata: { name, namespace }, spec: { holderIdentity: 'x', leaseDurationSeconds: 15 } });
    await leases().createNamespacedLease({ namespace: RELEASE.namespace, body: body(RELEASE.namespace, 'someone-else') }).catch((error: unknown) => {
      if (statusCode(error) !== 409) throw error;
    });
    const other = await lease(RELEASE.namespace, 'someone-else');
    const refused = {
      'get another Lease': await status(() => sa.readNamespacedLease({ namespace: RELEASE.namespace, name: 'someone-else' })),
      'update another Lease': await status(() => sa.replaceNamespacedLease({ namespace: RELEASE.namespace, name: 'someone-else', body: { ...body(RELEASE.namespace, 'someone-else'), metadata: { ...other.metadata } } })),
      'delete its Lease': await status(() => sa.deleteNamespacedLease({ namespace: RELEASE.namespace, name: RELEASE.fullname })),
      'list Leases': await status(() => sa.listNamespacedLease({ namespace: RELEASE.namespace })),
      'get its Lease name in another namespace': await status(() => sa.readNamespacedLease({ namespace: 'apps', name: RELEASE.fullname })),
      'create a Lease in another namespace': await status(() => sa.createNamespacedLease({ namespace: 'apps', body: body('apps', RELEASE.fullname) })),
    };
    expect(refused).toEqual(Object.fromEntries(Object.keys(refused).map((k) => [k, 403])));
    expect((await lease(RELEASE.namespace, 'someone-else')).spec?.holderIdentity).toBe('x');
  });

  it.skipIf(noRenderer)('with a database, each Lease rule matters: without create, or without get/update, no replica ever leads', { timeout: 30_000 }, async () => {
    for (const [sa, missing] of [[NO_LEASE_CREATE, 'create'], [NO_LEASE_GET_UPDATE, 'get/update']] as const) {
      const target = { namespace: 'lab', name: RELEASE.fullname };
      const { elector: candidate, logs } = elector(sa.token, target, `${missing}-less-replica`);
      candidate.start();
      // The first round fails on the missing verb, and says so in the log ...
      await eventually(() => expect(logs.some((l) => l.includes('cannot read or write the lease') && l.includes('HTTP 403'))).toBe(true), 10_000);
      expect(candidate.isLeader, missing).toBe(false);
      await candidate.stop();
      // ... and no Lease was ever written.
      expect(await status(() => lease(target.namespace, target.name)), missing).toBe(404);
    }
  });

  it.skipIf(noRenderer || noPostgres)('with a database, enough for the product: two replicas as the chart\'s ServiceAccount on one PostgreSQL; one leads and writes status', { timeout: 90_000 }, async () => {
    const pg = await startPostgres({ fsync: false });
    const replicas: Server[] = [];
    try {
      const kc = env.cluster.kubeConfigFor(ELECTED.token);
      // The database variables as the chart's Deployment sets them; the replica id is each pod's name.
      for (const pod of ['db-registry-notifier-5d8f7c9b4-ccccc', 'db-registry-notifier-5d8f7c9b4-ddddd']) {
        replicas.push(await serve(kc, ['--database-url', pg.url, '--replica-id', pod, '--leader-election-lease', leaseOfChart!]));
      }
      const diagnosis = async (): Promise<string> => {
        const holder = await lease(RELEASE.namespace, RELEASE.fullname).then((l) => l.spec?.holderIdentity, (error: unknown) => String(error));
        // Warnings apart from the election's lines: many lease lines must not push an early warning out of sight.
        const lines = (pattern: RegExp): string[] => replicas.flatMap((r, i) => r.logs.filter((l) => pattern.test(l)).map((l) => `replica ${i}: ${l.trim()}`));
        const warnings = [...lines(/"level":(40|50)/).slice(0, 20), ...lines(/leader|lease/i).filter((l) => !/"level":(40|50)/.test(l)).slice(-10)];
        // What each replica counted, and what the database holds: which side of the counters' path lost the delivery.
        const local = replicas.map((r, i) => `replica ${i} counted ${JSON.stringify(r.running.endpoints.get('apps/shared')?.stats())}`);
        const rows = await pg.admin('SELECT e.name, e.owner, e.epoch, e.done, q.next_pos, s.delivered, s.responses FROM endpoints e LEFT JOIN queues q ON q.name = e.name LEFT JOIN endpoint_stats s ON s.endpoint = e.name')
          .then((r) => JSON.stringify(r), (error: unknown) => String(error));
        return `Lease held by ${holder}; status ${JSON.stringify((await get('apps', 'shared')).status)}\n${local.join('\n')}\ndatabase: ${rows}\n${warnings.join('\n')}`;
      };
      // A path of its own: the other endpoints still running in this file send every event to the receiver too.
      const path = '/shared';
      await endpoint('apps', 'shared', { url: new URL(path, receiver.url).href });
      await eventually(async () => expect(ready((await get('apps', 'shared')).status)?.status).toBe('True'), 20_000);
      // Ready is written by the leader once it runs the endpoint; each replica routes an event to the endpoints it
      // runs when the event arrives, so the event goes to a replica only once that one runs it too.
      await eventually(async () => expect(replicas.map((r) => r.running.endpoints.get('apps/shared') !== undefined)).toEqual([true, true]), 20_000);
      const [event] = makeEvents(1, 'rbac-db');
      const response = await fetch(replicas[1]!.running.ingestUrl, { method: 'POST', headers: { 'content-type': EVENTS_MEDIA_TYPE, authorization: `Bearer ${INGEST_TOKEN}` }, body: JSON.stringify({ events: [event] }) });
      expect(response.status).toBe(202);
      await receiver.waitFor((requests) => requests.some((r) => r.url === path && JSON.stringify(r.json).includes(event!.id)), 20_000);
      // The counters reach status: only the leader writes it, so the Lease rules did their part. Allow more than a
      // Lease (15 s): on a loaded machine a renewal can miss its deadline, and the other replica takes over only once
      // the Lease has run out. A failure says who held it and what the replicas logged.
      await eventually(async () => expect((await get('apps', 'shared')).status?.delivered).toBeGreaterThanOrEqual(1), 45_000).catch(async (error: unknown) => {
        throw new Error(`${error instanceof Error ? error.message : String(error)}\n${await diagnosis()}`, { cause: error });
      });
      expect(['db-registry-notifier-5d8f7c9b4-ccccc', 'db-registry-notifier-5d8f7c9b4-ddddd']).toContain((await lease(RELEASE.namespace, RELEASE.fullname)).spec?.holderIdentity);
      for (const replica of replicas) expect(apiErrors(replica.logs)).toEqual([]);
    } finally {
      for (const replica of replicas) await replica.running.shutdown();
      await pg.stop();
    }
  });

  /** Grants `namespace` the repositories `value` (null: withdraws the grant), as a cluster administrator does. */
  const grant = (namespace: string, value: string | null): Promise<unknown> =>
    core.patchNamespace({ name: namespace, body: { metadata: { annotations: { [REPOSITORIES_ANNOTATION]: value } } } }, setHeaderOptions('Content-Type', PatchStrategy.MergePatch));
  /** Posts one event of `repository` through the server's ingest, authenticated; resolves with its id. */
  const post = async (running: Running, repository: string): Promise<string> => {
    const [event] = makeEvents(1, `tenancy-${repository.replaceAll('/', '.')}`, { repository });
    const response = await fetch(running.ingestUrl, { method: 'POST', headers: { 'content-type': EVENTS_MEDIA_TYPE, authorization: `Bearer ${INGEST_TOKEN}` }, body: JSON.stringify({ events: [event] }) });
    expect(response.status).toBe(202);
    return event!.id;
  };
  /** Namespace calls as the ServiceAccount: each call's HTTP status. */
  const namespaceCalls = async (kc: KubeConfig, namespace: string): Promise<Record<string, number>> => {
    const sa = kc.makeApiClient(CoreV1Api);
    return {
      get: await status(() => sa.readNamespace({ name: namespace })),
      'list by name': await status(() => sa.listNamespace({ fieldSelector: `metadata.name=${namespace}` })),
      'list all': await status(() => sa.listNamespace()),
      patch: await status(() => sa.patchNamespace({ name: namespace, body: { metadata: { annotations: { [REPOSITORIES_ANNOTATION]: '**' } } } }, setHeaderOptions('Content-Type', PatchStrategy.MergePatch))),
      delete: await status(() => sa.deleteNamespace({ name: namespace, dryRun: 'All' })),
      create: await status(() => sa.createNamespace({ body: { metadata: { name: `${namespace}-new` } } })),
    };
  };

  it.skipIf(noRenderer)('with tenancy, least: exactly the controller\'s rules plus Namespaces get/list/watch; no Namespace is ever written', async () => {
    for (const server of servers.splice(0)) await server.running.shutdown(); // no other controller writes status meanwhile
    const kc = env.cluster.kubeConfigFor(TENANT_WIDE.token);
    expect(sorted(await rulesOf(kc, 'tenant-x'))).toEqual(sorted([...EXPECTED_RULES, ...tenancyRules()]));
    expect(await namespaceCalls(kc, 'tenant-y')).toEqual({ get: 200, 'list by name': 200, 'list all': 200, patch: 403, delete: 403, create: 403 });
  });

  it.skipIf(noRenderer)('with tenancy, enough: grants are read and followed live as the ServiceAccount; without a grant NoRepositoryGrant; no API error', { timeout: 60_000 }, async () => {
    const server = await serve(env.cluster.kubeConfigFor(TENANT_WIDE.token), ['--tenancy', 'namespace']);
    servers.push(server);
    await endpoint('tenant-x', 'hook', { url: receiver.url });
    await endpoint('tenant-y', 'hook', { url: receiver.url });
    await eventually(async () => expect(ready((await get('tenant-x', 'hook')).status)).toMatchObject({ status: 'True', reason: 'Configured' }), 15_000);
    await eventually(async () => expect(ready((await get('tenant-y', 'hook')).status)).toMatchObject({ status: 'False', reason: 'NoRepositoryGrant' }), 15_000);
    const id = await post(server.running, 'tenant-x/app');
    await receiver.waitForEvents((events) => events.some((e) => e.id === id));
    // The Namespace watch works with these rules: a grant added now takes effect.
    await grant('tenant-y', 'tenant-y/*');
    await eventually(async () => expect(ready((await get('tenant-y', 'hook')).status)).toMatchObject({ status: 'True', reason: 'Configured' }), 15_000);
    expect(server.running.endpoints.get('tenant-y/hook')?.config.filter.grant).toEqual(['tenant-y/*']);
    expect(apiErrors(server.logs)).toEqual([]);
    expect(server.logs.some((l) => l.includes('list/watch failed'))).toBe(false);
  });

  it.skipIf(noRenderer)('with tenancy and watchNamespaces: Namespace rights on the watched ones only, by name; enough with --namespaces; the rest stays unreadable', { timeout: 60_000 }, async () => {
    for (const server of servers.splice(0)) await server.running.shutdown();
    const kc = env.cluster.kubeConfigFor(TENANT_SCOPED.token);
    const namespaceRule = tenancyRules(['team-a', 'team-b']);
    expect(sorted(await rulesOf(kc, 'team-a'))).toEqual(sorted([...EXPECTED_RULES, ...namespaceRule]));
    expect(await rulesOf(kc, 'team-c')).toEqual(namespaceRule); // cluster-scoped, so listed everywhere, but by name
    expect(await namespaceCalls(kc, 'team-a')).toEqual({ get: 200, 'list by name': 200, 'list all': 403, patch: 403, delete: 403, create: 403 });
    expect(await namespaceCalls(kc, 'team-c')).toEqual({ get: 403, 'list by name': 403, 'list all': 403, patch: 403, delete: 403, create: 403 });
    await grant('team-a', 'team-a/*');
    const server = await serve(kc, ['--namespaces', 'team-a,team-b', '--tenancy', 'namespace']);
    servers.push(server);
    await endpoint('team-a', 'tenant-hook', { url: receiver.url });
    await eventually(async () => expect(ready((await get('team-a', 'tenant-hook')).status)).toMatchObject({ status: 'True', reason: 'Configured' }), 15_000);
    // team-b has no grant yet (its endpoint from the namespaced test stops); granted, it runs again.
    await eventually(async () => expect(ready((await get('team-b', 'hook')).status)).toMatchObject({ status: 'False', reason: 'NoRepositoryGrant' }), 15_000);
    await grant('team-b', 'team-b/**');
    await eventually(async () => expect(ready((await get('team-b', 'hook')).status)).toMatchObject({ status: 'True', reason: 'Configured' }), 15_000);
    const id = await post(server.running, 'team-a/app');
    await receiver.waitForEvents((events) => events.some((e) => e.id === id));
    expect(apiErrors(server.logs)).toEqual([]);
    expect(server.logs.some((l) => l.includes('list/watch failed'))).toBe(false);
  });

  it('each rule matters: without the tenancy rule (deploy/\'s rules) the product\'s own Namespace calls are refused', async () => {
    const calls = async (kc: KubeConfig, namespace: string | undefined): Promise<number[]> => {
      const api = new KubeClusterApi(kc);
      return [await status(() => api.namespaces(namespace).list()), await status(() => api.getNamespace(namespace ?? 'apps'))];
    };
    expect(await calls(env.cluster.kubeConfigFor(DEPLOYED.token), undefined)).toEqual([403, 403]);
    expect(await calls(env.cluster.kubeConfigFor(DEPLOYED.token), 'apps')).toEqual([403, 403]);
    if (noRenderer) return;
    // ... and the scoped rule covers the watched Namespaces, not one more.
    expect(await calls(env.cluster.kubeConfigFor(TENANT_SCOPED.token), 'team-b')).toEqual([200, 200]);
    expect(await calls(env.cluster.kubeConfigFor(TENANT_SCOPED.token), 'team-c')).toEqual([403, 403]);
    expect(await calls(env.cluster.kubeConfigFor(TENANT_SCOPED.token), undefined)).toEqual([403, 403]); // getNamespace('apps')
  });
});
