// The Controller wired up over the in-memory ClusterApi: its informers list and watch the fake (the test writes watch
// events into the open watches), and the reconciler reads objects by key from it, as it would from the API server.
// The test checks which keys get reconciled. KubeClusterApi's own list and watch requests are tested against a fake
// API server in test/k8s.
import { afterEach, describe, expect, it, vi } from 'vitest';
import { NOTIFICATION_ENDPOINT_RESOURCE as R } from '../../src/api/notification-endpoint.ts';
import type { NotificationEndpointObject } from '../../src/k8s/cluster-api.ts';
import { Controller } from '../../src/controller/controller.ts';
import { EndpointReconciler } from '../../src/controller/reconciler.ts';
import { EndpointSet } from '../../src/notifications/endpoint-set.ts';
import { makeEvents } from '../support/events.ts';
import { eventually } from '../support/wait.ts';
import { captureLogs, ManualDelay } from '../k8s/support.ts';
import { REPOSITORIES_ANNOTATION } from '../../src/sources/repository-grant.ts';
import { REPLAY_REQUESTED_ANNOTATION as REPLAY } from '../../src/api/notification-endpoint.ts';
import { FakeClusterApi, type FakeWatch } from './fake-cluster-api.ts';

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

const endpoint = (namespace: string, name: string, spec: Record<string, unknown>, generation = 1, resourceVersion = '1'): NotificationEndpointObject => ({
  apiVersion: R.apiVersion,
  kind: R.kind,
  metadata: { name, namespace, generation, resourceVersion, uid: `${namespace}-${name}` },
  spec,
});
const secret = (namespace: string, name: string, resourceVersion: string): object => ({ metadata: { name, namespace, resourceVersion } });
const headerFrom = (secretName: string): Record<string, unknown> => ({
  url: 'http://127.0.0.1:9/hook',
  headers: [{ name: 'Authorization', valueFrom: { secretKeyRef: { name: secretName, key: 'token' } } }],
});

interface Harness {
  controller: Controller;
  api: FakeClusterApi;
  endpoints: EndpointSet;
}

function harness(namespaces: string[] = [], options: { tenancy?: boolean; writesStatus?: () => boolean } = {}): Harness {
  const api = new FakeClusterApi();
  const endpoints = new EndpointSet({ userAgent: 'registry-notifier/test' });
  const controller = new Controller({
    api,
    endpoints,
    namespaces,
    statusIntervalMs: 60_000,
    logger: captureLogs().logger,
    // held: a reconcile retried after a failure (a missing Secret) waits until the test ends
    delay: new ManualDelay(0).delay,
    ...options,
  });
  cleanups.push(() => endpoints.close(AbortSignal.abort()));
  cleanups.push(() => controller.close());
  return { controller, api, endpoints };
}

/** Puts the objects in the fake; they are in the informers' first list. */
function given(h: Harness, ...objects: NotificationEndpointObject[]): void {
  for (const object of objects) h.api.put(object);
}

/** Starts the controller; resolves with the watches opened after the lists (all namespaces). */
async function start(h: Harness): Promise<{ endpoints: FakeWatch; secrets: FakeWatch }> {
  const watches = [h.api.nextWatch('notificationendpoints', undefined, 0), h.api.nextWatch('secrets', undefined, 0)] as const;
  await h.controller.start();
  const [endpoints, secrets] = await Promise.all(watches);
  return { endpoints, secrets };
}

// Every reconcile, by key (the real method runs; the controller reads objects from its informers, not the API).
const reconcile = vi.spyOn(EndpointReconciler.prototype, 'reconcile');
const reconciles = (): number => reconcile.mock.calls.length;
/** Reconciles since `from`, as sorted keys. */
const reconciledSince = (_h: Harness, from: number): string[] => reconcile.mock.calls.slice(from).map(([key]) => key).sort();

