// The reconciler's decisions, with an in-memory ClusterApi, a real EndpointSet and a real StatusWriter over the
// fake. Endpoints point at 127.0.0.1 and stay idle or paused: no traffic is needed to see what was decided, except
// for the removal of an endpoint whose attempt is in flight (a loopback receiver that holds its answer).
import { afterEach, describe, expect, it } from 'vitest';
import { NOTIFICATION_ENDPOINT_RESOURCE as R, type Condition, type NotificationEndpointStatus } from '../../src/api/notification-endpoint.ts';
import type { NotificationEndpointObject } from '../../src/k8s/cluster-api.ts';
import { EndpointReconciler, SecretPendingError } from '../../src/controller/reconciler.ts';
import { ApiCallError } from '../../src/k8s/errors.ts';
import { REPOSITORIES_ANNOTATION } from '../../src/sources/repository-grant.ts';
import { StatusWriter } from '../../src/controller/status-writer.ts';
import { EndpointSet } from '../../src/notifications/endpoint-set.ts';
import { endpointConfig } from '../../src/notifications/endpoint.ts';
import type { QueueBackend } from '../../src/notifications/queue-store.ts';
import { makeEvents } from '../support/events.ts';
import { ed25519KeyPair, verifiedV1a as verified } from '../support/ed25519.ts';
import { TestReceiver } from '../support/receiver.ts';
import { until } from '../support/wait.ts';
import { permitRecordingBackend } from '../notifications/test-sinks.ts';
import { captureLogs, type LogLine } from '../k8s/support.ts';
import { apiError, FakeClusterApi } from './fake-cluster-api.ts';

const KEY = 'ns/hook';
const T0 = Date.parse('2026-03-01T10:00:00.000Z');
const NOW = '2026-03-01T10:00:00Z';

interface Harness {
  reconciler: EndpointReconciler;
  api: FakeClusterApi;
  endpoints: EndpointSet;
  status: StatusWriter;
  removed: [string, number][];
  logs: LogLine[];
}

const sets: EndpointSet[] = [];
afterEach(async () => {
  for (const set of sets.splice(0)) await set.close(AbortSignal.abort());
});

function harness(backend?: QueueBackend, options: { tenancy?: boolean; carryCounters?: boolean } = {}): Harness {
  const api = new FakeClusterApi();
  const endpoints = new EndpointSet({ userAgent: 'registry-notifier/test', ...(backend && { backend }) });
  sets.push(endpoints);
  const { logger, lines } = captureLogs();
  const status = new StatusWriter({ api, logger, intervalMs: 60_000, now: () => new Date(T0) });
  const removed: [string, number][] = [];
  const reconciler = new EndpointReconciler({ api, endpoints, status, logger, onRemoved: (key, discarded) => void removed.push([key, discarded]), ...options });
  return { reconciler, api, endpoints, status, removed, logs: lines };
}

function put(h: Harness, spec: Record<string, unknown>, options: { generation?: number; status?: NotificationEndpointStatus; deletionTimestamp?: string } = {}): void {
  const object: NotificationEndpointObject = {
    apiVersion: R.apiVersion,
    kind: R.kind,
    metadata: {
      name: 'hook',
      namespace: 'ns',
      uid: 'uid-1',
      generation: options.generation ?? 1,
      ...(options.deletionTimestamp && { deletionTimestamp: new Date(options.deletionTimestamp), finalizers: ['example.com/hold'] }),
    },
    spec,
    ...(options.status && { status: options.status }),
  };
  h.api.put(object);
}

/** The Ready condition as last written. */
const ready = (h: Harness): Condition | undefined => h.api.patches.at(-1)?.status.conditions?.find((c) => c.type === 'Ready');
/** The Delivering condition as last written. */
const delivering = (h: Harness): Condition | undefined => h.api.patches.at(-1)?.status.conditions?.find((c) => c.type === 'Delivering');

