// StatusWriter with a fake clock, a fake ClusterApi that records patches and Events, and stub endpoints whose
// counters the test sets: what is written when, and which Events tell the story.
import { afterEach, describe, expect, it } from 'vitest';
import type { Condition } from '../../src/api/notification-endpoint.ts';
import type { NotificationEndpointObject } from '../../src/k8s/cluster-api.ts';
import { StatusWriter } from '../../src/controller/status-writer.ts';
import { ed25519PublicKey } from '../../src/notifications/signing.ts';
import type { StatsSnapshot } from '../../src/notifications/endpoint-stats.ts';
import type { Endpoint } from '../../src/notifications/endpoint.ts';
import type { ReadyState } from '../../src/sources/source.ts';
import { eventually, until } from '../support/wait.ts';
import { captureLogs, type LogLine } from '../k8s/support.ts';
import { apiError, FakeClusterApi } from './fake-cluster-api.ts';

const KEY = 'ns/hook';
const OTHER = 'ns/other';
const T0 = Date.parse('2026-03-01T10:00:00.000Z');
const INTERVAL = 10_000;
const at = (ms: number): string => new Date(T0 + ms).toISOString().replace(/\.\d{3}Z$/, 'Z');

const READY: ReadyState = { ready: true, reason: 'Configured' };
const NOT_RUNNING_MESSAGE = 'the endpoint does not run in the delivery engine; see the Ready condition';
const INVALID: ReadyState = { ready: false, reason: 'InvalidSpec', message: 'spec.headers[0].name: "Content-Type" is reserved' };

/** Stands in for an Endpoint: the writer reads only stats(), pending and config.tls and signing. */
class StubEndpoint {
  pending = 0;
  config: { tls?: { insecureSkipVerify: boolean }; signingAlgorithm?: 'Ed25519'; signingKey?: Buffer } = {};
  counters: StatsSnapshot = { delivered: 0, failures: 0, errors: 0, deadLettered: 0, discarded: 0, coalesced: 0, responses: [], consecutiveFailures: 0 };

  stats(): StatsSnapshot {
    return structuredClone(this.counters);
  }

  get endpoint(): Endpoint {
    return this as unknown as Endpoint;
  }

  succeed(n: number, atMs: number): void {
    const c = this.counters;
    c.delivered += n;
    c.consecutiveFailures = 0;
    c.lastSuccessTime = at(atMs);
    c.responses = [{ code: 202, count: c.delivered }, ...c.responses.filter((r) => r.code !== 202)].sort((a, b) => a.code - b.code);
  }

  fail(n: number, atMs: number): void {
    const c = this.counters;
    c.failures += n;
    c.consecutiveFailures += n;
    c.lastFailureTime = at(atMs);
    c.lastError = '503 Service Unavailable';
    c.responses = [...c.responses.filter((r) => r.code !== 503), { code: 503, count: c.failures }].sort((a, b) => a.code - b.code);
  }
}

interface Harness {
  writer: StatusWriter;
  api: FakeClusterApi;
  clock: { ms: number };
  logs: LogLine[];
  object: NotificationEndpointObject;
}

const writers: StatusWriter[] = [];
const gates: (() => void)[] = [];
afterEach(async () => {
  for (const open of gates.splice(0)) open(); // a failed test may leave a patch stalled
  for (const writer of writers.splice(0)) await writer.stop();
});

/** Stalls every patch of `api` until the returned function is called. */
function stall(api: FakeClusterApi): () => void {
  let open!: () => void;
  api.patchGate = new Promise<void>((resolve) => (open = resolve));
  gates.push(open);
  return () => {
    api.patchGate = undefined;
    open();
  };
}

function harness(status?: NotificationEndpointObject['status'], options: { checkMs?: number; intervalMs?: number } = {}): Harness {
  const api = new FakeClusterApi();
  const clock = { ms: 0 };
  const { logger, lines } = captureLogs();
  const writer = new StatusWriter({ api, logger, intervalMs: options.intervalMs ?? INTERVAL, now: () => new Date(T0 + clock.ms), ...(options.checkMs !== undefined && { checkMs: options.checkMs }) });
  writers.push(writer);
  const object = api.put({ apiVersion: 'registry-notifier.io/v1alpha1', kind: 'NotificationEndpoint', metadata: { name: 'hook', namespace: 'ns', generation: 3, uid: 'u1' }, spec: { url: 'http://127.0.0.1:9/' }, ...(status && { status }) });
  return { writer, api, clock, logs: lines, object };
}

const condition = (type: string, status: Condition['status'], reason: string, lastTransitionTime: string, message?: string, observedGeneration = 3): Condition => ({
  type, status, observedGeneration, lastTransitionTime, reason, ...(message !== undefined && { message }),
});
const ZERO = { pending: 0, delivered: 0, failed: 0, failures: 0, errors: 0, deadLettered: 0, coalesced: 0, responses: [], insecureSkipVerify: null };