describe('Controller', () => {
  it('cluster-wide: lists and watches all namespaces from the lists resourceVersion; the initial list is reconciled before start() resolves', async () => {
    const h = harness();
    given(h, endpoint('a', 'one', { url: 'http://127.0.0.1:9/one' }), endpoint('b', 'two', { url: 'http://127.0.0.1:9/two' }));
    h.api.putSecret('a', 'unrelated', { token: 'x' }, '50');
    const starting = start(h);
    expect(h.controller.ready).toBe(false);
    const watches = await starting;
    expect(h.controller.ready).toBe(true);
    expect(h.api.lists.sort()).toEqual(['notificationendpoints', 'secrets']);
    expect([watches.endpoints.options, watches.secrets.options]).toEqual([
      expect.objectContaining({ resourceVersion: '100', allowWatchBookmarks: true }),
      expect.objectContaining({ resourceVersion: '100', allowWatchBookmarks: true }),
    ]);
    expect(h.endpoints.list().map((e) => e.name).sort()).toEqual(['a/one', 'b/two']);
    expect(h.api.patches.map((p) => [p.key, p.status.conditions?.[0]?.reason]).sort()).toEqual([['a/one', 'Configured'], ['b/two', 'Configured']]);
    expect([...h.controller.states()].sort()).toEqual([['a/one', { ready: true, reason: 'Configured' }], ['b/two', { ready: true, reason: 'Configured' }]]);
  });

  it("namespaces ['a', 'b']: one informer pair per namespace, listing and watching only those namespaces", async () => {
    const h = harness(['a', 'b']);
    given(h, endpoint('a', 'one', { url: 'http://127.0.0.1:9/one' }), endpoint('b', 'two', { url: 'http://127.0.0.1:9/two' }), endpoint('c', 'unwatched', { url: 'http://127.0.0.1:9/c' }));
    const watches = ['a', 'b'].flatMap((ns) => [h.api.nextWatch('notificationendpoints', ns, 0), h.api.nextWatch('secrets', ns, 0)]);
    await h.controller.start();
    expect(h.controller.ready).toBe(true);
    expect(h.api.lists.sort()).toEqual(['notificationendpoints in a', 'notificationendpoints in b', 'secrets in a', 'secrets in b']);
    expect(h.endpoints.list().map((e) => e.name).sort()).toEqual(['a/one', 'b/two']);
    await Promise.all(watches);
    expect(h.api.watches.map((w) => `${w.resource} in ${w.namespace}`).sort()).toEqual(h.api.lists);
  });

  it('a Secret still missing does not hold start() up: that endpoint is SecretNotFound and retried later', async () => {
    const h = harness();
    given(h, endpoint('a', 'waits', headerFrom('missing')));
    await start(h);
    expect(h.controller.ready).toBe(true);
    expect(h.controller.states().get('a/waits')).toMatchObject({ ready: false, reason: 'SecretNotFound' });
  });

  it('a status-only MODIFIED (same generation) is not reconciled; a new generation is', async () => {
    const h = harness();
    given(h, endpoint('a', 'one', { url: 'http://127.0.0.1:9/one' }), endpoint('a', 'other', { url: 'http://127.0.0.1:9/x' }));
    const { endpoints: stream } = await start(h);
    const before = reconciles();
    // Our own status write comes back as a MODIFIED with the same generation.
    stream.send('MODIFIED', { ...endpoint('a', 'one', { url: 'http://127.0.0.1:9/one' }, 1, '101'), status: { delivered: 5 } });
    // A spec change of another object: the API server bumps its generation.
    h.api.put(endpoint('a', 'other', { url: 'http://127.0.0.1:9/y' }, 2, '102'));
    stream.send('MODIFIED', endpoint('a', 'other', { url: 'http://127.0.0.1:9/y' }, 2, '102'));
    await eventually(() => expect(h.endpoints.get('a/other')?.config.url).toBe('http://127.0.0.1:9/y'), 5000);
    expect(reconciledSince(h, before)).toEqual(['a/other']);
    // and the first object's spec changes too: reconciled now
    h.api.put(endpoint('a', 'one', { url: 'http://127.0.0.1:9/one-b' }, 2, '103'));
    stream.send('MODIFIED', endpoint('a', 'one', { url: 'http://127.0.0.1:9/one-b' }, 2, '103'));
    await eventually(() => expect(h.endpoints.get('a/one')?.config.url).toBe('http://127.0.0.1:9/one-b'), 5000);
    expect(reconciledSince(h, before)).toEqual(['a/one', 'a/other']);
  });

  it('a new request annotation value reconciles (no new generation) and is handled; our status write and other annotations do not', async () => {
    const h = harness();
    given(h, endpoint('a', 'one', { url: 'http://127.0.0.1:9/one' }), endpoint('a', 'other', { url: 'http://127.0.0.1:9/x' }));
    const { endpoints: stream } = await start(h);
    const before = reconciles();
    const annotated = (annotations: Record<string, string>, resourceVersion: string): NotificationEndpointObject => {
      const object = endpoint('a', 'one', { url: 'http://127.0.0.1:9/one' }, 1, resourceVersion);
      return { ...object, metadata: { ...object.metadata, annotations } };
    };
    h.api.put(annotated({ [REPLAY]: '1764633600' }, '101'));
    stream.send('MODIFIED', annotated({ [REPLAY]: '1764633600' }, '101'));
    await eventually(() => expect(h.api.events.map((e) => e.reason)).toContain('ReplayRequested'), 5000);
    expect(reconciledSince(h, before)).toEqual(['a/one']);
    // Our status write (the handled value) comes back; then another annotation changes; neither is reconciled.
    stream.send('MODIFIED', { ...annotated({ [REPLAY]: '1764633600' }, '102'), status: h.api.objects.get('a/one')?.status });
    stream.send('MODIFIED', annotated({ [REPLAY]: '1764633600', note: 'x' }, '103'));
    h.api.put(endpoint('a', 'other', { url: 'http://127.0.0.1:9/y' }, 2, '104'));
    stream.send('MODIFIED', endpoint('a', 'other', { url: 'http://127.0.0.1:9/y' }, 2, '104'));
    await eventually(() => expect(h.endpoints.get('a/other')?.config.url).toBe('http://127.0.0.1:9/y'), 5000);
    expect(reconciledSince(h, before)).toEqual(['a/one', 'a/other']);
    expect(h.api.events.filter((e) => e.reason === 'ReplayRequested')).toHaveLength(1);
  });

  it('handleRequestsLeft (a replica starting to write status) queues exactly the endpoints with a request not handled', async () => {
    let leading = false;
    const h = harness([], { writesStatus: () => leading });
    const withRequest = (name: string, value: string, handled?: string): NotificationEndpointObject => {
      const object = endpoint('a', name, { url: `http://127.0.0.1:9/${name}` });
      return { ...object, metadata: { ...object.metadata, annotations: { [REPLAY]: value } }, ...(handled && { status: { lastHandledReplayAt: handled } }) };
    };
    given(h, withRequest('asks', 'v1'), withRequest('done', 'v1', 'v1'), endpoint('a', 'none', { url: 'http://127.0.0.1:9/none' }));
    await start(h);
    expect(h.api.events.filter((e) => e.reason === 'ReplayRequested')).toEqual([]); // not the leader: left alone
    const before = reconciles();
    leading = true;
    h.controller.handleRequestsLeft();
    await eventually(() => expect(h.api.events.filter((e) => e.reason === 'ReplayRequested').map((e) => e.key)).toEqual(['a/asks']), 5000);
    expect(reconciledSince(h, before)).toEqual(['a/asks']);
    expect(h.api.objects.get('a/asks')?.status?.lastHandledReplayAt).toBe('v1');
  });

  it('resync reconciles every known endpoint from the cache (no API read), putting back what the engine lost', async () => {
    const h = harness();
    given(h, endpoint('a', 'one', { url: 'http://127.0.0.1:9/one' }), endpoint('b', 'two', { url: 'http://127.0.0.1:9/two' }));
    await start(h);
    const before = reconciles();
    await h.endpoints.remove('b/two'); // drift the watch cannot tell
    h.controller.resync();
    await eventually(() => expect(h.endpoints.get('b/two')?.config.url).toBe('http://127.0.0.1:9/two'), 5000);
    await eventually(() => expect(reconciledSince(h, before)).toEqual(['a/one', 'b/two']), 5000);
    expect(h.api.gets, 'objects are read from the informers').toEqual([]);
  });

  it('a DELETED event removes the endpoint from the engine', async () => {
    const h = harness();
    given(h, endpoint('a', 'one', { url: 'http://127.0.0.1:9/one' }));
    const { endpoints: stream } = await start(h);
    h.api.objects.delete('a/one');
    stream.send('DELETED', endpoint('a', 'one', { url: 'http://127.0.0.1:9/one' }, 1, '101'));
    await eventually(() => expect(h.endpoints.get('a/one')).toBeUndefined(), 5000);
    expect(h.controller.states().has('a/one')).toBe(false);
  });

  it('a watch that ends is opened again from the last resourceVersion it saw; the cache stays', async () => {
    const h = harness();
    given(h, endpoint('a', 'one', { url: 'http://127.0.0.1:9/one' }));
    const { endpoints: first } = await start(h);
    h.api.put(endpoint('a', 'two', { url: 'http://127.0.0.1:9/two' }, 1, '105'));
    first.send('ADDED', endpoint('a', 'two', { url: 'http://127.0.0.1:9/two' }, 1, '105'));
    await eventually(() => expect(h.endpoints.get('a/two')).toBeDefined(), 5000);
    const next = h.api.nextWatch('notificationendpoints');
    first.end(); // the server's timeout
    expect((await next).options.resourceVersion).toBe('105');
    expect(h.api.lists.filter((l) => l === 'notificationendpoints')).toHaveLength(1);
  });

  it('a Secret event reconciles exactly the endpoints in its namespace that reference it', async () => {
    const h = harness();
    given(h,
      endpoint('a', 'header', headerFrom('hook-token')),
      endpoint('a', 'signing', { url: 'http://127.0.0.1:9/s', signing: { secretKeyRef: { name: 'hook-token', key: 'token' } } }),
      endpoint('a', 'tls', { url: 'https://127.0.0.1:9/t', tls: { certSecretRef: { name: 'hook-token' } } }),
      endpoint('a', 'plain', { url: 'http://127.0.0.1:9/p' }),
      endpoint('a', 'other-secret', headerFrom('other-token')),
      endpoint('b', 'header', headerFrom('hook-token')), // same Secret name, another namespace
      endpoint('b', 'barrier', headerFrom('barrier-token')),
    );
    const { secrets } = await start(h);
    expect(h.controller.states().get('a/header')).toMatchObject({ reason: 'SecretNotFound' });
    const before = reconciles();
    h.api.putSecret('a', 'hook-token', { token: 'Bearer t' }, '101');
    secrets.send('ADDED', secret('a', 'hook-token', '101'));
    // Events on one stream are handled in order: once the barrier's reconcile started, the first event's had too.
    secrets.send('ADDED', secret('b', 'barrier-token', '102'));
    await eventually(() => expect(reconciledSince(h, before)).toContain('b/barrier'), 5000);
    expect(reconciledSince(h, before)).toEqual(['a/header', 'a/signing', 'a/tls', 'b/barrier']);
    await eventually(() => expect(h.controller.states().get('a/header')).toEqual({ ready: true, reason: 'Configured' }), 5000);
    expect(h.endpoints.get('a/header')?.config.headers).toEqual([['Authorization', 'Bearer t']]);
    expect(h.endpoints.get('b/header')).toBeUndefined();
  });

  it('mayForget: only once synced, only inside the watched namespaces, only for identities it does not know', async () => {
    const h = harness(['a']);
    given(h,
      endpoint('a', 'one', { url: 'http://127.0.0.1:9/one' }),
      endpoint('a', 'bad', { url: 'http://127.0.0.1:9/bad', headers: [{ name: 'Host', value: 'x' }] }),
    );
    expect(h.controller.mayForget('a/gone')).toBe(false); // not synced yet
    await h.controller.start();
    expect(h.controller.mayForget('a/gone')).toBe(true);
    expect(h.controller.mayForget('a/one')).toBe(false);
    expect(h.controller.mayForget('a/bad')).toBe(false); // invalid, but it exists
    expect(h.controller.mayForget('b/gone')).toBe(false); // not watched: cannot know
  });

  it('close() stops watching (ready false, watches aborted), and finish() writes the last status', async () => {
    const h = harness();
    given(h, endpoint('a', 'one', { url: 'http://127.0.0.1:9/one', disabled: true }));
    const { endpoints: stream } = await start(h);
    await h.controller.close();
    expect(h.controller.ready).toBe(false);
    expect(h.api.watches.map((w) => w.open)).toEqual([false, false]);
    const gets = reconciles();
    h.api.put(endpoint('a', 'one', { url: 'http://127.0.0.1:9/changed' }, 2, '101'));
    stream.send('MODIFIED', endpoint('a', 'one', { url: 'http://127.0.0.1:9/changed' }, 2, '101'));
    await h.endpoints.write(makeEvents(2, 'late')); // disabled: they stay queued
    const patches = h.api.patches.length;
    await h.controller.finish();
    expect(h.api.patches).toHaveLength(patches + 1);
    expect(h.api.patches.at(-1)?.status.pending).toBe(2);
    // finish() wrote the last status after the late event: a reconcile it started would have read the object by then.
    expect(reconciles()).toBe(gets);
    await h.controller.close(); // idempotent
  });
});