describe('EndpointReconciler: valid specs', () => {
  it('creates the endpoint, writes Ready=True/Configured with observedGeneration, and carries the stored counters over', async () => {
    const h = harness();
    put(h, { url: 'http://127.0.0.1:9/hook', headers: [{ name: 'X-Team', value: 'a' }], tls: { insecureSkipVerify: true } }, {
      generation: 5,
      status: { observedGeneration: 4, delivered: 40, failures: 2, errors: 1, deadLettered: 3, coalesced: 6, responses: [{ code: 202, count: 40 }, { code: 503, count: 2 }] },
    });
    await expect(h.reconciler.reconcile(KEY)).resolves.toEqual({});
    expect(h.api.gets).toEqual([KEY]);
    const endpoint = h.endpoints.get(KEY);
    expect(endpoint?.config).toMatchObject({ url: 'http://127.0.0.1:9/hook', headers: [['X-Team', 'a']], disabled: false, tls: { insecureSkipVerify: true } });
    expect(endpoint?.stats()).toMatchObject({ delivered: 40, failures: 2, errors: 1, deadLettered: 3, coalesced: 6, responses: [{ code: 202, count: 40 }, { code: 503, count: 2 }] });
    expect(h.api.patches).toEqual([{
      key: KEY,
      status: {
        observedGeneration: 5,
        conditions: [
          { type: 'Ready', status: 'True', observedGeneration: 5, lastTransitionTime: NOW, reason: 'Configured' },
          { type: 'Delivering', status: 'True', observedGeneration: 5, lastTransitionTime: NOW, reason: 'Succeeded' },
        ],
        pending: 0, delivered: 40, failed: 3, failures: 2, errors: 1, deadLettered: 3, coalesced: 6,
        responses: [{ code: 202, count: 40 }, { code: 503, count: 2 }],
        insecureSkipVerify: true,
      },
    }]);
    expect(h.api.events.map((e) => `${e.type} ${e.reason}`)).toEqual(['Normal Configured']);
    expect(h.status.states().get(KEY)).toEqual({ ready: true, reason: 'Configured' });
  });

  it('with carryCounters off (a shared database keeps the counters) a new endpoint starts from zero, not from its status', async () => {
    const h = harness(undefined, { carryCounters: false });
    put(h, { url: 'http://127.0.0.1:9/hook' }, { status: { delivered: 40, failures: 2, deadLettered: 3, coalesced: 6, responses: [{ code: 202, count: 40 }] } });
    await expect(h.reconciler.reconcile(KEY)).resolves.toEqual({});
    expect(h.endpoints.get(KEY)?.stats()).toMatchObject({ delivered: 0, failures: 0, errors: 0, deadLettered: 0, coalesced: 0, responses: [] });
  });

  it('a spec change updates the same Endpoint in place: queue kept, counters not seeded twice', async () => {
    const h = harness();
    put(h, { url: 'http://127.0.0.1:9/one', disabled: true }, { status: { delivered: 10 } });
    await h.reconciler.reconcile(KEY);
    const endpoint = h.endpoints.get(KEY)!;
    await h.endpoints.write(makeEvents(3, 'kept'));
    expect(endpoint.pending).toBe(3);
    put(h, { url: 'http://127.0.0.1:9/two', disabled: true, maxBatchEvents: 5 }, { generation: 2, status: h.api.objects.get(KEY)?.status });
    await h.reconciler.reconcile(KEY);
    expect(h.endpoints.get(KEY)).toBe(endpoint);
    expect(h.endpoints.list()).toHaveLength(1);
    expect(endpoint.config).toMatchObject({ url: 'http://127.0.0.1:9/two', maxBatchEvents: 5 });
    expect(endpoint.pending).toBe(3);
    expect(endpoint.stats().delivered).toBe(10);
    expect(h.api.patches.at(-1)?.status).toMatchObject({ observedGeneration: 2, pending: 3, delivered: 10 });
    expect(h.logs.filter((l) => l.msg.startsWith('endpoint ')).map((l) => l.msg)).toEqual(['endpoint created', 'endpoint updated']);
  });

  it('disabled: Ready=False/Disabled, the endpoint present and paused (events stay queued)', async () => {
    const backend = permitRecordingBackend();
    const h = harness(backend);
    put(h, { url: 'http://127.0.0.1:9/hook', disabled: true });
    await expect(h.reconciler.reconcile(KEY)).resolves.toEqual({});
    expect(ready(h)).toMatchObject({ status: 'False', reason: 'Disabled', message: 'spec.disabled is true: events are queued, not sent' });
    const endpoint = h.endpoints.get(KEY);
    expect(endpoint?.config.disabled).toBe(true);
    // An enabled endpoint after it in the set gets the same events in the same fan-out: once it asks for its
    // permit to send, a paused endpoint that sends anyway would have asked for its own.
    h.endpoints.apply('marker', endpointConfig({ url: 'http://127.0.0.1:9/marker' }));
    await h.endpoints.write(makeEvents(2, 'paused'));
    await until(() => backend.asked.includes('marker'), 'the marker endpoint to be about to send');
    expect(backend.asked).toEqual(['marker']);
    expect(endpoint?.pending).toBe(2);
    expect(endpoint?.stats()).toMatchObject({ delivered: 0, failures: 0, errors: 0 });
    expect(h.api.events.map((e) => `${e.type} ${e.reason}`)).toEqual(['Warning Disabled']);
  });
});

