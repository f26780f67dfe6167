// KubeClusterApi against a fake API server (nock): the exact requests it sends (path, query, content type, body)
// and how it reads answers: 404 as absence, conflicts and 5xx retried a few times in place, 403 explained; lists
// and watches on the cluster-wide and namespaced paths, Secrets reduced to their identity, Namespaces to their
// identity and grant annotation.
import { ApiException } from '@kubernetes/client-node';
import nock from 'nock';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { NOTIFICATION_ENDPOINT_RESOURCE as R } from '../../src/api/notification-endpoint.ts';
import type { NotificationEndpointObject } from '../../src/k8s/cluster-api.ts';
import { describeApiError, statusCode } from '../../src/k8s/errors.ts';
import { COMPONENT, KubeClusterApi, WATCH_INACTIVITY_MS } from '../../src/k8s/kube-cluster-api.ts';
import { API_SERVER, fakeKubeConfig, FakeCollection, statusBody, TOKEN, trackUnmatched, watchQuery, WatchStream } from './support.ts';

const OBJECT_PATH = `/apis/${R.group}/${R.version}/namespaces/ns/${R.plural}/name`;
const STATUS_PATH = `${OBJECT_PATH}/status`;
const MERGE_PATCH = 'application/merge-patch+json';

let unmatched: ReturnType<typeof trackUnmatched>;
let api: KubeClusterApi;

beforeEach(() => {
  nock.disableNetConnect();
  unmatched = trackUnmatched();
  api = new KubeClusterApi(fakeKubeConfig());
});

afterEach(() => {
  const pending = nock.pendingMocks();
  unmatched.dispose();
  nock.cleanAll();
  nock.enableNetConnect();
  expect(unmatched.requests).toEqual([]);
  expect(pending).toEqual([]);
});

const endpointObject = (): NotificationEndpointObject => ({
  apiVersion: R.apiVersion,
  kind: R.kind,
  metadata: { name: 'name', namespace: 'ns', uid: '6f1c0d0e-2b7e-4c43-9d4f-5b8c7f1e2a90', resourceVersion: '42', generation: 3 },
  spec: { url: 'http://127.0.0.1:9/hook' },
});

/** Scripts the status subresource's answers in order; records each request's content type and body. */
function statusPatches(...codes: number[]): { requests: { contentType: string | undefined; body: unknown }[] } {
  const requests: { contentType: string | undefined; body: unknown }[] = [];
  for (const code of codes) {
    nock(API_SERVER, { reqheaders: { authorization: `Bearer ${TOKEN}` } })
      .patch(STATUS_PATH, (body: unknown) => {
        requests.push({ contentType: undefined, body });
        return true;
      })
      .query({ fieldManager: COMPONENT })
      .reply((request: Request) => {
        const last = requests.at(-1)!;
        last.contentType = request.headers.get('content-type') ?? undefined;
        return code < 300 ? [code, { ...endpointObject(), status: (last.body as { status: unknown }).status }] : [code, statusBody(code, 'Failed')];
      });
  }
  return { requests };
}

describe('KubeClusterApi.patchStatus', () => {
  it('merge-patches the status subresource with {status}, as field manager registry-notifier; null clears a field', async () => {
    const { requests } = statusPatches(200);
    const status = {
      observedGeneration: 3,
      conditions: [{ type: 'Ready', status: 'True' as const, reason: 'Configured', observedGeneration: 3, lastTransitionTime: '2026-01-02T03:04:05Z' }],
      delivered: 7,
      insecureSkipVerify: null,
    };
    await api.patchStatus('ns', 'name', status);
    expect(requests).toEqual([{ contentType: MERGE_PATCH, body: { status } }]);
  });

  it('a 409 conflict is retried in place and then succeeds', async () => {
    const { requests } = statusPatches(409, 200);
    await api.patchStatus('ns', 'name', { delivered: 1 });
    expect(requests.map((r) => r.body)).toEqual([{ status: { delivered: 1 } }, { status: { delivered: 1 } }]);
    expect(requests.map((r) => r.contentType)).toEqual([MERGE_PATCH, MERGE_PATCH]);
  });

  it('429 and 5xx are retried too; after three failed attempts it gives up with the last error', async () => {
    const { requests } = statusPatches(429, 500, 500);
    const error = await api.patchStatus('ns', 'name', { delivered: 1 }).catch((e: unknown) => e);
    expect(requests).toHaveLength(3);
    expect(error).toBeInstanceOf(ApiException);
    expect(statusCode(error)).toBe(500);
    expect(describeApiError(error)).toBe('HTTP 500');
  });

  it('500, 500, 500 gives up with the error after exactly three attempts', async () => {
    const { requests } = statusPatches(500, 500, 500);
    await expect(api.patchStatus('ns', 'name', { delivered: 1 })).rejects.toMatchObject({ code: 500 });
    expect(requests).toHaveLength(3);
  });

  it('a 422 (the server refuses the content) is not retried', async () => {
    const { requests } = statusPatches(422);
    await expect(api.patchStatus('ns', 'name', { delivered: -1 })).rejects.toMatchObject({ code: 422 });
    expect(requests).toHaveLength(1);
  });

  it('404 (the object was deleted meanwhile) is not an error', async () => {
    const { requests } = statusPatches(404);
    await expect(api.patchStatus('ns', 'name', { delivered: 1 })).resolves.toBeUndefined();
    expect(requests).toHaveLength(1);
  });
});