describe('Controller with tenancy', () => {
  const ns = (name: string, resourceVersion: string, grant?: string): object =>
    ({ metadata: { name, resourceVersion, ...(grant !== undefined && { annotations: { [REPOSITORIES_ANNOTATION]: grant } }) } });

  it('cluster-wide: lists and watches every Namespace; an endpoint of a granted one runs with the grant, one without is NoRepositoryGrant', async () => {
    const h = harness([], { tenancy: true });
    h.api.putNamespace('a', { [REPOSITORIES_ANNOTATION]: 'a/*' });
    h.api.putNamespace('b');
    given(h, endpoint('a', 'one', { url: 'http://127.0.0.1:9/one' }), endpoint('b', 'two', { url: 'http://127.0.0.1:9/two' }));
    const watch = h.api.nextWatch('namespaces', undefined, 0);
    await start(h);
    expect((await watch).options).toMatchObject({ resourceVersion: '100', allowWatchBookmarks: true });
    expect(h.api.lists.sort()).toEqual(['namespaces', 'notificationendpoints', 'secrets']);
    expect(h.endpoints.get('a/one')?.config.filter.grant).toEqual(['a/*']);
    expect(h.endpoints.get('b/two')).toBeUndefined();
    expect(h.controller.states().get('b/two')).toMatchObject({ ready: false, reason: 'NoRepositoryGrant' });
  });

  it("namespaces ['a', 'b']: one Namespace informer per watched namespace, by name", async () => {
    const h = harness(['a', 'b'], { tenancy: true });
    h.api.putNamespace('a', { [REPOSITORIES_ANNOTATION]: 'a/*' });
    h.api.putNamespace('c', { [REPOSITORIES_ANNOTATION]: '**' });
    const watches = [h.api.nextWatch('namespaces', 'a', 0), h.api.nextWatch('namespaces', 'b', 0)];
    await h.controller.start();
    await Promise.all(watches);
    expect(h.api.lists.filter((l) => l.startsWith('namespaces')).sort()).toEqual(['namespaces in a', 'namespaces in b']);
  });

  it('a changed grant reconciles exactly the endpoints of that namespace; a Namespace change that keeps the grant reconciles nothing', async () => {
    const h = harness([], { tenancy: true });
    h.api.putNamespace('a');
    h.api.putNamespace('b', { [REPOSITORIES_ANNOTATION]: 'b/*' });
    given(h, endpoint('a', 'one', { url: 'http://127.0.0.1:9/one' }), endpoint('a', 'two', { url: 'http://127.0.0.1:9/two' }), endpoint('b', 'three', { url: 'http://127.0.0.1:9/three' }));
    const watch = h.api.nextWatch('namespaces', undefined, 0);
    await start(h);
    const namespaces = await watch;
    expect(h.controller.states().get('a/one')).toMatchObject({ reason: 'NoRepositoryGrant' });
    const before = reconciles();
    // A label or status change of b: same grant, nothing to do. Then a's grant appears.
    namespaces.send('MODIFIED', ns('b', '101', 'b/*'));
    h.api.putNamespace('a', { [REPOSITORIES_ANNOTATION]: 'a/**' }, '102');
    namespaces.send('MODIFIED', ns('a', '102', 'a/**'));
    await eventually(() => expect(h.endpoints.get('a/two')?.config.filter.grant).toEqual(['a/**']), 5000);
    await eventually(() => expect(h.endpoints.get('a/one')?.config.filter.grant).toEqual(['a/**']), 5000);
    expect(reconciledSince(h, before)).toEqual(['a/one', 'a/two']);
    expect(h.controller.states().get('a/one')).toEqual({ ready: true, reason: 'Configured' });
    // Withdrawn again: both stop.
    h.api.putNamespace('a', {}, '103');
    namespaces.send('MODIFIED', ns('a', '103'));
    await eventually(() => expect(h.endpoints.list().map((e) => e.name)).toEqual(['b/three']), 5000);
    expect(h.controller.states().get('a/two')).toMatchObject({ reason: 'NoRepositoryGrant' });
  });

  it('a deleted Namespace: its endpoints (deleted with it) leave the engine and the status, and its grant is forgotten', async () => {
    const h = harness([], { tenancy: true });
    h.api.putNamespace('a', { [REPOSITORIES_ANNOTATION]: 'a/*' });
    given(h, endpoint('a', 'one', { url: 'http://127.0.0.1:9/one' }));
    const watch = h.api.nextWatch('namespaces', undefined, 0);
    const { endpoints: stream } = await start(h);
    const namespaces = await watch;
    expect(h.endpoints.get('a/one')).toBeDefined();
    // The namespace controller deletes the objects in it, then the Namespace; here the Namespace's event comes first:
    // the grant is gone, so the endpoint leaves the engine at once, before its own DELETED arrives.
    h.api.objects.delete('a/one');
    h.api.namespaceObjects.delete('a');
    namespaces.send('DELETED', ns('a', '104', 'a/*'));
    await eventually(() => expect(h.endpoints.get('a/one')).toBeUndefined(), 5000);
    stream.send('DELETED', endpoint('a', 'one', { url: 'http://127.0.0.1:9/one' }, 1, '104'));
    await eventually(() => expect(h.controller.states().has('a/one')).toBe(false), 5000);
    // Created again with the same name and grant: the grant is news again, and its endpoints are reconciled.
    h.api.putNamespace('a', { [REPOSITORIES_ANNOTATION]: 'a/*' }, '105');
    const before = reconciles();
    stream.send('ADDED', endpoint('a', 'one', { url: 'http://127.0.0.1:9/one' }, 1, '106'));
    namespaces.send('ADDED', ns('a', '105', 'a/*'));
    await eventually(() => expect(h.endpoints.get('a/one')).toBeDefined(), 5000);
    expect(reconciledSince(h, before)).toContain('a/one');
  });

  it('mayForget: an endpoint without a grant keeps nothing in the journal', async () => {
    const h = harness([], { tenancy: true });
    h.api.putNamespace('a');
    given(h, endpoint('a', 'one', { url: 'http://127.0.0.1:9/one' }));
    await h.controller.start();
    expect(h.controller.mayForget('a/one')).toBe(true);
  });
});