describe('EndpointReconciler: invalid specs are terminal', () => {
  const invalid: [string, Record<string, unknown>, string][] = [
    ['a reserved header (Content-Type)', { headers: [{ name: 'Content-Type', value: 'text/plain' }] },
      'spec.headers[0].name: "Content-Type" is reserved: Content-Type, Content-Length, Host and webhook-* are set by registry-notifier'],
    ['a webhook-* header', { headers: [{ name: 'X-Ok', value: '1' }, { name: 'webhook-id', value: 'x' }] },
      'spec.headers[1].name: "webhook-id" is reserved: Content-Type, Content-Length, Host and webhook-* are set by registry-notifier'],
    ['a header with both value and valueFrom', { headers: [{ name: 'Authorization', value: 'x', valueFrom: { secretKeyRef: { name: 's', key: 'k' } } }] },
      'spec.headers[0]: set exactly one of value and valueFrom'],
    ['CloudEvents Binary with maxBatchEvents > 1', { format: 'CloudEvents', cloudEvents: { mode: 'Binary' }, maxBatchEvents: 5 },
      'spec.maxBatchEvents: must be 1 with format: CloudEvents in Binary mode (the default), which sends one event per POST with its attributes as ce-* headers; set cloudEvents.mode: Structured to batch'],
    ['a ce-* header with format CloudEvents', { format: 'CloudEvents', headers: [{ name: 'Ce-Type', value: 'x' }] },
      'spec.headers[0].name: "Ce-Type" is reserved with format: CloudEvents: ce-* headers carry its attributes'],
  ];

  for (const [what, extra, message] of invalid) {
    it(`${what}: Ready=False/InvalidSpec, resolves (no retry), nothing created`, async () => {
      const h = harness();
      put(h, { url: 'http://127.0.0.1:9/hook', ...extra }, { generation: 2 });
      await expect(h.reconciler.reconcile(KEY)).resolves.toEqual({});
      expect(h.endpoints.get(KEY)).toBeUndefined();
      expect(h.api.patches).toHaveLength(1);
      expect(h.api.patches[0]?.status.observedGeneration).toBe(2);
      expect(ready(h)).toEqual({ type: 'Ready', status: 'False', observedGeneration: 2, lastTransitionTime: NOW, reason: 'InvalidSpec', message });
      expect(delivering(h)).toMatchObject({ status: 'Unknown', reason: 'NotRunning' }); // nothing runs: not Idle
      expect(h.api.events).toEqual([{ key: KEY, type: 'Warning', reason: 'InvalidSpec', message }]);
    });
  }

  it('the previous valid endpoint keeps running, unchanged, and the message says so', async () => {
    const h = harness();
    put(h, { url: 'http://127.0.0.1:9/good' });
    await h.reconciler.reconcile(KEY);
    const endpoint = h.endpoints.get(KEY);
    put(h, { url: 'http://127.0.0.1:9/bad', headers: [{ name: 'Host', value: 'evil' }] }, { generation: 2 });
    await expect(h.reconciler.reconcile(KEY)).resolves.toEqual({});
    expect(h.endpoints.get(KEY)).toBe(endpoint);
    expect(endpoint?.config.url).toBe('http://127.0.0.1:9/good');
    expect(endpoint?.config.headers).toEqual([]);
    expect(ready(h)?.message).toBe(
      'spec.headers[0].name: "Host" is reserved: Content-Type, Content-Length, Host and webhook-* are set by registry-notifier; the last valid configuration keeps running',
    );
    expect(h.status.states().get(KEY)?.ready).toBe(false);
  });
});

