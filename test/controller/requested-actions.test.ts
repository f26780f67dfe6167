// Requests by annotation (replay, resume: api.md §11, Flux's requestedAt pattern) as the reconciler handles them, with
// the in-memory ClusterApi, a real EndpointSet and a real StatusWriter. Most tests plug a recording `actions` port in
// to count what was asked of the engine; one replays real dead letters to a loopback receiver through the engine.
import { afterEach, describe, expect, it } from 'vitest';
import {
  NOTIFICATION_ENDPOINT_RESOURCE as R,
  REPLAY_REQUESTED_ANNOTATION as REPLAY,
  RESUME_REQUESTED_ANNOTATION as RESUME,
  type NotificationEndpointStatus,
} from '../../src/api/notification-endpoint.ts';
import { EndpointReconciler } from '../../src/controller/reconciler.ts';
import { engineActions, pendingRequests, requestSignature, type EndpointActions } from '../../src/controller/requested-actions.ts';
import { StatusWriter } from '../../src/controller/status-writer.ts';
import type { NotificationEndpointObject } from '../../src/k8s/cluster-api.ts';
import { EndpointSet } from '../../src/notifications/endpoint-set.ts';
import { MemoryStore, type QueueBackend } from '../../src/notifications/queue-store.ts';
import { makeEvents } from '../support/events.ts';
import { TestReceiver } from '../support/receiver.ts';
import { captureLogs } from '../k8s/support.ts';
import { apiError, FakeClusterApi } from './fake-cluster-api.ts';

const KEY = 'ns/hook';
const URL = 'http://127.0.0.1:9/hook';

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

/** An actions port that records what it was asked and answers as the test sets. */
class RecordingActions implements EndpointActions {
  readonly calls: string[] = [];
  replayed = 3;
  resumed = true;
  failures: Error[] = [];
  #endpoints: EndpointSet;

  constructor(endpoints: EndpointSet) {
    this.#endpoints = endpoints;
  }

  async replay(name: string): Promise<number | undefined> {
    this.calls.push(`replay ${name}`);
    const failure = this.failures.shift();
    if (failure) throw failure;
    return this.#endpoints.get(name) ? this.replayed : undefined;
  }

  async resume(name: string): Promise<boolean> {
    this.calls.push(`resume ${name}`);
    return this.resumed;
  }
}

interface Harness {
  api: FakeClusterApi;
  endpoints: EndpointSet;
  status: StatusWriter;
  reconciler: EndpointReconciler;
  actions: RecordingActions;
  /** Whether the status writer writes (the leader); the test flips it. */
  leading: { now: boolean };
}

/** A reconciler, status writer and engine over `api` (a new one each call: a controller restart on the same cluster). */
function harness(api = new FakeClusterApi(), options: { backend?: QueueBackend; engine?: boolean } = {}): Harness {
  const endpoints = new EndpointSet({ userAgent: 'registry-notifier/test', ...(options.backend && { backend: options.backend }) });
  cleanups.push(() => endpoints.close(AbortSignal.abort()));
  const { logger } = captureLogs();
  const leading = { now: true };
  const status = new StatusWriter({ api, logger, intervalMs: 60_000, writes: () => leading.now });
  const actions = new RecordingActions(endpoints);
  const reconciler = new EndpointReconciler({ api, endpoints, status, logger, ...(!options.engine && { actions }) });
  return { api, endpoints, status, reconciler, actions, leading };
}

function put(api: FakeClusterApi, annotations: Record<string, string>, options: { spec?: Record<string, unknown>; status?: NotificationEndpointStatus } = {}): void {
  const object: NotificationEndpointObject = {
    apiVersion: R.apiVersion,
    kind: R.kind,
    metadata: { name: 'hook', namespace: 'ns', uid: 'uid-1', generation: 1, annotations },
    spec: options.spec ?? { url: URL },
    ...(options.status && { status: options.status }),
  };
  // Keeps what the "server" stored in status, as an annotation change does.
  const stored = api.objects.get(KEY)?.status;
  api.put({ ...object, ...((options.status ?? stored) && { status: options.status ?? stored }) });
}