describe('KubeClusterApi reads', () => {
  it('getEndpoint returns the object as stored', async () => {
    const stored = { ...endpointObject(), status: { delivered: 5 } };
    nock(API_SERVER).get(OBJECT_PATH).matchHeader('authorization', `Bearer ${TOKEN}`).reply(200, stored);
    expect(await api.getEndpoint('ns', 'name')).toEqual(stored);
  });

  it('getEndpoint: 404 → undefined', async () => {
    nock(API_SERVER).get(OBJECT_PATH).reply(404, statusBody(404, 'NotFound'));
    expect(await api.getEndpoint('ns', 'name')).toBeUndefined();
  });

  it('getEndpoint: 403 surfaces as an error whose description points at RBAC (and carries no body)', async () => {
    nock(API_SERVER).get(OBJECT_PATH).reply(403, statusBody(403, 'Forbidden', 'notificationendpoints.registry-notifier.io "name" is forbidden: User "system:serviceaccount:x:y" cannot get resource'));
    const error = await api.getEndpoint('ns', 'name').catch((e: unknown) => e);
    expect(statusCode(error)).toBe(403);
    expect(describeApiError(error)).toBe('HTTP 403 (forbidden: check the RBAC rules of the service account)');
  });

  it('getSecret decodes base64 data into bytes', async () => {
    nock(API_SERVER).get('/api/v1/namespaces/ns/secrets/hook-token').reply(200, {
      apiVersion: 'v1',
      kind: 'Secret',
      metadata: { name: 'hook-token', namespace: 'ns' },
      type: 'Opaque',
      data: { token: Buffer.from('Bearer abc\n').toString('base64'), 'ca.crt': Buffer.from([0, 1, 2, 255]).toString('base64') },
    });
    const secret = await api.getSecret('ns', 'hook-token');
    expect([...(secret ?? new Map()).keys()]).toEqual(['token', 'ca.crt']);
    expect(secret?.get('token')?.toString('utf8')).toBe('Bearer abc\n');
    expect(secret?.get('ca.crt')).toEqual(Buffer.from([0, 1, 2, 255]));
  });

  it('getSecret: a Secret without data is an empty map; 404 → undefined; 500 rejects', async () => {
    nock(API_SERVER).get('/api/v1/namespaces/ns/secrets/empty').reply(200, { apiVersion: 'v1', kind: 'Secret', metadata: { name: 'empty' } });
    nock(API_SERVER).get('/api/v1/namespaces/ns/secrets/missing').reply(404, statusBody(404, 'NotFound'));
    nock(API_SERVER).get('/api/v1/namespaces/ns/secrets/broken').reply(500, statusBody(500, 'InternalError'));
    expect(await api.getSecret('ns', 'empty')).toEqual(new Map());
    expect(await api.getSecret('ns', 'missing')).toBeUndefined();
    await expect(api.getSecret('ns', 'broken')).rejects.toMatchObject({ code: 500 });
  });
});

describe('KubeClusterApi.recordEvent', () => {
  it('creates a core/v1 Event about the object: involvedObject, type, reason, message, source.component', async () => {
    let posted: Record<string, unknown> | undefined;
    nock(API_SERVER)
      .post('/api/v1/namespaces/ns/events', (body: Record<string, unknown>) => ((posted = body), true))
      .matchHeader('authorization', `Bearer ${TOKEN}`)
      .reply(201, () => posted);
    const before = Date.now();
    await api.recordEvent(endpointObject(), 'Warning', 'InvalidSpec', 'spec.headers[0].name: "Content-Type" is reserved');
    expect(posted).toMatchObject({
      metadata: { generateName: 'name.', namespace: 'ns' },
      involvedObject: {
        apiVersion: R.apiVersion,
        kind: R.kind,
        name: 'name',
        namespace: 'ns',
        uid: '6f1c0d0e-2b7e-4c43-9d4f-5b8c7f1e2a90',
        resourceVersion: '42',
      },
      type: 'Warning',
      reason: 'InvalidSpec',
      message: 'spec.headers[0].name: "Content-Type" is reserved',
      source: { component: 'registry-notifier' },
      reportingComponent: 'registry-notifier',
      count: 1,
    });
    const first = Date.parse(String(posted?.firstTimestamp));
    expect(first).toBeGreaterThanOrEqual(Math.floor(before / 1000) * 1000);
    expect(posted?.lastTimestamp).toBe(posted?.firstTimestamp);
  });

  it('cuts a long message to 1024 characters', async () => {
    let posted: { message?: string } | undefined;
    nock(API_SERVER).post('/api/v1/namespaces/ns/events', (body: { message?: string }) => ((posted = body), true)).reply(201, {});
    await api.recordEvent(endpointObject(), 'Normal', 'Configured', 'x'.repeat(5000));
    expect(posted?.message).toBe('x'.repeat(1024));
  });

  it('a refused Event rejects (the caller logs it)', async () => {
    nock(API_SERVER).post('/api/v1/namespaces/ns/events').reply(403, statusBody(403, 'Forbidden'));
    const error = await api.recordEvent(endpointObject(), 'Normal', 'Configured', 'live').catch((e: unknown) => e);
    expect(describeApiError(error)).toContain('RBAC');
  });
});