describe('StatusWriter: when it writes', () => {
  it('the first observation is written at once: generation, both conditions, counters; Event Normal Configured', async () => {
    const h = harness();
    const stub = new StubEndpoint();
    await h.writer.observe(KEY, h.object, READY, stub.endpoint);
    expect(h.api.patches).toEqual([{
      key: KEY,
      status: {
        observedGeneration: 3,
        conditions: [condition('Ready', 'True', 'Configured', at(0)), condition('Delivering', 'True', 'Idle', at(0))],
        ...ZERO,
      },
    }]);
    expect(h.api.events).toEqual([{ key: KEY, type: 'Normal', reason: 'Configured', message: 'endpoint is live in the delivery engine' }]);
    expect(h.writer.states()).toEqual(new Map([[KEY, READY]]));
  });

  it('counters: at most every interval and only when they changed', async () => {
    const h = harness();
    const stub = new StubEndpoint();
    stub.succeed(1, 0); // Delivering is Succeeded from the start, so only counters change below
    await h.writer.observe(KEY, h.object, READY, stub.endpoint);
    expect(h.api.patches).toHaveLength(1);
    stub.succeed(4, 1000);
    h.clock.ms = 1000;
    await h.writer.tick();
    h.clock.ms = INTERVAL - 1;
    await h.writer.tick();
    expect(h.api.patches).toHaveLength(1); // changed, not due
    h.clock.ms = INTERVAL;
    await h.writer.tick();
    expect(h.api.patches).toHaveLength(2);
    expect(h.api.patches[1]?.status).toMatchObject({ delivered: 5, responses: [{ code: 202, count: 5 }], lastSuccessTime: at(1000) });
    h.clock.ms = 3 * INTERVAL;
    await h.writer.tick();
    h.clock.ms = 10 * INTERVAL;
    await h.writer.tick();
    expect(h.api.patches).toHaveLength(2); // due, nothing changed
    stub.pending = 2;
    h.clock.ms = 10 * INTERVAL + 1;
    await h.writer.tick();
    expect(h.api.patches).toHaveLength(3); // the last write was long ago: due at once
    expect(h.api.patches[2]?.status.pending).toBe(2);
    expect(h.api.events.map((e) => e.reason)).toEqual(['Configured']);
  });

  it('a Delivering message change (more failures) waits for the interval; a Delivering status change is written at once', async () => {
    const h = harness();
    const stub = new StubEndpoint();
    stub.succeed(10, 0);
    await h.writer.observe(KEY, h.object, READY, stub.endpoint);
    stub.fail(3, 500);
    h.clock.ms = 1000;
    await h.writer.tick();
    expect(h.api.patches).toHaveLength(2); // True → False: at once, though the counters are not due
    expect(h.api.patches[1]?.status.conditions?.[1]).toEqual(condition('Delivering', 'False', 'Failing', at(1000), '3 failed attempts in a row; last: 503 Service Unavailable'));
    stub.fail(5, 1500);
    h.clock.ms = 2000;
    await h.writer.tick();
    expect(h.api.patches).toHaveLength(2); // only the message (and counters) changed
    h.clock.ms = 1000 + INTERVAL;
    await h.writer.tick();
    expect(h.api.patches).toHaveLength(3);
    expect(h.api.patches[2]?.status.conditions?.[1]).toEqual(condition('Delivering', 'False', 'Failing', at(1000), '8 failed attempts in a row; last: 503 Service Unavailable'));
    expect(h.api.patches[2]?.status).toMatchObject({ failed: 8, failures: 8, responses: [{ code: 202, count: 10 }, { code: 503, count: 8 }], lastError: '503 Service Unavailable' });
    stub.succeed(1, 1000 + INTERVAL + 100);
    h.clock.ms = 1000 + INTERVAL + 200;
    await h.writer.tick();
    expect(h.api.patches).toHaveLength(4); // back to True: at once
    expect(h.api.patches[3]?.status.conditions?.[1]).toEqual(condition('Delivering', 'True', 'Succeeded', at(1000 + INTERVAL + 200)));
    expect(h.api.events).toEqual([
      { key: KEY, type: 'Normal', reason: 'Configured', message: 'endpoint is live in the delivery engine' },
      { key: KEY, type: 'Warning', reason: 'Failing', message: '3 failed attempts in a row; last: 503 Service Unavailable' },
      { key: KEY, type: 'Normal', reason: 'Recovered', message: 'the receiver accepts events again' },
    ]);
  });

  it('a new generation is written at once even when nothing else changed', async () => {
    const h = harness();
    const stub = new StubEndpoint();
    await h.writer.observe(KEY, h.object, READY, stub.endpoint);
    h.clock.ms = 1000;
    h.api.objects.get(KEY)!.metadata!.generation = 4; // the spec changed
    await h.writer.observe(KEY, (await h.api.getEndpoint('ns', 'hook'))!, READY, stub.endpoint);
    expect(h.api.patches).toHaveLength(2);
    expect(h.api.patches[1]?.status).toMatchObject({
      observedGeneration: 4,
      conditions: [condition('Ready', 'True', 'Configured', at(0), undefined, 4), condition('Delivering', 'True', 'Idle', at(0), undefined, 4)],
    });
    expect(h.api.events).toHaveLength(1);
    h.clock.ms = 2000;
    await h.writer.observe(KEY, (await h.api.getEndpoint('ns', 'hook'))!, READY, stub.endpoint);
    expect(h.api.patches).toHaveLength(2); // the same generation again: nothing to write
  });

  it('lastTransitionTime is seeded from the stored conditions and kept while the status stays; a restart records no Event', async () => {
    const h = harness({
      observedGeneration: 3,
      conditions: [
        { type: 'Ready', status: 'True', reason: 'Configured', observedGeneration: 3, lastTransitionTime: '2025-12-01T00:00:00Z' },
        { type: 'Delivering', status: 'True', reason: 'Succeeded', observedGeneration: 3, lastTransitionTime: '2025-12-02T00:00:00Z' },
      ],
      delivered: 100,
    });
    const stub = new StubEndpoint();
    stub.succeed(100, -1000);
    await h.writer.observe(KEY, h.object, READY, stub.endpoint);
    expect(h.api.patches[0]?.status.conditions).toEqual([
      condition('Ready', 'True', 'Configured', '2025-12-01T00:00:00Z'),
      condition('Delivering', 'True', 'Succeeded', '2025-12-02T00:00:00Z'),
    ]);
    expect(h.api.events).toEqual([]);
    // A status change sets the time; a reason change within the same status keeps it (Kubernetes' rule).
    h.clock.ms = 5000;
    await h.writer.observe(KEY, h.object, INVALID, stub.endpoint);
    expect(h.api.patches.at(-1)?.status.conditions).toEqual([
      condition('Ready', 'False', 'InvalidSpec', at(5000), INVALID.message),
      condition('Delivering', 'True', 'Succeeded', '2025-12-02T00:00:00Z'),
    ]);
    h.clock.ms = 6000;
    await h.writer.observe(KEY, h.object, { ready: false, reason: 'SecretNotFound', message: 'Secret token not found' }, stub.endpoint);
    expect(h.api.patches.at(-1)?.status.conditions?.[0]).toEqual(condition('Ready', 'False', 'SecretNotFound', at(5000), 'Secret token not found'));
  });
});