const stored = (h: Harness): NotificationEndpointStatus | undefined => h.api.objects.get(KEY)?.status;
const requestEvents = (h: Harness): string[] => h.api.events.filter((e) => e.reason.endsWith('Requested')).map((e) => `${e.type} ${e.reason}: ${e.message}`);

describe('pendingRequests and requestSignature', () => {
  const object = (annotations: Record<string, string> | undefined, status?: NotificationEndpointStatus): NotificationEndpointObject => ({
    metadata: { name: 'hook', namespace: 'ns', ...(annotations && { annotations }) },
    ...(status && { status }),
  });

  it('a request is a set, non-empty annotation value that differs from the value status shows handled', () => {
    const pending = (o: NotificationEndpointObject): string[] => pendingRequests(o).map((r) => `${r.action.annotation}=${r.value}`);
    expect(pending(object(undefined))).toEqual([]);
    expect(pending(object({ [REPLAY]: '' }))).toEqual([]);
    expect(pending(object({ [REPLAY]: '1' }))).toEqual([`${REPLAY}=1`]);
    expect(pending(object({ [REPLAY]: '1' }, { lastHandledReplayAt: '1' }))).toEqual([]);
    // Any other value is new, earlier-looking ones too: the value is compared, never ordered.
    expect(pending(object({ [REPLAY]: '0' }, { lastHandledReplayAt: '1' }))).toEqual([`${REPLAY}=0`]);
    expect(pending(object({ [REPLAY]: '2', [RESUME]: 'x' }, { lastHandledReplayAt: '1', lastHandledResumeAt: 'x' }))).toEqual([`${REPLAY}=2`]);
    expect(pending(object({ [REPLAY]: '2', [RESUME]: 'y', other: 'z' }))).toEqual([`${REPLAY}=2`, `${RESUME}=y`]);
    // The handled values may come from elsewhere (what this process handled but has not written yet).
    expect(pendingRequests(object({ [REPLAY]: '2' }), () => '2')).toEqual([]);
  });

  it('the signature changes with a request annotation only', () => {
    const base = requestSignature(object({ other: 'a' }));
    expect(requestSignature(object({ other: 'b' }))).toBe(base);
    expect(requestSignature(object(undefined))).toBe(base);
    expect(requestSignature(object({ [REPLAY]: '1' }))).not.toBe(base);
    expect(requestSignature(object({ [RESUME]: '1' }))).not.toBe(requestSignature(object({ [REPLAY]: '1' })));
  });
});