describe('EndpointReconciler: Secrets', () => {
  const spec = { url: 'http://127.0.0.1:9/hook', headers: [{ name: 'Authorization', valueFrom: { secretKeyRef: { name: 'hook-token', key: 'token' } } }] };

  it('a missing Secret: Ready=False/SecretNotFound and the reconcile rejects (retried); once it exists: Ready=True', async () => {
    const h = harness();
    put(h, spec);
    const error = await h.reconciler.reconcile(KEY).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(SecretPendingError);
    expect(error).toMatchObject({ code: 'ERR_SECRET_PENDING', message: 'Secret hook-token not found' });
    expect(h.endpoints.get(KEY)).toBeUndefined();
    expect(ready(h)).toMatchObject({ status: 'False', reason: 'SecretNotFound', message: 'Secret hook-token not found' });
    expect(h.status.states().get(KEY)?.url, 'the URL /endpoints shows for it').toBe((spec as { url: string }).url);
    h.api.putSecret('ns', 'hook-token', { other: 'x' });
    await expect(h.reconciler.reconcile(KEY)).rejects.toMatchObject({ message: 'Secret hook-token has no key token' });
    h.api.putSecret('ns', 'hook-token', { token: 'Bearer abc\n' });
    await expect(h.reconciler.reconcile(KEY)).resolves.toEqual({});
    expect(h.endpoints.get(KEY)?.config.headers).toEqual([['Authorization', 'Bearer abc']]);
    expect(ready(h)).toMatchObject({ status: 'True', reason: 'Configured' });
    expect(h.api.events.map((e) => `${e.type} ${e.reason}: ${e.message}`)).toEqual([
      'Warning SecretNotFound: Secret hook-token not found',
      'Normal Configured: endpoint is live in the delivery engine',
    ]);
    // no secret value anywhere in status, Events or logs
    expect(JSON.stringify([h.api.patches, h.api.events, h.logs])).not.toContain('Bearer abc');
  });

  it('a Secret deleted later: SecretNotFound, and the running endpoint keeps its last configuration', async () => {
    const h = harness();
    put(h, spec);
    h.api.putSecret('ns', 'hook-token', { token: 'one' });
    await h.reconciler.reconcile(KEY);
    h.api.secretData.clear();
    await expect(h.reconciler.reconcile(KEY)).rejects.toBeInstanceOf(SecretPendingError);
    expect(h.endpoints.get(KEY)?.config.headers).toEqual([['Authorization', 'one']]);
    expect(ready(h)?.message).toBe('Secret hook-token not found; the last valid configuration keeps running');
  });
});

describe('EndpointReconciler: Ed25519 signing keys', () => {
  const pair = (): { whsk: string; whpk: string } => {
    const { whsk32, whpk } = ed25519KeyPair();
    return { whsk: whsk32, whpk };
  };
  const status = (h: Harness): NotificationEndpointStatus | undefined => h.api.objects.get(KEY)?.status;

  it('a rotated Secret signs the next attempt with the new key and writes the new status.signingPublicKey at once', async () => {
    const h = harness();
    const receiver = await TestReceiver.start();
    try {
      const [first, second] = [pair(), pair()];
      put(h, { url: receiver.url, signing: { algorithm: 'Ed25519', secretKeyRef: { name: 'hook-key', key: 'key' } } });
      h.api.putSecret('ns', 'hook-key', { key: first.whsk });
      await h.reconciler.reconcile(KEY);
      expect(ready(h)).toMatchObject({ status: 'True', reason: 'Configured' });
      expect(status(h)?.signingPublicKey).toBe(first.whpk);
      await h.endpoints.write(makeEvents(1, 'one'));
      await receiver.waitFor((rs) => rs.length === 1);
      expect(verified(first.whpk, receiver.requests[0]!)).toBe(true);

      // What a watch event on the Secret leads to; the clock stands still, so only an immediate write can show it.
      h.api.putSecret('ns', 'hook-key', { key: second.whsk }, '2');
      const writes = h.api.patches.length;
      await h.reconciler.reconcile(KEY);
      expect(h.api.patches).toHaveLength(writes + 1);
      expect(status(h)?.signingPublicKey).toBe(second.whpk);
      await h.endpoints.write(makeEvents(1, 'two'));
      await receiver.waitFor((rs) => rs.length === 2);
      expect(verified(second.whpk, receiver.requests[1]!)).toBe(true);
      expect(verified(first.whpk, receiver.requests[1]!)).toBe(false);

      // Back to HMAC: no public key in status any more.
      put(h, { url: receiver.url, signing: { secretKeyRef: { name: 'hook-key', key: 'hmac' } } }, { generation: 2 });
      h.api.putSecret('ns', 'hook-key', { key: second.whsk, hmac: 'whsec_c2VjcmV0LXNlY3JldC1zZWNyZXQ=' }, '3');
      await h.reconciler.reconcile(KEY);
      expect(h.api.patches.at(-1)?.status.signingPublicKey).toBeNull();
      expect(status(h)).not.toHaveProperty('signingPublicKey');
    } finally {
      await receiver.close();
    }
  });

  it.each([
    ['an HMAC secret', (key: string) => key.replace('whsk_', 'whsec_'), /is not an Ed25519 private key \(it holds a whsec_ HMAC secret\)/],
    ['a truncated key', (key: string) => key.slice(0, 30), /is not an Ed25519 private key: it decodes to 18 bytes/],
  ])('%s in the Secret: Ready=False/InvalidSpec, not retried, the key nowhere; the running endpoint keeps its key', async (_name, spoil, message) => {
    const h = harness();
    const good = pair();
    put(h, { url: 'http://127.0.0.1:9/hook', disabled: true, signing: { algorithm: 'Ed25519', secretKeyRef: { name: 'hook-key', key: 'key' } } });
    h.api.putSecret('ns', 'hook-key', { key: good.whsk });
    await h.reconciler.reconcile(KEY);
    const bad = spoil(pair().whsk);
    h.api.putSecret('ns', 'hook-key', { key: bad }, '2');
    await expect(h.reconciler.reconcile(KEY)).resolves.toEqual({});
    expect(ready(h)).toMatchObject({ status: 'False', reason: 'InvalidSpec' });
    expect(ready(h)?.message).toMatch(message);
    expect(ready(h)?.message).toMatch(/; the last valid configuration keeps running$/);
    expect(status(h)?.signingPublicKey).toBe(good.whpk);
    expect(JSON.stringify([h.api.patches, h.api.events, h.logs])).not.toContain(bad.slice(6, 26));
  });
});