describe('KubeClusterApi list and watch', () => {
  const ENDPOINTS = `/apis/${R.group}/${R.version}/${R.plural}`;
  const options = { resourceVersion: '10', allowWatchBookmarks: true, timeoutSeconds: 321 };
  const secret = (name: string, resourceVersion: string): object => ({
    apiVersion: 'v1', kind: 'Secret', type: 'Opaque',
    metadata: { name, namespace: 'ns', resourceVersion, labels: { team: 'a' }, managedFields: [{ manager: 'kubectl' }] },
    data: { token: Buffer.from('Bearer s3cret').toString('base64') },
  });

  /** Opens a watch through `source`; resolves with what it received once the server ended the stream. */
  async function watched<T>(source: { watch: (o: typeof options, e: (t: string, o: T) => void, d: (e: unknown) => void) => Promise<AbortController> }, from: Partial<typeof options> = {}): Promise<{ events: [string, T][]; error: unknown }> {
    const events: [string, T][] = [];
    return new Promise((resolve) => {
      void source.watch({ ...options, ...from }, (type, object) => events.push([type, object]), (error) => resolve({ events, error }));
    });
  }

  it('endpoints: lists and watches the cluster-wide path or one namespace, objects as sent', async () => {
    const all = new FakeCollection(ENDPOINTS, 321);
    const one = new FakeCollection(`/apis/${R.group}/${R.version}/namespaces/ns/${R.plural}`, 321);
    all.list([endpointObject()], '10');
    one.list([], '11');
    expect(await api.endpoints(undefined).list()).toEqual({ items: [endpointObject()], resourceVersion: '10' });
    expect(await api.endpoints('ns').list()).toEqual({ items: [], resourceVersion: '11' });
    const stream = one.watch('10');
    const result = watched(api.endpoints('ns'));
    const server = await stream;
    expect(server.search).toBe('?watch=true&resourceVersion=10&allowWatchBookmarks=true&timeoutSeconds=321');
    expect(server.authorization).toBe(`Bearer ${TOKEN}`);
    server.send('MODIFIED', { ...endpointObject(), status: { delivered: 1 } });
    server.end();
    expect(await result).toEqual({ events: [['MODIFIED', { ...endpointObject(), status: { delivered: 1 } }]], error: null });
  });

  it('secrets: list and watch give identities only (name, namespace, resourceVersion), never the data', async () => {
    const all = new FakeCollection('/api/v1/secrets', 321);
    const one = new FakeCollection('/api/v1/namespaces/ns/secrets', 321);
    all.list([secret('a', '1')], '10');
    one.list([secret('b', '2')], '12');
    const identity = (name: string, resourceVersion: string): object => ({ metadata: { name, namespace: 'ns', resourceVersion } });
    expect(await api.secrets(undefined).list()).toEqual({ items: [identity('a', '1')], resourceVersion: '10' });
    expect(await api.secrets('ns').list()).toEqual({ items: [identity('b', '2')], resourceVersion: '12' });
    const stream = all.watch('10');
    const result = watched(api.secrets(undefined));
    const server = await stream;
    server.send('ADDED', secret('c', '13'));
    server.send('BOOKMARK', { apiVersion: 'v1', kind: 'Secret', metadata: { resourceVersion: '14' } });
    server.send('ERROR', statusBody(410, 'Expired'));
    server.end();
    const { events } = await result;
    expect(events).toEqual([
      ['ADDED', identity('c', '13')],
      ['BOOKMARK', { apiVersion: 'v1', kind: 'Secret', metadata: { resourceVersion: '14' } }],
      ['ERROR', statusBody(410, 'Expired')],
    ]);
    expect(JSON.stringify(events)).not.toContain(Buffer.from('Bearer s3cret').toString('base64'));
  });

  it('namespaces: every one, or one by a field selector on its name; identity and the grant annotation only', async () => {
    const namespace = (name: string, resourceVersion: string, grant?: string): object => ({
      apiVersion: 'v1', kind: 'Namespace',
      metadata: {
        name, resourceVersion, labels: { 'kubernetes.io/metadata.name': name }, managedFields: [{ manager: 'kubectl' }],
        annotations: { 'kubectl.kubernetes.io/last-applied-configuration': '{"big":"object"}', ...(grant !== undefined && { 'registry-notifier.io/repositories': grant }) },
      },
      spec: { finalizers: ['kubernetes'] }, status: { phase: 'Active' },
    });
    const reduced = (name: string, resourceVersion: string, grant?: string): object => ({
      metadata: { name, resourceVersion, ...(grant !== undefined && { annotations: { 'registry-notifier.io/repositories': grant } }) },
    });
    nock(API_SERVER).get('/api/v1/namespaces').reply(200, { kind: 'NamespaceList', metadata: { resourceVersion: '20' }, items: [namespace('team-a', '5', 'team-a/*'), namespace('team-c', '6')] });
    expect(await api.namespaces(undefined).list()).toEqual({ items: [reduced('team-a', '5', 'team-a/*'), reduced('team-c', '6')], resourceVersion: '20' });
    nock(API_SERVER).get('/api/v1/namespaces').query({ fieldSelector: 'metadata.name=team-a' }).reply(200, { kind: 'NamespaceList', metadata: { resourceVersion: '21' }, items: [namespace('team-a', '5', 'team-a/*')] });
    expect(await api.namespaces('team-a').list()).toEqual({ items: [reduced('team-a', '5', 'team-a/*')], resourceVersion: '21' });
    // The watch of one namespace carries the same field selector as its list.
    const stream = new Promise<WatchStream>((resolve) => {
      nock(API_SERVER).get('/api/v1/namespaces').query({ fieldSelector: 'metadata.name=team-a', ...watchQuery('21', 321) }).reply(200, (request: Request) => {
        const opened = new WatchStream(request);
        resolve(opened);
        return opened.body;
      });
    });
    const result = watched(api.namespaces('team-a'), { resourceVersion: '21' });
    const server = await stream;
    expect(server.search).toBe('?watch=true&fieldSelector=metadata.name%3Dteam-a&resourceVersion=21&allowWatchBookmarks=true&timeoutSeconds=321');
    server.send('MODIFIED', namespace('team-a', '22', 'team-a/*,shared/**'));
    server.end();
    expect(await result).toEqual({ events: [['MODIFIED', reduced('team-a', '22', 'team-a/*,shared/**')]], error: null });
    // getNamespace: the same reduction; 404 is absence.
    nock(API_SERVER).get('/api/v1/namespaces/team-a').reply(200, namespace('team-a', '22', 'team-a/*'));
    expect(await api.getNamespace('team-a')).toEqual(reduced('team-a', '22', 'team-a/*'));
    nock(API_SERVER).get('/api/v1/namespaces/gone').reply(404, statusBody(404, 'NotFound'));
    expect(await api.getNamespace('gone')).toBeUndefined();
    nock(API_SERVER).get('/api/v1/namespaces/team-b').reply(403, statusBody(403, 'Forbidden'));
    expect(statusCode(await api.getNamespace('team-b').catch((e: unknown) => e))).toBe(403);
  });

  it('a failed list rejects with the status (no body in its description); a refused watch ends with it', async () => {
    new FakeCollection(ENDPOINTS, 321).listFails(403);
    const error = await api.endpoints(undefined).list().catch((e: unknown) => e);
    expect(statusCode(error)).toBe(403);
    expect(describeApiError(error)).toBe('HTTP 403 (forbidden: check the RBAC rules of the service account)');
    new FakeCollection(ENDPOINTS, 321).watchFails('10', 410);
    const { events, error: ended } = await watched(api.endpoints(undefined));
    expect(events).toEqual([]);
    expect(statusCode(ended)).toBe(410);
  });

  it('a silent watch stays open well past client-node\'s 30 s default, until the server ends it', async () => {
    expect(WATCH_INACTIVITY_MS).toBeGreaterThan((300 + 60) * 1000); // longer than any timeoutSeconds the informer asks for
    const collection = new FakeCollection(ENDPOINTS, 321);
    const stream = collection.watch('10');
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
    try {
      let ended: unknown = 'open';
      await api.endpoints(undefined).watch(options, () => {}, (error) => (ended = error));
      const server = await stream;
      await vi.advanceTimersByTimeAsync(60_000);
      expect(ended).toBe('open');
      server.end();
      await vi.waitFor(() => expect(ended).toBeNull());
    } finally {
      vi.useRealTimers();
    }
  });
});
