// Tenancy by namespace (api.md §9, `serve --kubernetes --tenancy namespace`) against a real kube-apiserver 1.20:
// three namespaces (one glob granted, two globs granted, none), events posted through the running server's ingest
// and received by real loopback receivers, each endpoint getting exactly what its namespace's grant and its own
// filter let through; a grant added later goes live within seconds; a narrowed grant discards what was queued
// under the wider one; a withdrawn one stops the endpoints; a deleted namespace leaves nothing behind.
import { PatchStrategy, setHeaderOptions } from '@kubernetes/client-node';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NOTIFICATION_ENDPOINT_RESOURCE as R, REPOSITORIES_ANNOTATION, type Condition, type NotificationEndpointStatus } from '../../src/api/notification-endpoint.ts';
import { parseCommand, type ServeConfig } from '../../src/config.ts';
import { statusCode } from '../../src/k8s/errors.ts';
import { EVENTS_MEDIA_TYPE } from '../../src/notifications/event.ts';
import { startServer, type Running } from '../../src/serve.ts';
import { envtestAssets, REPO_CRDS, startCluster, type StartedCluster } from '../support/envtest.ts';
import { makeEvents } from '../support/events.ts';
import { TestReceiver } from '../support/receiver.ts';
import { eventually } from '../support/wait.ts';

const assets = envtestAssets();