describe('EndpointReconciler: requests by annotation', () => {
  it('a new replay value: replayed once, the value written to status at once, a Normal ReplayRequested Event with the count', async () => {
    const h = harness();
    put(h.api, { [REPLAY]: '1764633600' });
    await h.reconciler.reconcile(KEY);
    expect(h.actions.calls).toEqual([`replay ${KEY}`]);
    expect(stored(h)?.lastHandledReplayAt).toBe('1764633600');
    expect(h.api.patches.at(-1)?.status).toMatchObject({ lastHandledReplayAt: '1764633600' });
    expect(requestEvents(h)).toEqual([`Normal ReplayRequested: 3 dead letters back in the queue (${REPLAY}: 1764633600)`]);
    // Once written, later patches leave the field alone (a merge patch keeps it), so an old value never overwrites a newer one.
    h.api.put({ ...h.api.objects.get(KEY)!, metadata: { ...h.api.objects.get(KEY)!.metadata, generation: 2 } });
    await h.reconciler.reconcile(KEY);
    expect(h.api.patches.at(-1)?.status).toMatchObject({ observedGeneration: 2 });
    expect(h.api.patches.at(-1)?.status).not.toHaveProperty('lastHandledReplayAt');
    expect(stored(h)?.lastHandledReplayAt).toBe('1764633600');
    h.actions.replayed = 1;
    put(h.api, { [REPLAY]: 'again' });
    await h.reconciler.reconcile(KEY);
    expect(requestEvents(h).at(-1)).toBe(`Normal ReplayRequested: 1 dead letter back in the queue (${REPLAY}: again)`);
  });

  it('the same value again (another reconcile, a resync) is not handled again; a new value is, once', async () => {
    const h = harness();
    put(h.api, { [REPLAY]: 'a' });
    await h.reconciler.reconcile(KEY);
    await h.reconciler.reconcile(KEY);
    put(h.api, { [REPLAY]: 'a', unrelated: 'changed' });
    await h.reconciler.reconcile(KEY);
    expect(h.actions.calls).toEqual([`replay ${KEY}`]);
    put(h.api, { [REPLAY]: 'b' });
    await h.reconciler.reconcile(KEY);
    await h.reconciler.reconcile(KEY);
    expect(h.actions.calls).toEqual([`replay ${KEY}`, `replay ${KEY}`]);
    expect(stored(h)?.lastHandledReplayAt).toBe('b');
    expect(requestEvents(h)).toHaveLength(2);
  });

  it('a controller restart: a value already handled (in status) is not handled again; one set while it was down is, once', async () => {
    const first = harness();
    put(first.api, { [REPLAY]: 'a' });
    await first.reconciler.reconcile(KEY);
    expect(first.actions.calls).toHaveLength(1);
    const second = harness(first.api);
    await second.reconciler.reconcile(KEY);
    expect(second.actions.calls).toEqual([]);
    put(first.api, { [REPLAY]: 'b' }); // while nothing runs
    const third = harness(first.api);
    await third.reconciler.reconcile(KEY);
    await third.reconciler.reconcile(KEY);
    expect(third.actions.calls).toEqual([`replay ${KEY}`]);
    expect(stored(third)?.lastHandledReplayAt).toBe('b');
  });

  it('no annotation, an empty one, or another annotation: nothing is done and no request field is written', async () => {
    const h = harness();
    put(h.api, { [REPLAY]: '', [RESUME]: '', other: 'x' });
    await h.reconciler.reconcile(KEY);
    expect(h.actions.calls).toEqual([]);
    expect(stored(h)).not.toHaveProperty('lastHandledReplayAt');
    expect(stored(h)).not.toHaveProperty('lastHandledResumeAt');
    expect(requestEvents(h)).toEqual([]);
  });

  it('a replica that does not write status (not the leader) leaves the request alone; once it writes status, it handles it', async () => {
    const h = harness();
    h.leading.now = false;
    put(h.api, { [REPLAY]: 'a' });
    await h.reconciler.reconcile(KEY);
    expect(h.actions.calls).toEqual([]);
    expect(h.api.patches).toEqual([]);
    h.leading.now = true;
    await h.reconciler.reconcile(KEY);
    expect(h.actions.calls).toEqual([`replay ${KEY}`]);
    expect(stored(h)?.lastHandledReplayAt).toBe('a');
  });

  it('an endpoint that does not run waits: SecretNotFound, then InvalidSpec; handled once it runs', async () => {
    const h = harness();
    const spec = { url: URL, headers: [{ name: 'Authorization', valueFrom: { secretKeyRef: { name: 'token', key: 'token' } } }] };
    put(h.api, { [REPLAY]: 'a' }, { spec });
    await expect(h.reconciler.reconcile(KEY)).rejects.toThrow();
    put(h.api, { [REPLAY]: 'a' }, { spec: { url: URL, headers: [{ name: 'Host', value: 'x' }] } });
    await h.reconciler.reconcile(KEY);
    expect(stored(h)?.conditions?.find((c) => c.type === 'Ready')?.reason).toBe('InvalidSpec');
    expect(h.actions.calls).toEqual([]);
    expect(stored(h)).not.toHaveProperty('lastHandledReplayAt');
    h.api.putSecret('ns', 'token', { token: 'Bearer x' });
    put(h.api, { [REPLAY]: 'a' }, { spec });
    await h.reconciler.reconcile(KEY);
    expect(h.actions.calls).toEqual([`replay ${KEY}`]);
    expect(stored(h)?.lastHandledReplayAt).toBe('a');
  });

  it('an invalid spec while the last valid configuration runs: the request is handled (the endpoint runs)', async () => {
    const h = harness();
    put(h.api, {});
    await h.reconciler.reconcile(KEY);
    put(h.api, { [REPLAY]: 'a' }, { spec: { url: URL, headers: [{ name: 'Host', value: 'x' }] } });
    await h.reconciler.reconcile(KEY);
    expect(h.actions.calls).toEqual([`replay ${KEY}`]);
  });

  it('the status write fails: the action is not run again in this process, and the value is written on the next tick', async () => {
    const h = harness();
    put(h.api, { [REPLAY]: 'a' });
    await h.reconciler.reconcile(KEY); // Ready written first
    put(h.api, { [REPLAY]: 'b' });
    h.api.patchErrors.push(apiError(500));
    await h.reconciler.reconcile(KEY);
    expect(stored(h)?.lastHandledReplayAt).toBe('a');
    await h.reconciler.reconcile(KEY);
    expect(h.actions.calls).toEqual([`replay ${KEY}`, `replay ${KEY}`]);
    await h.status.tick();
    expect(stored(h)?.lastHandledReplayAt).toBe('b');
    expect(h.actions.calls).toHaveLength(2);
  });

  it('the action fails: the reconcile rejects (the work queue retries), nothing is recorded; the retry handles it', async () => {
    const h = harness();
    put(h.api, { [REPLAY]: 'a' });
    h.actions.failures.push(new Error('database unavailable'));
    await expect(h.reconciler.reconcile(KEY)).rejects.toThrow('database unavailable');
    expect(stored(h)).not.toHaveProperty('lastHandledReplayAt');
    expect(requestEvents(h)).toEqual([]);
    await h.reconciler.reconcile(KEY);
    expect(stored(h)?.lastHandledReplayAt).toBe('a');
    expect(h.actions.calls).toHaveLength(2);
  });

  it('replay and resume together: each handled once, each value recorded, one Event each', async () => {
    const h = harness();
    put(h.api, { [REPLAY]: 'r1', [RESUME]: 's1' });
    await h.reconciler.reconcile(KEY);
    await h.reconciler.reconcile(KEY);
    expect(h.actions.calls).toEqual([`replay ${KEY}`, `resume ${KEY}`]);
    expect(stored(h)).toMatchObject({ lastHandledReplayAt: 'r1', lastHandledResumeAt: 's1' });
    expect(requestEvents(h)).toEqual([
      `Normal ReplayRequested: 3 dead letters back in the queue (${REPLAY}: r1)`,
      `Normal ResumeRequested: the AutoDisabled endpoint sends again (${RESUME}: s1)`,
    ]);
  });
});