describe('StatusWriter: Events', () => {
  it('Ready True → Normal Configured; False → Warning <reason> with the message; each reason change again', async () => {
    const h = harness();
    await h.writer.observe(KEY, h.object, INVALID, undefined);
    h.clock.ms = 1000;
    await h.writer.observe(KEY, h.object, { ready: false, reason: 'SecretNotFound', message: 'Secret token not found' }, undefined);
    await h.writer.observe(KEY, h.object, { ready: false, reason: 'SecretNotFound', message: 'Secret token not found' }, undefined);
    h.clock.ms = 2000;
    await h.writer.observe(KEY, h.object, READY, new StubEndpoint().endpoint);
    h.clock.ms = 3000;
    await h.writer.observe(KEY, h.object, { ready: false, reason: 'Disabled', message: 'spec.disabled is true: events are queued, not sent' }, new StubEndpoint().endpoint);
    expect(h.api.events).toEqual([
      { key: KEY, type: 'Warning', reason: 'InvalidSpec', message: INVALID.message },
      { key: KEY, type: 'Warning', reason: 'SecretNotFound', message: 'Secret token not found' },
      { key: KEY, type: 'Normal', reason: 'Configured', message: 'endpoint is live in the delivery engine' },
      { key: KEY, type: 'Warning', reason: 'Disabled', message: 'spec.disabled is true: events are queued, not sent' },
    ]);
    // Without an endpoint there are no counters to write, and the receiver's side is unknown: Delivering Unknown.
    expect(h.api.patches[0]?.status).toEqual({
      observedGeneration: 3,
      conditions: [
        condition('Ready', 'False', 'InvalidSpec', at(0), INVALID.message),
        condition('Delivering', 'Unknown', 'NotRunning', at(0), NOT_RUNNING_MESSAGE),
      ],
    });
    // Unknown → True (the endpoint started) records no Delivering Event: the Ready Event tells it.
    expect(h.api.patches.at(-1)?.status.conditions?.[1]).toEqual(condition('Delivering', 'True', 'Idle', at(2000)));
  });

  it('Delivering: True ↔ False tell Failing and Recovered; into and out of Unknown (not running) tell nothing of their own', async () => {
    const h = harness();
    const stub = new StubEndpoint();
    stub.fail(2, 0);
    await h.writer.observe(KEY, h.object, READY, stub.endpoint);
    // the endpoint stops running (its Secret disappeared and so on): Unknown, told by the Ready Event
    h.clock.ms = 1000;
    await h.writer.observe(KEY, h.object, { ready: false, reason: 'SecretNotFound', message: 'Secret token not found' }, undefined);
    expect(h.api.patches.at(-1)?.status.conditions?.[1]).toEqual(condition('Delivering', 'Unknown', 'NotRunning', at(1000), NOT_RUNNING_MESSAGE));
    // it runs again and fails at once: Unknown → False is a Failing Event
    h.clock.ms = 2000;
    await h.writer.observe(KEY, h.object, READY, stub.endpoint);
    stub.succeed(1, 2500);
    h.clock.ms = 3000;
    await h.writer.tick();
    expect(h.api.events.map((e) => `${e.type} ${e.reason}`)).toEqual([
      'Normal Configured', 'Warning Failing', 'Warning SecretNotFound', 'Normal Configured', 'Warning Failing', 'Normal Recovered',
    ]);
  });

  it('a failing Event does not fail the write; it is logged', async () => {
    const h = harness();
    h.api.recordEvent = async () => {
      throw apiError(403);
    };
    await h.writer.observe(KEY, h.object, READY, undefined);
    expect(h.api.patches).toHaveLength(1);
    await eventually(() => expect(h.logs.filter((l) => l.msg === 'could not record event').map((l) => [l.level, l.endpoint])).toEqual([['warn', KEY]]));
  });
});

