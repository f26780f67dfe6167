// The Controller wired up: its informers list and watch a fake API server (nock) through the real client-node, and
// it reconciles through an in-memory ClusterApi (the reconciler reads objects by key from there, as it would from
// the API server). The test writes watch events and checks which keys get reconciled.
import { describe, expect, it } from 'vitest';
import { NOTIFICATION_ENDPOINT_RESOURCE as R } from '../../src/api/notification-endpoint.ts';
import type { NotificationEndpointObject } from '../../src/k8s/cluster-api.ts';
import { Controller } from '../../src/controller/controller.ts';
import { EndpointSet } from '../../src/notifications/endpoint-set.ts';
import { makeEvents } from '../support/events.ts';
import { eventually } from '../support/wait.ts';
import { captureLogs, fakeKubeConfig, FakeCollection, ManualDelay, useFakeApiServer, type WatchStream } from '../k8s/support.ts';
import { FakeClusterApi } from './fake-cluster-api.ts';

const ENDPOINTS = `/apis/${R.group}/${R.version}/${R.plural}`;
const SECRETS = '/api/v1/secrets';
const namespaced = (namespace: string): { endpoints: string; secrets: string } => ({
  endpoints: `/apis/${R.group}/${R.version}/namespaces/${namespace}/${R.plural}`,
  secrets: `/api/v1/namespaces/${namespace}/secrets`,
});

let port = 7443;
const cleanups = useFakeApiServer();

const endpoint = (namespace: string, name: string, spec: Record<string, unknown>, generation = 1, resourceVersion = '1'): NotificationEndpointObject => ({
  apiVersion: R.apiVersion,
  kind: R.kind,
  metadata: { name, namespace, generation, resourceVersion, uid: `${namespace}-${name}` },
  spec,
});
const secret = (namespace: string, name: string, resourceVersion: string): object => ({
  apiVersion: 'v1',
  kind: 'Secret',
  metadata: { name, namespace, resourceVersion },
  data: { token: Buffer.from('Bearer t').toString('base64') },
});
const headerFrom = (secretName: string): Record<string, unknown> => ({
  url: 'http://127.0.0.1:9/hook',
  headers: [{ name: 'Authorization', valueFrom: { secretKeyRef: { name: secretName, key: 'token' } } }],
});

interface Harness {
  controller: Controller;
  api: FakeClusterApi;
  endpoints: EndpointSet;
  server: string;
  collection: (path: string) => FakeCollection;
}

function harness(namespaces: string[] = []): Harness {
  const server = `https://127.0.0.1:${++port}`; // own connection pool per test
  const api = new FakeClusterApi();
  const endpoints = new EndpointSet({ userAgent: 'registry-notifier/test' });
  const controller = new Controller({
    kubeConfig: fakeKubeConfig(server),
    endpoints,
    namespaces,
    statusIntervalMs: 60_000,
    logger: captureLogs().logger,
    api,
    // held: a reconcile retried after a failure (a missing Secret) waits until the test ends
    delay: new ManualDelay(0).delay,
  });
  cleanups.push(() => endpoints.close(AbortSignal.abort()));
  cleanups.push(() => controller.close());
  return { controller, api, endpoints, server, collection: (path) => new FakeCollection(path, undefined, server) };
}

/** Puts the objects in the fake ClusterApi and answers the list with them; returns the watch that follows. */
function serve(h: Harness, path: string, items: object[], resourceVersion: string): Promise<WatchStream> {
  const collection = h.collection(path);
  for (const item of items) if ((item as { kind?: string }).kind === R.kind) h.api.put(item as NotificationEndpointObject);
  collection.list(items, resourceVersion);
  return collection.watch(resourceVersion);
}

/** Reconciles since `from`, as sorted keys (each reconcile starts with a read by key). */
const reconciledSince = (h: Harness, from: number): string[] => h.api.gets.slice(from).sort();