describe('EndpointReconciler: removal and API failures', () => {
  it('object gone: the endpoint is removed, onRemoved gets the discarded count, the status is forgotten', async () => {
    const h = harness();
    put(h, { url: 'http://127.0.0.1:9/hook', disabled: true });
    await h.reconciler.reconcile(KEY);
    await h.endpoints.write(makeEvents(4, 'lost'));
    h.api.objects.delete(KEY);
    const patches = h.api.patchCalls.length;
    await expect(h.reconciler.reconcile(KEY)).resolves.toEqual({});
    expect(h.endpoints.get(KEY)).toBeUndefined();
    await h.reconciler.idle();
    expect(h.removed).toEqual([[KEY, 4]]);
    expect(h.status.states().has(KEY)).toBe(false);
    await h.status.stop();
    expect(h.api.patchCalls).toHaveLength(patches); // nothing written for a deleted object
    expect(h.logs.find((l) => l.msg === 'endpoint removed')).toMatchObject({ level: 'warn', endpoint: KEY, discarded: 4 });
  });

  it('deletionTimestamp set (finalizers still pending): removed as if gone', async () => {
    const h = harness();
    put(h, { url: 'http://127.0.0.1:9/hook' });
    await h.reconciler.reconcile(KEY);
    put(h, { url: 'http://127.0.0.1:9/hook' }, { deletionTimestamp: '2026-03-01T09:59:00Z' });
    await h.reconciler.reconcile(KEY);
    expect(h.endpoints.get(KEY)).toBeUndefined();
    await h.reconciler.idle();
    expect(h.removed).toEqual([[KEY, 0]]);
    expect(h.status.states().size).toBe(0);
  });

  it('an object gone that never had an endpoint: nothing to remove, onRemoved not called', async () => {
    const h = harness();
    await expect(h.reconciler.reconcile(KEY)).resolves.toEqual({});
    expect(h.removed).toEqual([]);
    expect(h.api.patchCalls).toEqual([]);
  });

  it('an API error reading the object rejects (transient) and writes no status', async () => {
    const h = harness();
    put(h, { url: 'http://127.0.0.1:9/hook' });
    await h.reconciler.reconcile(KEY);
    const endpoint = h.endpoints.get(KEY);
    const calls = h.api.patchCalls.length;
    const failure = apiError(503);
    h.api.getErrors.push(failure);
    await expect(h.reconciler.reconcile(KEY)).rejects.toBe(failure);
    expect(h.api.patchCalls).toHaveLength(calls);
    expect(h.endpoints.get(KEY)).toBe(endpoint);
    expect(h.status.states().get(KEY)).toEqual({ ready: true, reason: 'Configured' });
  });

  it('an API error reading a Secret is recorded (Ready=False/ReconcileFailed, Warning Event, no response body) and rejects, to be retried', async () => {
    const h = harness();
    put(h, { url: 'http://127.0.0.1:9/hook', signing: { secretKeyRef: { name: 'signing', key: 'key' } } }, { generation: 4 });
    // client-node's ApiException carries the response body in its message: it must reach no status, Event or log
    const failure = Object.assign(new Error('HTTP-Code: 500\nMessage: etcd said: data: {"key": "c2VjcmV0"}'), { code: 500 });
    h.api.getSecret = async () => {
      throw failure;
    };
    const error = await h.reconciler.reconcile(KEY).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ApiCallError);
    expect(error).toMatchObject({ name: 'ApiCallError', code: 'ERR_API_CALL', statusCode: 500, message: 'reading Secret signing: HTTP 500', cause: failure });
    expect(h.endpoints.get(KEY)).toBeUndefined();
    const message = 'reading Secret signing: HTTP 500; retrying with backoff';
    expect(ready(h)).toEqual({ type: 'Ready', status: 'False', observedGeneration: 4, lastTransitionTime: NOW, reason: 'ReconcileFailed', message });
    expect(delivering(h)).toMatchObject({ status: 'Unknown', reason: 'NotRunning' });
    expect(h.api.events).toEqual([{ key: KEY, type: 'Warning', reason: 'ReconcileFailed', message }]);
    expect(JSON.stringify([h.api.patches, h.api.events, h.logs])).not.toContain('c2VjcmV0');
    // the retry succeeds once the API answers again
    h.api.getSecret = async () => new Map([['key', Buffer.from('whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw')]]);
    await expect(h.reconciler.reconcile(KEY)).resolves.toEqual({});
    expect(ready(h)).toMatchObject({ status: 'True', reason: 'Configured' });
    expect(h.api.events.map((e) => e.reason)).toEqual(['ReconcileFailed', 'Configured']);
  });

  it('an API error while an endpoint runs says that its last valid configuration keeps running', async () => {
    const h = harness();
    put(h, { url: 'http://127.0.0.1:9/hook', headers: [{ name: 'Authorization', valueFrom: { secretKeyRef: { name: 'token', key: 'token' } } }] });
    h.api.putSecret('ns', 'token', { token: 'one' });
    await h.reconciler.reconcile(KEY);
    h.api.getSecret = async () => {
      throw apiError(503);
    };
    await expect(h.reconciler.reconcile(KEY)).rejects.toMatchObject({ code: 'ERR_API_CALL' });
    expect(ready(h)?.message).toBe('reading Secret token: HTTP 503; retrying with backoff; the last valid configuration keeps running');
    expect(h.endpoints.get(KEY)?.config.headers).toEqual([['Authorization', 'one']]);
    expect(delivering(h)).toMatchObject({ status: 'True', reason: 'Idle' }); // it runs: the receiver's side is known
  });

  it('removal takes the endpoint out at once and does not wait for its attempt in flight; onRemoved follows once it closed', async () => {
    const h = harness();
    const receiver = await TestReceiver.start();
    let answer!: () => void;
    const held = new Promise<void>((resolve) => (answer = resolve));
    receiver.respond(async () => {
      await held;
      return 200;
    });
    try {
      put(h, { url: receiver.url, timeout: '1h' });
      await h.reconciler.reconcile(KEY);
      const endpoint = h.endpoints.get(KEY)!;
      await h.endpoints.write(makeEvents(3, 'slow'));
      await receiver.waitFor((r) => r.length === 1); // the first attempt is in flight, and stays there
      h.api.objects.delete(KEY);
      await expect(h.reconciler.reconcile(KEY)).resolves.toEqual({});
      expect(h.endpoints.get(KEY)).toBeUndefined();
      expect(h.endpoints.list()).toEqual([]);
      await h.endpoints.write(makeEvents(2, 'after')); // routed to nobody
      expect(endpoint.pending).toBe(3);
      expect(h.removed).toEqual([]); // still closing
      answer();
      await h.reconciler.idle();
      expect(h.removed).toEqual([[KEY, 2]]); // the one in flight was delivered; the two behind it discarded
      expect(h.logs.filter((l) => l.msg === 'endpoint removed')).toHaveLength(1);
    } finally {
      answer();
      await receiver.close();
    }
  });
});