describe('StatusWriter: failures, shutdown, TLS flag', () => {
  it('a failing patch is logged and retried on the next tick (its Event recorded then, once)', async () => {
    const h = harness();
    h.api.patchErrors.push(apiError(500));
    await h.writer.observe(KEY, h.object, READY, new StubEndpoint().endpoint);
    expect(h.api.patchCalls).toHaveLength(1);
    expect(h.api.patches).toEqual([]);
    expect(h.api.events).toEqual([]);
    expect(h.logs.filter((l) => l.msg === 'status write failed; retrying on the next tick').map((l) => l.level)).toEqual(['warn']);
    h.clock.ms = 1000;
    await h.writer.tick();
    expect(h.api.patches).toHaveLength(1);
    // the transition is dated when it was written
    expect(h.api.patches[0]?.status.conditions?.[0]).toEqual(condition('Ready', 'True', 'Configured', at(1000)));
    expect(h.api.events.map((e) => e.reason)).toEqual(['Configured']);
    await h.writer.tick();
    expect(h.api.patchCalls).toHaveLength(2);
  });

  it('stop() writes changed counters at once, due or not; with nothing changed it writes nothing', async () => {
    const h = harness();
    const stub = new StubEndpoint();
    stub.succeed(1, 0);
    await h.writer.observe(KEY, h.object, READY, stub.endpoint);
    stub.succeed(6, 100);
    h.clock.ms = 200;
    await h.writer.tick();
    expect(h.api.patches).toHaveLength(1);
    await h.writer.stop();
    expect(h.api.patches).toHaveLength(2);
    expect(h.api.patches[1]?.status.delivered).toBe(7);
    await h.writer.stop();
    expect(h.api.patches).toHaveLength(2);
  });

  it('coalesced is a counter like the others: a change alone is written when due', async () => {
    const h = harness();
    const stub = new StubEndpoint();
    await h.writer.observe(KEY, h.object, READY, stub.endpoint);
    stub.counters.coalesced = 12; // only coalesced moved: Delivering stays Idle
    h.clock.ms = INTERVAL - 1;
    await h.writer.tick();
    expect(h.api.patches).toHaveLength(1);
    h.clock.ms = INTERVAL;
    await h.writer.tick();
    expect(h.api.patches).toHaveLength(2);
    expect(h.api.patches[1]?.status).toMatchObject({ coalesced: 12, pending: 0, delivered: 0 });
  });

  it('insecureSkipVerify: true in status while TLS verification is off, null (cleared) otherwise', async () => {
    const h = harness();
    const stub = new StubEndpoint();
    stub.config = { tls: { insecureSkipVerify: true } };
    await h.writer.observe(KEY, h.object, READY, stub.endpoint);
    expect(h.api.patches[0]?.status.insecureSkipVerify).toBe(true);
    expect(h.api.objects.get(KEY)?.status?.insecureSkipVerify).toBe(true);
    stub.config = { tls: { insecureSkipVerify: false } };
    await h.writer.stop();
    expect(h.api.patches[1]?.status.insecureSkipVerify).toBeNull();
    expect(h.api.objects.get(KEY)?.status).not.toHaveProperty('insecureSkipVerify');
  });

  it('signingPublicKey: written at once when the Ed25519 key changes (not held for the interval), null (cleared) without Ed25519', async () => {
    const h = harness();
    const stub = new StubEndpoint();
    const [first, second] = [Buffer.alloc(32, 1), Buffer.alloc(32, 2)];
    stub.config = { signingAlgorithm: 'Ed25519', signingKey: first };
    stub.succeed(1, 0);
    await h.writer.observe(KEY, h.object, READY, stub.endpoint);
    expect(h.api.objects.get(KEY)?.status?.signingPublicKey).toBe(ed25519PublicKey(first));
    h.clock.ms = 1000; // well inside the interval: a counter change alone would wait
    stub.succeed(1, 1000);
    await h.writer.observe(KEY, (await h.api.getEndpoint('ns', 'hook'))!, READY, stub.endpoint);
    expect(h.api.patches).toHaveLength(1);
    stub.config = { signingAlgorithm: 'Ed25519', signingKey: second };
    await h.writer.observe(KEY, (await h.api.getEndpoint('ns', 'hook'))!, READY, stub.endpoint);
    expect(h.api.patches).toHaveLength(2);
    expect(h.api.objects.get(KEY)?.status?.signingPublicKey).toBe(ed25519PublicKey(second));
    expect(ed25519PublicKey(second)).not.toBe(ed25519PublicKey(first));
    h.clock.ms = 2000;
    stub.config = {};
    await h.writer.observe(KEY, (await h.api.getEndpoint('ns', 'hook'))!, READY, stub.endpoint);
    expect(h.api.patches).toHaveLength(3);
    expect(h.api.patches[2]?.status.signingPublicKey).toBeNull();
    expect(h.api.objects.get(KEY)?.status).not.toHaveProperty('signingPublicKey');
  });

  it('forget() stops writing an endpoint and drops it from states()', async () => {
    const h = harness();
    const stub = new StubEndpoint();
    await h.writer.observe(KEY, h.object, READY, stub.endpoint);
    h.writer.forget(KEY);
    stub.succeed(3, 0);
    h.clock.ms = 5 * INTERVAL;
    await h.writer.tick();
    await h.writer.stop();
    expect(h.api.patches).toHaveLength(1);
    expect(h.writer.states().size).toBe(0);
  });

  it('start() checks on its own every checkMs', async () => {
    const h = harness(undefined, { checkMs: 5 });
    const stub = new StubEndpoint();
    await h.writer.observe(KEY, h.object, READY, stub.endpoint);
    h.writer.start();
    stub.fail(1, 0);
    await eventually(() => expect(h.api.patches).toHaveLength(2), 5000);
    expect(h.api.events.map((e) => e.reason)).toEqual(['Configured', 'Failing']);
  });
});