describe('Controller', () => {
  it('cluster-wide: lists and watches all namespaces; the initial list is reconciled before start() resolves', async () => {
    const h = harness();
    const watches = [
      serve(h, ENDPOINTS, [endpoint('a', 'one', { url: 'http://127.0.0.1:9/one' }), endpoint('b', 'two', { url: 'http://127.0.0.1:9/two' })], '100'),
      serve(h, SECRETS, [secret('a', 'unrelated', '50')], '100'),
    ];
    const starting = h.controller.start();
    expect(h.controller.ready).toBe(false);
    await starting;
    expect(h.controller.ready).toBe(true);
    expect(h.endpoints.list().map((e) => e.name).sort()).toEqual(['a/one', 'b/two']);
    expect(h.api.patches.map((p) => [p.key, p.status.conditions?.[0]?.reason]).sort()).toEqual([['a/one', 'Configured'], ['b/two', 'Configured']]);
    expect([...h.controller.states()].sort()).toEqual([['a/one', { ready: true, reason: 'Configured' }], ['b/two', { ready: true, reason: 'Configured' }]]);
    await Promise.all(watches); // both watches opened from the lists' resourceVersion
  });

  it("namespaces ['a', 'b']: one informer pair per namespace, on the namespaced paths only", async () => {
    const h = harness(['a', 'b']);
    const watches = [
      serve(h, namespaced('a').endpoints, [endpoint('a', 'one', { url: 'http://127.0.0.1:9/one' })], '10'),
      serve(h, namespaced('a').secrets, [], '11'),
      serve(h, namespaced('b').endpoints, [endpoint('b', 'two', { url: 'http://127.0.0.1:9/two' })], '12'),
      serve(h, namespaced('b').secrets, [], '13'),
    ];
    await h.controller.start();
    expect(h.controller.ready).toBe(true);
    expect(h.endpoints.list().map((e) => e.name).sort()).toEqual(['a/one', 'b/two']);
    await Promise.all(watches);
  });

  it('a Secret still missing does not hold start() up: that endpoint is SecretNotFound and retried later', async () => {
    const h = harness();
    const watches = [
      serve(h, ENDPOINTS, [endpoint('a', 'waits', headerFrom('missing'))], '100'),
      serve(h, SECRETS, [], '100'),
    ];
    await h.controller.start();
    expect(h.controller.ready).toBe(true);
    expect(h.controller.states().get('a/waits')).toMatchObject({ ready: false, reason: 'SecretNotFound' });
    await Promise.all(watches);
  });

  it('a status-only MODIFIED (same generation) is not reconciled; a new generation is', async () => {
    const h = harness();
    const endpointsWatch = serve(h, ENDPOINTS, [endpoint('a', 'one', { url: 'http://127.0.0.1:9/one' }), endpoint('a', 'other', { url: 'http://127.0.0.1:9/x' })], '100');
    const secretsWatch = serve(h, SECRETS, [], '100');
    await h.controller.start();
    const stream = await endpointsWatch;
    await secretsWatch;
    const before = h.api.gets.length;
    // Our own status write comes back as a MODIFIED with the same generation.
    stream.send('MODIFIED', { ...endpoint('a', 'one', { url: 'http://127.0.0.1:9/one' }, 1, '101'), status: { delivered: 5 } });
    // A spec change of another object: the API server bumps its generation.
    h.api.put(endpoint('a', 'other', { url: 'http://127.0.0.1:9/y' }, 2, '102'));
    stream.send('MODIFIED', endpoint('a', 'other', { url: 'http://127.0.0.1:9/y' }, 2, '102'));
    await eventually(() => expect(h.endpoints.get('a/other')?.config.url).toBe('http://127.0.0.1:9/y'), 5000, 5);
    expect(reconciledSince(h, before)).toEqual(['a/other']);
    // and the first object's spec changes too: reconciled now
    h.api.put(endpoint('a', 'one', { url: 'http://127.0.0.1:9/one-b' }, 2, '103'));
    stream.send('MODIFIED', endpoint('a', 'one', { url: 'http://127.0.0.1:9/one-b' }, 2, '103'));
    await eventually(() => expect(h.endpoints.get('a/one')?.config.url).toBe('http://127.0.0.1:9/one-b'), 5000, 5);
    expect(reconciledSince(h, before)).toEqual(['a/one', 'a/other']);
  });

  it('resync reconciles every known endpoint, catching a change no watch event announced', async () => {
    const h = harness();
    const watches = [
      serve(h, ENDPOINTS, [endpoint('a', 'one', { url: 'http://127.0.0.1:9/one' }), endpoint('b', 'two', { url: 'http://127.0.0.1:9/two' })], '100'),
      serve(h, SECRETS, [], '100'),
    ];
    await h.controller.start();
    await Promise.all(watches);
    const before = h.api.gets.length;
    h.api.put(endpoint('b', 'two', { url: 'http://127.0.0.1:9/two-b' }, 2, '101')); // the watch never tells
    h.controller.resync();
    await eventually(() => expect(h.endpoints.get('b/two')?.config.url).toBe('http://127.0.0.1:9/two-b'), 5000, 5);
    await eventually(() => expect(reconciledSince(h, before)).toEqual(['a/one', 'b/two']), 5000, 5);
  });

  it('a DELETED event removes the endpoint from the engine', async () => {
    const h = harness();
    const endpointsWatch = serve(h, ENDPOINTS, [endpoint('a', 'one', { url: 'http://127.0.0.1:9/one' })], '100');
    const secretsWatch = serve(h, SECRETS, [], '100');
    await h.controller.start();
    const stream = await endpointsWatch;
    await secretsWatch;
    h.api.objects.delete('a/one');
    stream.send('DELETED', endpoint('a', 'one', { url: 'http://127.0.0.1:9/one' }, 1, '101'));
    await eventually(() => expect(h.endpoints.get('a/one')).toBeUndefined(), 5000, 5);
    expect(h.controller.states().has('a/one')).toBe(false);
  });

  it('a Secret event reconciles exactly the endpoints in its namespace that reference it', async () => {
    const h = harness();
    const endpointsWatch = serve(h, ENDPOINTS, [
      endpoint('a', 'header', headerFrom('hook-token')),
      endpoint('a', 'signing', { url: 'http://127.0.0.1:9/s', signing: { secretKeyRef: { name: 'hook-token', key: 'token' } } }),
      endpoint('a', 'tls', { url: 'https://127.0.0.1:9/t', tls: { certSecretRef: { name: 'hook-token' } } }),
      endpoint('a', 'plain', { url: 'http://127.0.0.1:9/p' }),
      endpoint('a', 'other-secret', headerFrom('other-token')),
      endpoint('b', 'header', headerFrom('hook-token')), // same Secret name, another namespace
      endpoint('b', 'barrier', headerFrom('barrier-token')),
    ], '100');
    const secretsWatch = serve(h, SECRETS, [], '100');
    await h.controller.start();
    await endpointsWatch;
    const secrets = await secretsWatch;
    expect(h.controller.states().get('a/header')).toMatchObject({ reason: 'SecretNotFound' });
    const before = h.api.gets.length;
    h.api.putSecret('a', 'hook-token', { token: 'Bearer t' });
    secrets.send('ADDED', secret('a', 'hook-token', '101'));
    // Events on one stream are handled in order: once the barrier's reconcile started, the first event's had too.
    secrets.send('ADDED', secret('b', 'barrier-token', '102'));
    await eventually(() => expect(h.api.gets.slice(before)).toContain('b/barrier'), 5000, 5);
    expect(reconciledSince(h, before)).toEqual(['a/header', 'a/signing', 'a/tls', 'b/barrier']);
    await eventually(() => expect(h.controller.states().get('a/header')).toEqual({ ready: true, reason: 'Configured' }), 5000, 5);
    expect(h.endpoints.get('a/header')?.config.headers).toEqual([['Authorization', 'Bearer t']]);
    expect(h.endpoints.get('b/header')).toBeUndefined();
  });

  it('mayForget: only once synced, only inside the watched namespaces, only for identities it does not know', async () => {
    const h = harness(['a']);
    const watches = [
      serve(h, namespaced('a').endpoints, [
        endpoint('a', 'one', { url: 'http://127.0.0.1:9/one' }),
        endpoint('a', 'bad', { url: 'http://127.0.0.1:9/bad', headers: [{ name: 'Host', value: 'x' }] }),
      ], '10'),
      serve(h, namespaced('a').secrets, [], '11'),
    ];
    expect(h.controller.mayForget('a/gone')).toBe(false); // not synced yet
    await h.controller.start();
    await Promise.all(watches);
    expect(h.controller.mayForget('a/gone')).toBe(true);
    expect(h.controller.mayForget('a/one')).toBe(false);
    expect(h.controller.mayForget('a/bad')).toBe(false); // invalid, but it exists
    expect(h.controller.mayForget('b/gone')).toBe(false); // not watched: cannot know
  });

  it('close() stops watching (ready false), and finish() writes the last status', async () => {
    const h = harness();
    const endpointsWatch = serve(h, ENDPOINTS, [endpoint('a', 'one', { url: 'http://127.0.0.1:9/one', disabled: true })], '100');
    const secretsWatch = serve(h, SECRETS, [], '100');
    await h.controller.start();
    const stream = await endpointsWatch;
    await secretsWatch;
    await h.controller.close();
    expect(h.controller.ready).toBe(false);
    const gets = h.api.gets.length;
    h.api.put(endpoint('a', 'one', { url: 'http://127.0.0.1:9/changed' }, 2, '101'));
    stream.send('MODIFIED', endpoint('a', 'one', { url: 'http://127.0.0.1:9/changed' }, 2, '101'));
    await new Promise((resolve) => setImmediate(resolve));
    expect(h.api.gets).toHaveLength(gets);
    await h.endpoints.write(makeEvents(2, 'late')); // disabled: they stay queued
    const patches = h.api.patches.length;
    await h.controller.finish();
    expect(h.api.patches).toHaveLength(patches + 1);
    expect(h.api.patches.at(-1)?.status.pending).toBe(2);
    await h.controller.close(); // idempotent
  });
});