describe.skipIf(!assets)('tenancy by namespace against a real kube-apiserver', () => {
  let env: StartedCluster;
  let server: Running;
  const receivers: Record<string, TestReceiver> = {};
  const logs: string[] = [];

  const grant = (namespace: string, value: string | null): Promise<unknown> =>
    env.core.patchNamespace({ name: namespace, body: { metadata: { annotations: { [REPOSITORIES_ANNOTATION]: value } } } }, setHeaderOptions('Content-Type', PatchStrategy.MergePatch));
  const create = (namespace: string, name: string, spec: Record<string, unknown>): Promise<unknown> =>
    env.custom.createNamespacedCustomObject({ group: R.group, version: R.version, namespace, plural: R.plural, body: { apiVersion: R.apiVersion, kind: R.kind, metadata: { name, namespace }, spec } });
  const ready = async (namespace: string, name: string): Promise<Condition | undefined> => {
    const object = await env.custom.getNamespacedCustomObject({ group: R.group, version: R.version, namespace, plural: R.plural, name }) as { status?: NotificationEndpointStatus };
    return object.status?.conditions?.find((c) => c.type === 'Ready');
  };
  /** Posts one event per repository through the server's ingest; returns the event id of each repository. */
  let posted = 0;
  const post = async (...repositories: string[]): Promise<Record<string, string>> => {
    const events = repositories.map((repository) => makeEvents(1, `e${posted++}-${repository.replaceAll('/', '.')}`, { repository })[0]!);
    const response = await fetch(server.ingestUrl, { method: 'POST', headers: { 'content-type': EVENTS_MEDIA_TYPE }, body: JSON.stringify({ events }) });
    expect(response.status).toBe(202);
    return Object.fromEntries(events.map((e, i) => [repositories[i]!, e.id]));
  };
  /** Repositories of the events `receiver` accepted, in order. */
  const received = (receiver: string): string[] => receivers[receiver]!.events({ acceptedOnly: true }).map((e) => e.target.repository);
  /** How many events each receiver has accepted so far, to compare what arrives after. */
  const mark = (): Record<string, number> => Object.fromEntries(Object.keys(receivers).map((name) => [name, received(name).length]));
  /**
   * Waits until the endpoint delivered exactly `repositories` (in order) since `since` and holds nothing more: its
   * queue is FIFO, so once it is empty after those, nothing else that was posted before can still arrive.
   */
  const deliveredExactly = async (key: string, receiver: string, repositories: string[], since: Record<string, number>): Promise<void> => {
    const from = since[receiver] ?? 0;
    await receivers[receiver]!.waitFor(() => received(receiver).length - from >= repositories.length);
    await eventually(() => expect(server.endpoints.get(key)?.pending).toBe(0));
    expect(received(receiver).slice(from)).toEqual(repositories);
  };

  beforeAll(async () => {
    env = await startCluster({ crds: REPO_CRDS });
    const namespaces: [string, string | undefined][] = [['team-a', 'team-a/*'], ['team-b', ' team-b/** , shared/* '], ['team-c', undefined]];
    for (const [name, repositories] of namespaces) {
      await env.core.createNamespace({ body: { metadata: { name, ...(repositories !== undefined && { annotations: { [REPOSITORIES_ANNOTATION]: repositories } }) } } });
    }
    for (const name of ['a', 'aWeb', 'b', 'bHeld', 'c']) receivers[name] = await TestReceiver.start();
    await create('team-a', 'hook', { url: receivers.a!.url });
    // Its own filter narrows the grant, and its include outside the grant (team-b/**) gets it nothing.
    await create('team-a', 'web-only', { url: receivers.aWeb!.url, filter: { repositories: { include: ['team-a/web', 'team-b/**'] } } });
    await create('team-b', 'hook', { url: receivers.b!.url });
    await create('team-c', 'hook', { url: receivers.c!.url });
    const config = parseCommand(['serve', '--kubernetes', '--tenancy', 'namespace', '--allow-endpoint-cidrs', '127.0.0.0/8', '--listen', '127.0.0.1:0', '--metrics-listen', '127.0.0.1:0', '--status-interval', '300ms', '--shutdown-grace', '1s'], {}) as ServeConfig;
    expect(config.tenancy).toBe('namespace');
    const sink = new Writable({ write: (chunk: Buffer, _encoding, done) => (logs.push(chunk.toString()), done()) });
    server = await startServer(config, pino({ level: 'info' }, sink), { kubeConfig: env.kc });
  }, 120_000);

  afterAll(() => env?.stop(() => server?.shutdown(), ...Object.values(receivers).map((receiver) => () => receiver.close())));

  it('granted namespaces run their endpoints with the grant; one without the annotation is Ready=False/NoRepositoryGrant and runs nothing', async () => {
    for (const [namespace, name] of [['team-a', 'hook'], ['team-a', 'web-only'], ['team-b', 'hook']] as const) {
      await eventually(async () => expect(await ready(namespace, name)).toMatchObject({ status: 'True', reason: 'Configured' }), 10_000);
    }
    expect(server.endpoints.get('team-b/hook')?.config.filter.grant).toEqual(['team-b/**', 'shared/*']);
    const notGranted = await eventually(async () => {
      const condition = await ready('team-c', 'hook');
      expect(condition).toMatchObject({ status: 'False', reason: 'NoRepositoryGrant' });
      return condition;
    }, 10_000);
    expect(notGranted?.message).toContain(`Namespace team-c has no ${REPOSITORIES_ANNOTATION} annotation`);
    expect(notGranted?.message).toContain(`kubectl annotate namespace team-c ${REPOSITORIES_ANNOTATION}='team-c/**'`);
    expect(server.endpoints.get('team-c/hook')).toBeUndefined();
    const listed = (await (await fetch(`${server.adminUrl}/endpoints`)).json()) as { name: string; ready: boolean; reason: string }[];
    expect(listed.find((e) => e.name === 'team-c/hook')).toMatchObject({ ready: false, reason: 'NoRepositoryGrant' });
  });

  it('each endpoint receives exactly the events its namespace is granted, narrowed further by its own filter', async () => {
    const since = mark();
    await post('team-a/web', 'team-a/api', 'team-a/sub/x', 'team-b/app', 'team-b/deep/x', 'shared/base', 'shared/deep/x', 'team-c/app', 'other/x');
    await deliveredExactly('team-a/hook', 'a', ['team-a/web', 'team-a/api'], since); // `*` stays within one segment
    await deliveredExactly('team-a/web-only', 'aWeb', ['team-a/web'], since); // its include of team-b/** is outside the grant
    await deliveredExactly('team-b/hook', 'b', ['team-b/app', 'team-b/deep/x', 'shared/base'], since); // `**` across segments
    expect(receivers.c!.requests).toEqual([]);
  });

  it('a grant added later: the NoRepositoryGrant endpoint becomes Ready and receives within seconds', async () => {
    const started = performance.now();
    await grant('team-c', 'team-c/*');
    await eventually(async () => expect(await ready('team-c', 'hook')).toMatchObject({ status: 'True', reason: 'Configured' }), 10_000);
    const live = performance.now() - started;
    console.log(`[measure] grant annotated -> NoRepositoryGrant endpoint Ready: ${live.toFixed(0)} ms`);
    expect(live).toBeLessThan(5_000);
    const since = mark();
    await post('team-a/web', 'team-c/app');
    await deliveredExactly('team-c/hook', 'c', ['team-c/app'], since);
  });

  it('a grant narrowed: what was queued under the wider grant is discarded, never delivered; then only the new grant', async () => {
    // A receiver that refuses for now, so events wait in the endpoint's queue.
    const held = receivers.bHeld!;
    held.respond(() => 503);
    await create('team-b', 'held', { url: held.url, threshold: 1, backoff: '1s' });
    await eventually(() => expect(server.endpoints.get('team-b/held')).toBeDefined(), 10_000);
    await post('shared/base', 'shared/base', 'team-b/app');
    await eventually(() => expect(server.endpoints.get('team-b/held')?.pending).toBe(3));
    await held.waitFor((requests) => requests.some((r) => r.status === 503));
    const before = server.endpoints.get('team-b/held');
    await grant('team-b', 'team-b/**'); // shared/* taken away
    await eventually(() => expect(server.endpoints.get('team-b/held')?.config.filter.grant).toEqual(['team-b/**']), 10_000);
    expect(server.endpoints.get('team-b/held')).not.toBe(before);
    await eventually(() => expect(logs.some((l) => l.includes('"endpoint removed"') && l.includes('team-b/held') && l.includes('"discarded":3'))).toBe(true));
    expect(logs.some((l) => l.includes('repository grant narrowed') && l.includes('team-b/held'))).toBe(true);
    // The receiver comes back: only what the narrowed grant allows and was posted since arrives. An attempt the
    // removal aborted may still reach the receiver late (its bytes were on the wire before the grant narrowed): it
    // keeps its 503, so it is not counted as delivered here.
    const attempted = new Set(held.events().map((e) => e.id));
    held.clear();
    held.respond((req) => ((req.json as { events?: { id?: string }[] }).events?.some((e) => attempted.has(e.id ?? '')) ? 503 : 202));
    const since = mark();
    await post('shared/base', 'team-b/after');
    await deliveredExactly('team-b/held', 'bHeld', ['team-b/after'], since);
    await deliveredExactly('team-b/hook', 'b', ['team-b/after'], since);
    // The other endpoint of the namespace kept its queue (it was empty) and follows the new grant too.
    expect(server.endpoints.get('team-b/hook')?.config.filter.grant).toEqual(['team-b/**']);
  });

  it('a grant withdrawn: the namespace\'s endpoints stop within seconds (NoRepositoryGrant) and receive nothing more', async () => {
    await grant('team-a', null);
    for (const name of ['hook', 'web-only']) {
      await eventually(async () => expect(await ready('team-a', name)).toMatchObject({ status: 'False', reason: 'NoRepositoryGrant' }), 10_000);
      expect(server.endpoints.get(`team-a/${name}`)).toBeUndefined();
    }
    const since = mark();
    await post('team-a/web', 'team-b/app2');
    await deliveredExactly('team-b/hook', 'b', ['team-b/app2'], since);
    // Routing is decided at the ingest, before its 202: nothing went to team-a's endpoints, which are gone.
    expect(mark()).toMatchObject({ a: since.a, aWeb: since.aWeb });
  });

  it('a namespace deleted: its endpoints (deleted with it) leave the engine, the status list and the metrics', async () => {
    expect(server.endpoints.get('team-c/hook')).toBeDefined();
    const metrics = async (): Promise<string> => (await fetch(`${server.adminUrl}/metrics`)).text();
    expect(await metrics()).toContain('endpoint="team-c/hook"');
    await env.core.deleteNamespace({ name: 'team-c' });
    // envtest runs no namespace controller: do what it does, delete what the namespace holds, then finalize it.
    await env.custom.deleteNamespacedCustomObject({ group: R.group, version: R.version, namespace: 'team-c', plural: R.plural, name: 'hook' });
    const terminating = await env.core.readNamespace({ name: 'team-c' });
    await env.core.replaceNamespaceFinalize({ name: 'team-c', body: { ...terminating, spec: { finalizers: [] } } });
    await eventually(async () => {
      const answer = await env.core.readNamespace({ name: 'team-c' }).then(() => 200, (error: unknown) => statusCode(error));
      expect(answer).toBe(404);
    }, 10_000);
    await eventually(() => expect(server.endpoints.get('team-c/hook')).toBeUndefined(), 10_000);
    await eventually(() => expect(server.source.states().has('team-c/hook')).toBe(false));
    const listed = (await (await fetch(`${server.adminUrl}/endpoints`)).json()) as { name: string }[];
    expect(listed.map((e) => e.name)).not.toContain('team-c/hook');
    await eventually(async () => expect(await metrics()).not.toContain('endpoint="team-c/hook"'));
    // The other namespaces go on as before.
    await post('team-b/still');
    await receivers.b!.waitFor(() => received('b').includes('team-b/still'));
    expect(logs.join('')).not.toMatch(/list\/watch failed|status write failed/);
  });
});