describe('StatusWriter: writes of one endpoint never overlap', () => {
  it('a tick while a transition is being written neither sends a second patch nor records the Event twice', async () => {
    const h = harness();
    const release = stall(h.api);
    const observing = h.writer.observe(KEY, h.object, INVALID, undefined);
    const ticking = h.writer.tick();
    await until(() => h.api.patchCalls.length >= 1, "the transition's patch on the wire");
    release();
    await Promise.all([observing, ticking]);
    expect(h.api.patchCalls).toHaveLength(1);
    expect(h.api.peakPatchesInFlight.get(KEY)).toBe(1);
    expect(h.api.events).toEqual([{ key: KEY, type: 'Warning', reason: 'InvalidSpec', message: INVALID.message }]);
  });

  it('an observation during a tick write is written after it, from the state the tick left', async () => {
    const h = harness();
    const stub = new StubEndpoint();
    await h.writer.observe(KEY, h.object, READY, stub.endpoint);
    const release = stall(h.api);
    stub.fail(1, 100);
    h.clock.ms = 200;
    const ticking = h.writer.tick(); // Delivering → False, stalled
    await until(() => h.api.patchCalls.length >= 2, "the tick's patch on the wire");
    h.clock.ms = 300;
    const observing = h.writer.observe(KEY, h.object, INVALID, stub.endpoint);
    // The marker: the first observation of another endpoint, started afterwards, reaches the wire; an observation
    // of this one that did not wait for the tick's write would have got there first.
    const other = h.api.put({ ...h.object, metadata: { ...h.object.metadata, name: 'other', uid: 'u2' } });
    const marking = h.writer.observe(OTHER, other, READY, new StubEndpoint().endpoint);
    await until(() => h.api.patchCalls.some((p) => p.key === OTHER), "the other endpoint's patch on the wire");
    expect(h.api.patchCalls.filter((p) => p.key === KEY)).toHaveLength(2);
    release();
    await Promise.all([ticking, observing, marking]);
    expect(h.api.peakPatchesInFlight.get(KEY)).toBe(1);
    expect(h.api.patches.filter((p) => p.key === KEY).map((p) => p.status.conditions?.map((c) => `${c.type}=${c.status}/${c.reason}@${c.lastTransitionTime}`))).toEqual([
      [`Ready=True/Configured@${at(0)}`, `Delivering=True/Idle@${at(0)}`],
      [`Ready=True/Configured@${at(0)}`, `Delivering=False/Failing@${at(200)}`],
      [`Ready=False/InvalidSpec@${at(300)}`, `Delivering=False/Failing@${at(200)}`],
    ]);
    expect(h.api.events.filter((e) => e.key === KEY).map((e) => `${e.type} ${e.reason}`)).toEqual(['Normal Configured', 'Warning Failing', 'Warning InvalidSpec']);
  });
});