describe('EndpointReconciler: tenancy (the Namespace\'s repository grant)', () => {
  const grant = (h: Harness, value: string | undefined): void => void h.api.putNamespace('ns', value === undefined ? undefined : { [REPOSITORIES_ANNOTATION]: value });
  const noGrant = "Namespace ns has no registry-notifier.io/repositories annotation; with --tenancy namespace its endpoints receive only the repositories it grants, so this one receives nothing. A cluster administrator grants them with: kubectl annotate namespace ns registry-notifier.io/repositories='ns/**'";
  const to = (repository: string, n = 1): ReturnType<typeof makeEvents> => makeEvents(n, repository, { repository });

  it('the grant, read fresh from the Namespace, becomes part of the filter and is ANDed with the endpoint\'s own', async () => {
    const h = harness(undefined, { tenancy: true });
    grant(h, ' ns/*, shared/** ');
    put(h, { url: 'http://127.0.0.1:9/hook', disabled: true, filter: { repositories: { include: ['ns/web', 'other/**'] } } });
    await expect(h.reconciler.reconcile(KEY)).resolves.toEqual({});
    expect(h.api.namespaceGets).toEqual(['ns']);
    const endpoint = h.endpoints.get(KEY)!;
    expect(endpoint.config.filter).toMatchObject({ grant: ['ns/*', 'shared/**'], repositories: { include: ['ns/web', 'other/**'], exclude: [] } });
    await h.endpoints.write([...to('ns/web'), ...to('ns/api'), ...to('other/x'), ...to('shared/x')]);
    expect(endpoint.pending).toBe(1); // ns/web only: other/x is outside the grant, ns/api and shared/x outside the filter
    expect(ready(h)).toMatchObject({ status: 'False', reason: 'Disabled' });
  });

  it('no grant (no annotation, or an empty one): Ready=False/NoRepositoryGrant naming the annotation, nothing runs, not retried', async () => {
    for (const value of [undefined, ' , ']) {
      const h = harness(undefined, { tenancy: true });
      grant(h, value);
      put(h, { url: 'http://127.0.0.1:9/hook' }, { generation: 3 });
      await expect(h.reconciler.reconcile(KEY)).resolves.toEqual({});
      expect(h.endpoints.get(KEY)).toBeUndefined();
      expect(ready(h)).toMatchObject({ status: 'False', reason: 'NoRepositoryGrant', observedGeneration: 3 });
      expect(ready(h)?.message).toContain(REPOSITORIES_ANNOTATION);
      if (value === undefined) expect(ready(h)?.message).toBe(noGrant);
      expect(delivering(h)).toMatchObject({ status: 'Unknown', reason: 'NotRunning' });
      expect(h.api.events.map((e) => `${e.type} ${e.reason}`)).toEqual(['Warning NoRepositoryGrant']);
      expect(h.status.states().get(KEY)).toMatchObject({ ready: false, reason: 'NoRepositoryGrant', url: 'http://127.0.0.1:9/hook' });
    }
  });

  it('a Namespace that does not exist (any more) grants nothing', async () => {
    const h = harness(undefined, { tenancy: true });
    put(h, { url: 'http://127.0.0.1:9/hook' });
    await h.reconciler.reconcile(KEY);
    expect(ready(h)).toMatchObject({ reason: 'NoRepositoryGrant', message: noGrant });
  });

  it('the grant comes before the spec: without one an invalid spec is NoRepositoryGrant too, and nothing keeps running', async () => {
    const h = harness(undefined, { tenancy: true });
    grant(h, 'ns/*');
    put(h, { url: 'http://127.0.0.1:9/hook' });
    await h.reconciler.reconcile(KEY);
    grant(h, undefined);
    put(h, { url: 'http://127.0.0.1:9/hook', headers: [{ name: 'Host', value: 'x' }] }, { generation: 2 });
    await h.reconciler.reconcile(KEY);
    expect(h.endpoints.get(KEY)).toBeUndefined();
    expect(ready(h)).toMatchObject({ reason: 'NoRepositoryGrant', message: noGrant }); // no "keeps running"
  });

  it('a grant withdrawn: the endpoint stops at once, its queue discarded (logged and counted); granted again, it starts empty', async () => {
    const h = harness(undefined, { tenancy: true });
    grant(h, 'ns/*');
    put(h, { url: 'http://127.0.0.1:9/hook', disabled: true }, { status: { delivered: 7 } });
    await h.reconciler.reconcile(KEY);
    await h.endpoints.write(to('ns/app', 3));
    expect(h.endpoints.get(KEY)?.pending).toBe(3);
    grant(h, undefined);
    await expect(h.reconciler.reconcile(KEY)).resolves.toEqual({});
    expect(h.endpoints.get(KEY)).toBeUndefined();
    await h.endpoints.write(to('ns/app')); // routed to nobody
    await h.reconciler.idle();
    expect(h.removed).toEqual([[KEY, 3]]);
    expect(h.logs.find((l) => l.msg.startsWith('repository grant withdrawn'))).toMatchObject({ level: 'warn', endpoint: KEY });
    expect(h.logs.find((l) => l.msg === 'endpoint removed')).toMatchObject({ level: 'warn', endpoint: KEY, discarded: 3 });
    expect(ready(h)).toMatchObject({ status: 'False', reason: 'NoRepositoryGrant', message: noGrant });
    grant(h, 'ns/*');
    await h.reconciler.reconcile(KEY);
    expect(h.endpoints.get(KEY)?.pending).toBe(0);
    expect(h.endpoints.get(KEY)?.stats().delivered).toBe(7); // counters carried over from status, as on any start
    expect(ready(h)).toMatchObject({ status: 'False', reason: 'Disabled' });
    expect(h.api.events.map((e) => e.reason)).toEqual(['Disabled', 'NoRepositoryGrant', 'Disabled']);
  });

  it('a grant narrowed: a new endpoint with an empty queue (nothing granted before is delivered); widened: the same endpoint, queue kept', async () => {
    const h = harness(undefined, { tenancy: true });
    grant(h, 'ns/*');
    put(h, { url: 'http://127.0.0.1:9/hook', disabled: true });
    await h.reconciler.reconcile(KEY);
    const first = h.endpoints.get(KEY)!;
    await h.endpoints.write(to('ns/app', 2));
    grant(h, 'ns/*,shared/**'); // widened: updated in place
    await h.reconciler.reconcile(KEY);
    expect(h.endpoints.get(KEY)).toBe(first);
    expect(first.pending).toBe(2);
    expect(first.config.filter.grant).toEqual(['ns/*', 'shared/**']);
    await h.endpoints.write(to('shared/base'));
    expect(first.pending).toBe(3);
    grant(h, 'shared/**'); // narrowed: ns/* taken away
    await h.reconciler.reconcile(KEY);
    const second = h.endpoints.get(KEY)!;
    expect(second).not.toBe(first);
    expect(second.pending).toBe(0);
    expect(second.config.filter.grant).toEqual(['shared/**']);
    await h.reconciler.idle();
    expect(h.removed).toEqual([[KEY, 3]]);
    expect(h.logs.find((l) => l.msg.startsWith('repository grant narrowed'))).toMatchObject({ level: 'warn', endpoint: KEY, before: ['ns/*', 'shared/**'], grant: ['shared/**'] });
    await h.endpoints.write([...to('ns/app'), ...to('shared/base')]);
    expect(second.pending).toBe(1);
    expect(ready(h)).toMatchObject({ reason: 'Disabled' });
  });

  it('a narrowed grant applies even when the new spec is invalid: the endpoint does not keep running under the wider grant', async () => {
    const h = harness(undefined, { tenancy: true });
    grant(h, 'ns/*,shared/**');
    put(h, { url: 'http://127.0.0.1:9/hook', disabled: true });
    await h.reconciler.reconcile(KEY);
    grant(h, 'shared/**');
    put(h, { url: 'http://127.0.0.1:9/hook', headers: [{ name: 'Host', value: 'x' }] }, { generation: 2 });
    await h.reconciler.reconcile(KEY);
    expect(h.endpoints.get(KEY)).toBeUndefined();
    expect(ready(h)).toMatchObject({ reason: 'InvalidSpec' });
    expect(ready(h)?.message).not.toContain('keeps running');
  });

  it('reading the Namespace fails: ReconcileFailed, retried; the running endpoint keeps its last grant meanwhile', async () => {
    const h = harness(undefined, { tenancy: true });
    grant(h, 'ns/*');
    put(h, { url: 'http://127.0.0.1:9/hook', disabled: true });
    await h.reconciler.reconcile(KEY);
    const endpoint = h.endpoints.get(KEY);
    h.api.namespaceGetErrors.push(apiError(403));
    const error = await h.reconciler.reconcile(KEY).catch((e: unknown) => e);
    expect(error).toMatchObject({ code: 'ERR_API_CALL', message: 'reading Namespace ns: HTTP 403 (forbidden: check the RBAC rules of the service account)' });
    expect(h.endpoints.get(KEY)).toBe(endpoint);
    expect(endpoint?.config.filter.grant).toEqual(['ns/*']);
    expect(ready(h)).toMatchObject({ reason: 'ReconcileFailed', message: 'reading Namespace ns: HTTP 403 (forbidden: check the RBAC rules of the service account); retrying with backoff; the last valid configuration keeps running' });
  });

  it('without tenancy the Namespace is never read and no grant applies', async () => {
    const h = harness();
    put(h, { url: 'http://127.0.0.1:9/hook' });
    await h.reconciler.reconcile(KEY);
    expect(h.api.namespaceGets).toEqual([]);
    expect(h.endpoints.get(KEY)?.config.filter.grant).toBeUndefined();
  });
});