describe('EndpointReconciler: requests with the engine', () => {
  it('replay: the endpoint\'s dead letters go to the (now healthy) receiver once; the Event says how many', async () => {
    const receiver = await TestReceiver.start();
    cleanups.push(() => receiver.close());
    const store = new MemoryStore();
    const events = makeEvents(2, 'dead');
    store.deadLetter(events.map((event) => ({ id: event.id, json: JSON.stringify(event), acceptedAt: Date.now() })));
    const h = harness(new FakeClusterApi(), { engine: true, backend: { commit: (routes) => ({ routes, duplicates: [] }), storeFor: () => store } });
    put(h.api, { [REPLAY]: 'a' }, { spec: { url: receiver.url } });
    await h.reconciler.reconcile(KEY);
    const received = await receiver.waitForEvents((e) => e.length >= 2);
    expect(received.map((e) => e.id)).toEqual(events.map((e) => e.id));
    expect(requestEvents(h)).toEqual([`Normal ReplayRequested: 2 dead letters back in the queue (${REPLAY}: a)`]);
    await h.reconciler.reconcile(KEY);
    expect(requestEvents(h)).toHaveLength(1);
    expect(store.takeDeadLetters()).toEqual([]);
  });

  it('resume of an endpoint that is not AutoDisabled: nothing to resume, the value is still recorded once', async () => {
    const h = harness(new FakeClusterApi(), { engine: true });
    put(h.api, { [RESUME]: 'a' });
    await h.reconciler.reconcile(KEY);
    await h.reconciler.reconcile(KEY);
    expect(stored(h)?.lastHandledResumeAt).toBe('a');
    expect(requestEvents(h)).toEqual([`Normal ResumeRequested: the endpoint was not AutoDisabled: nothing to resume (${RESUME}: a)`]);
    await expect(engineActions(h.endpoints).resume(KEY)).resolves.toBe(false);
  });
});