describe('StatusWriter: a total write rate, and only the elected writer writes', () => {
  /** 100 endpoints observed (one write each, at once), then counters changed on all of them. */
  async function many(options: { maxWritesPerSecond: number; writes?: () => boolean; lookedAtPerTick?: number }): Promise<{ writer: StatusWriter; api: FakeClusterApi; clock: { ms: number }; stubs: StubEndpoint[] }> {
    const api = new FakeClusterApi();
    const clock = { ms: 0 };
    const { logger } = captureLogs();
    const writer = new StatusWriter({ api, logger, intervalMs: INTERVAL, now: () => new Date(T0 + clock.ms), ...options });
    writers.push(writer);
    const stubs: StubEndpoint[] = [];
    for (let i = 0; i < 100; i++) {
      const object = api.put({ apiVersion: 'registry-notifier.io/v1alpha1', kind: 'NotificationEndpoint', metadata: { name: `hook-${i}`, namespace: 'ns', generation: 1, uid: `u${i}` }, spec: { url: 'http://127.0.0.1:9/' } });
      const stub = new StubEndpoint();
      stub.succeed(1, 0); // Delivering True/Succeeded from the start: later successes change only counters
      stubs.push(stub);
      await writer.observe(`ns/hook-${i}`, object, READY, stub.endpoint);
    }
    return { writer, api, clock, stubs };
  }

  it('at most the rate per second over all endpoints; the rest follow in later ticks with their freshest counters', async () => {
    const { writer, api, clock, stubs } = await many({ maxWritesPerSecond: 10 });
    api.patches.length = 0;
    stubs.forEach((stub) => stub.succeed(1, 1));
    clock.ms += INTERVAL; // every counter is due
    await writer.tick();
    expect(api.patches.length).toBeLessThanOrEqual(10);
    expect(api.patches.length).toBeGreaterThan(0);
    stubs.forEach((stub) => stub.succeed(1, 2)); // newer counters before the rest get their turn
    let seconds = 1;
    for (; seconds < 20 && new Set(api.patches.map((p) => p.key)).size < 100; seconds++) {
      clock.ms += 1000;
      const before = api.patches.length;
      await writer.tick();
      expect(api.patches.length - before, 'one second of writes').toBeLessThanOrEqual(10);
    }
    expect(new Set(api.patches.map((p) => p.key)).size, 'every endpoint got its turn').toBe(100);
    expect(seconds).toBeGreaterThanOrEqual(9);
    const late = api.patches.at(-1)!;
    expect(late.status.delivered, 'the freshest counters, not the ones of the first tick').toBe(3);
  });

  it('beyond lookedAtPerTick endpoints a tick looks at the next ones round the ring: idle ticks cost little, every endpoint still gets its turn', async () => {
    const { writer, api, clock, stubs } = await many({ maxWritesPerSecond: 1000, lookedAtPerTick: 30 });
    let looks = 0;
    for (const stub of stubs) {
      const stats = stub.stats.bind(stub);
      stub.stats = () => (looks++, stats());
    }
    clock.ms += INTERVAL;
    await writer.tick(); // nothing changed: a look at 30 endpoints, no write
    expect(api.patches.length - 100).toBe(0);
    expect(looks, 'stats read for 30 endpoints, not 100').toBeLessThanOrEqual(30 * 3);
    expect(looks).toBeGreaterThan(0);
    stubs.forEach((stub) => stub.succeed(1, 1));
    const written: number[] = [];
    for (let tick = 0; tick < 4; tick++) {
      clock.ms += 1000;
      const before = api.patches.length;
      await writer.tick();
      written.push(api.patches.length - before);
    }
    // 100 endpoints, 30 a tick: 30, 30, 30, then the last 10 (the ring's start was looked at by the idle tick).
    expect(written).toEqual([30, 30, 30, 10]);
    expect(new Set(api.patches.slice(100).map((p) => p.key)).size, 'every endpoint got its turn').toBe(100);
  });

  it('a Delivering transition goes before counter updates when the rate is short', async () => {
    const { writer, api, clock, stubs } = await many({ maxWritesPerSecond: 5 });
    api.patches.length = 0;
    stubs.forEach((stub) => stub.succeed(1, 1));
    stubs[73]!.fail(10, 2); // Delivering turns False: a transition
    clock.ms += INTERVAL;
    await writer.tick();
    expect(api.patches[0]?.key).toBe('ns/hook-73');
  });

  it('Delivering transitions of many endpoints at once (their receiver came back) are written within the rate; a Ready transition goes at once', async () => {
    const { writer, api, clock, stubs } = await many({ maxWritesPerSecond: 5 });
    stubs.forEach((stub) => stub.fail(3, 1)); // the shared receiver fails: every Delivering turns False
    clock.ms += 1000;
    api.patches.length = 0;
    await writer.tick();
    expect(api.patches.length, 'one second of the rate').toBeLessThanOrEqual(5);
    expect(api.patches.length).toBeGreaterThan(0);
    // The tokens are spent; a Ready transition (the spec was refused) is still written at once.
    const object = api.objects.get('ns/hook-99')!;
    const before = api.patches.length;
    await writer.observe('ns/hook-99', object, INVALID, stubs[99]!.endpoint);
    expect(api.patches.slice(before).map((p) => [p.key, p.status.conditions?.[0]?.reason])).toEqual([['ns/hook-99', 'InvalidSpec']]);
    let seconds = 0;
    for (; seconds < 40 && new Set(api.patches.filter((p) => p.status.conditions?.[1]?.status === 'False').map((p) => p.key)).size < 100; seconds++) {
      clock.ms += 1000;
      const from = api.patches.length;
      await writer.tick();
      expect(api.patches.length - from, 'one second of writes').toBeLessThanOrEqual(5);
    }
    expect(new Set(api.patches.filter((p) => p.status.conditions?.[1]?.status === 'False').map((p) => p.key)).size, 'every one written in the end').toBe(100);
    expect(seconds).toBeGreaterThanOrEqual(18);
  });

  it('after a restart, endpoints whose Ready and generation are as stored are written within the rate (their counters), not all at once', async () => {
    const api = new FakeClusterApi();
    const clock = { ms: 0 };
    const writer = new StatusWriter({ api, logger: captureLogs().logger, intervalMs: INTERVAL, maxWritesPerSecond: 10, now: () => new Date(T0 + clock.ms) });
    writers.push(writer);
    const stored = { observedGeneration: 1, conditions: [condition('Ready', 'True', 'Configured', at(-5000), undefined, 1), condition('Delivering', 'True', 'Succeeded', at(-5000), undefined, 1)] };
    for (let i = 0; i < 50; i++) {
      const object = api.put({ apiVersion: 'registry-notifier.io/v1alpha1', kind: 'NotificationEndpoint', metadata: { name: `hook-${i}`, namespace: 'ns', generation: 1, uid: `u${i}` }, spec: { url: 'http://127.0.0.1:9/' }, status: stored });
      const stub = new StubEndpoint();
      stub.succeed(1, 0);
      await writer.observe(`ns/hook-${i}`, object, READY, stub.endpoint);
    }
    expect(api.patches.length, 'no more than the rate at once').toBeLessThanOrEqual(10);
    expect(api.events, 'a restart tells nothing').toHaveLength(0);
    await writer.tick();
    expect(api.patches.length).toBeLessThanOrEqual(10);
    for (let s = 0; s < 10; s++) {
      clock.ms += 1000;
      await writer.tick();
    }
    expect(new Set(api.patches.map((p) => p.key)).size).toBe(50);
    expect(api.patches.length).toBeLessThanOrEqual(10 + 10 * 10);
  });

  it('the final write on shutdown keeps to its time budget: transitions first, then the stalest counters', async () => {
    const api = new FakeClusterApi();
    const clock = { ms: 0 };
    const writer = new StatusWriter({ api, logger: captureLogs().logger, intervalMs: INTERVAL, maxWritesPerSecond: 1000, finalWriteBudgetMs: 300, now: () => new Date(T0 + clock.ms) });
    const stubs: StubEndpoint[] = [];
    for (let i = 0; i < 200; i++) {
      const object = api.put({ apiVersion: 'registry-notifier.io/v1alpha1', kind: 'NotificationEndpoint', metadata: { name: `hook-${i}`, namespace: 'ns', generation: 1, uid: `u${i}` }, spec: { url: 'http://127.0.0.1:9/' } });
      const stub = new StubEndpoint();
      stub.succeed(1, 0);
      stubs.push(stub);
      await writer.observe(`ns/hook-${i}`, object, READY, stub.endpoint);
    }
    stubs.forEach((stub) => stub.succeed(1, 1));
    stubs[150]!.fail(5, 1); // a transition: written first
    const patch = api.patchStatus.bind(api);
    api.patchStatus = async (...args) => {
      await new Promise((resolve) => setTimeout(resolve, 10)); // an API server that takes 10 ms a write
      return patch(...args);
    };
    api.patches.length = 0;
    const started = performance.now();
    await writer.stop();
    const took = performance.now() - started;
    expect(took).toBeLessThan(300 + 200);
    expect(api.patches[0]?.key).toBe('ns/hook-150');
    // Four side by side: more than one at a time could write in 300 ms, and not all 200.
    expect(api.patches.length, 'four writes side by side').toBeGreaterThan(300 / 10 + 5);
    expect(api.patches.length, 'not all 200 at 10 ms each').toBeLessThan(200);
  });

  it('writes nothing (status or Events) while another replica is the elected writer; takes over when elected', async () => {
    let leading = false;
    const { writer, api, clock, stubs } = await many({ maxWritesPerSecond: 1000, writes: () => leading });
    expect(api.patches).toHaveLength(0);
    expect(api.events).toHaveLength(0);
    stubs[0]!.fail(10, 1);
    clock.ms += INTERVAL;
    await writer.tick();
    expect(api.patches).toHaveLength(0);
    leading = true;
    await writer.tick();
    expect(api.patches.map((p) => p.key)).toContain('ns/hook-0');
    expect(api.events.length).toBeGreaterThan(0);
  });
});

describe('StatusWriter: Events are sent off the status path', () => {
  /** Holds every Event send of `api` open until the returned function is called (or the test ends). */
  function holdEvents(api: FakeClusterApi): () => void {
    let open!: () => void;
    const gate = new Promise<void>((resolve) => (open = resolve));
    gates.push(open);
    const record = api.recordEvent.bind(api);
    api.recordEvent = async (...args) => {
      await gate;
      return record(...args);
    };
    return open;
  }

  it('a status write (and the next ones) does not wait for a slow Event send; the Events follow in order', async () => {
    const h = harness();
    const release = holdEvents(h.api);
    const stub = new StubEndpoint();
    await h.writer.observe(KEY, h.object, READY, stub.endpoint);
    stub.fail(1, 100);
    h.clock.ms = 200;
    await h.writer.tick();
    await h.writer.observe(KEY, h.object, INVALID, stub.endpoint);
    await h.writer.recordHandled(KEY, { lastHandledReplayAt: at(300) }, 'Replayed', 'replayed 0 events');
    expect(h.api.patches).toHaveLength(4);
    expect(h.api.events).toEqual([]);
    release();
    await eventually(() => expect(h.api.events.map((e) => `${e.type} ${e.reason}`)).toEqual(['Normal Configured', 'Warning Failing', 'Warning InvalidSpec', 'Normal Replayed']));
  });

  it('stop() sends the Events still queued, those of the final write too', async () => {
    const h = harness();
    const record = h.api.recordEvent.bind(h.api);
    h.api.recordEvent = async (...args) => {
      await new Promise((resolve) => setTimeout(resolve, 20)); // an API server that takes 20 ms an Event
      return record(...args);
    };
    const stubs = Array.from({ length: 5 }, () => new StubEndpoint());
    for (const [i, stub] of stubs.entries()) {
      const object = h.api.put({ ...h.object, metadata: { ...h.object.metadata, name: `hook-${i}`, uid: `u${i}` } });
      await h.writer.observe(`ns/hook-${i}`, object, READY, stub.endpoint);
    }
    for (const stub of stubs) stub.fail(1, 100);
    h.clock.ms = 200;
    await h.writer.stop();
    expect(h.api.events.map((e) => e.reason).sort()).toEqual([...Array(5).fill('Configured'), ...Array(5).fill('Failing')]);
  });

  it('stop() keeps to its budget when the Events never go out: the final write, then at most what is left of it (at least 1 s)', async () => {
    const api = new FakeClusterApi();
    const { logger, lines } = captureLogs();
    const writer = new StatusWriter({ api, logger, intervalMs: INTERVAL, finalWriteBudgetMs: 300 });
    writers.push(writer);
    holdEvents(api);
    for (let i = 0; i < 5; i++) {
      const object = api.put({ apiVersion: 'registry-notifier.io/v1alpha1', kind: 'NotificationEndpoint', metadata: { name: `hook-${i}`, namespace: 'ns', generation: 1, uid: `u${i}` }, spec: { url: 'http://127.0.0.1:9/' } });
      await writer.observe(`ns/hook-${i}`, object, INVALID, undefined);
    }
    expect(api.patches).toHaveLength(5);
    const started = performance.now();
    await writer.stop();
    const took = performance.now() - started;
    expect(took).toBeGreaterThanOrEqual(900);
    expect(took).toBeLessThan(1000 + 1000);
    expect(api.events).toEqual([]);
    // two in flight when the budget ran out (never answered), three dropped
    expect(lines.filter((l) => l.msg === 'Kubernetes Events dropped').map((l) => [l.level, l.dropped, l.why])).toEqual([['warn', 3, 'shutdown budget spent']]);
  });
});

describe('StatusWriter: handled requests against a cache older than the write', () => {
  const REPLAYED = 'lastHandledReplayAt' as const;

  it('a request it handled stays handled when a reconcile brings an object read before that write', async () => {
    const h = harness();
    const stub = new StubEndpoint();
    await h.writer.observe(KEY, h.object, READY, stub.endpoint);
    await h.writer.recordHandled(KEY, { [REPLAYED]: 'v1' }, 'Replayed', 'replayed 2 dead letters');
    expect(h.api.objects.get(KEY)?.status?.[REPLAYED]).toBe('v1');
    // The informer's copy from before the status write: its status does not show v1 yet.
    await h.writer.observe(KEY, h.object, READY, stub.endpoint);
    expect(h.writer.handled(KEY, REPLAYED), 'the stale object must not undo the handled value').toBe('v1');
    // The cache catches up, then a newer request is handled: the newest value is the one reported.
    await h.writer.observe(KEY, h.api.objects.get(KEY)!, READY, stub.endpoint);
    expect(h.writer.handled(KEY, REPLAYED)).toBe('v1');
    await h.writer.recordHandled(KEY, { [REPLAYED]: 'v2' }, 'Replayed', 'replayed 0 dead letters');
    await h.writer.observe(KEY, h.object, READY, stub.endpoint);
    expect(h.writer.handled(KEY, REPLAYED)).toBe('v2');
  });

  it('once another replica is elected, the stored status (not what it remembers writing) says what was handled', async () => {
    let leading = true;
    const api = new FakeClusterApi();
    const { logger } = captureLogs();
    const writer = new StatusWriter({ api, logger, intervalMs: INTERVAL, writes: () => leading });
    writers.push(writer);
    const object = api.put({ apiVersion: 'registry-notifier.io/v1alpha1', kind: 'NotificationEndpoint', metadata: { name: 'hook', namespace: 'ns', generation: 1, uid: 'u1' }, spec: { url: 'http://127.0.0.1:9/' } });
    await writer.observe(KEY, object, READY, undefined);
    await writer.recordHandled(KEY, { [REPLAYED]: 'v1' }, 'Replayed', 'replayed 1 dead letter');
    leading = false;
    await writer.tick();
    // The other replica handled v2 meanwhile; this one is elected again and sees an object that says so.
    leading = true;
    await writer.observe(KEY, { ...object, status: { ...object.status, [REPLAYED]: 'v2' } }, READY, undefined);
    expect(writer.handled(KEY, REPLAYED)).toBe('v2');
  });
});
