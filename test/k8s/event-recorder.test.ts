// EventRecorder over an API double whose sends the test holds open, delays or fails: record() returns at once, the
// queue is bounded (drops counted, logged once per interval), each object's Events keep their order, stop() flushes
// within its budget.
import { afterEach, describe, expect, it } from 'vitest';
import type { NotificationEndpointObject } from '../../src/k8s/cluster-api.ts';
import { EventRecorder, type EventRecorderOptions } from '../../src/k8s/event-recorder.ts';
import { captureLogs, type LogLine } from './support.ts';

interface Sent {
  key: string;
  reason: string;
}

/** An API double: every send is recorded when it starts, and settles when the test (or `latencyMs`) says. */
class SlowApi {
  started: Sent[] = [];
  done: Sent[] = [];
  inFlight = new Map<string, number>();
  peakPerKey = 0;
  peakTotal = 0;
  /** When set, a send waits for this promise. */
  gate: Promise<void> | undefined;
  latencyMs: () => number = () => 0;
  fail = false;

  async recordEvent(object: NotificationEndpointObject, _type: 'Normal' | 'Warning', reason: string): Promise<void> {
    const key = `${object.metadata?.namespace}/${object.metadata?.name}`;
    this.started.push({ key, reason });
    this.inFlight.set(key, (this.inFlight.get(key) ?? 0) + 1);
    this.peakPerKey = Math.max(this.peakPerKey, this.inFlight.get(key)!);
    this.peakTotal = Math.max(this.peakTotal, [...this.inFlight.values()].reduce((a, b) => a + b, 0));
    try {
      if (this.gate) await this.gate;
      const ms = this.latencyMs();
      if (ms > 0) await new Promise((resolve) => setTimeout(resolve, ms)); // the API server's latency, not a wait of the test
      if (this.fail) throw Object.assign(new Error('forbidden'), { code: 403 });
      this.done.push({ key, reason });
    } finally {
      this.inFlight.set(key, this.inFlight.get(key)! - 1);
    }
  }
}

const object = (name: string): NotificationEndpointObject => ({ apiVersion: 'registry-notifier.io/v1alpha1', kind: 'NotificationEndpoint', metadata: { name, namespace: 'ns', uid: name } });

const opens: (() => void)[] = [];
const recorders: EventRecorder[] = [];
afterEach(async () => {
  for (const open of opens.splice(0)) open();
  for (const recorder of recorders.splice(0)) await recorder.stop(1000);
});

function setup(options: Partial<EventRecorderOptions> = {}): { api: SlowApi; recorder: EventRecorder; logs: LogLine[]; hold: () => () => void } {
  const api = new SlowApi();
  const { logger, lines } = captureLogs();
  const recorder = new EventRecorder({ api, logger, ...options });
  recorders.push(recorder);
  const hold = (): (() => void) => {
    let open!: () => void;
    api.gate = new Promise<void>((resolve) => (open = resolve));
    opens.push(open);
    return () => {
      api.gate = undefined;
      open();
    };
  };
  return { api, recorder, logs: lines, hold };
}

describe('EventRecorder', () => {
  it('record() returns at once while the sends hang; they go out once the API answers', async () => {
    const { api, recorder, hold } = setup({ senders: 2 });
    const release = hold();
    for (let i = 0; i < 5; i++) recorder.record(object(`e${i}`), 'Normal', `R${i}`, 'm');
    expect(api.started.map((s) => s.reason)).toEqual(['R0', 'R1']); // two senders, the rest queued
    expect(recorder.queued).toBe(3);
    release();
    await recorder.whenIdle();
    expect(api.done.map((s) => s.reason).sort()).toEqual(['R0', 'R1', 'R2', 'R3', 'R4']);
    expect(api.peakTotal).toBe(2);
  });

  it('is bounded: beyond maxQueued an Event is dropped, counted, and logged at most once per interval', async () => {
    const { api, recorder, logs, hold } = setup({ senders: 2, maxQueued: 10, dropWarningIntervalMs: 60_000 });
    const release = hold();
    for (let i = 0; i < 1000; i++) recorder.record(object(`e${i}`), 'Warning', 'Failing', 'm');
    // two in flight, ten queued, the rest dropped
    expect(recorder.queued).toBe(10);
    expect(recorder.dropped).toBe(1000 - 2 - 10);
    const warnings = logs.filter((l) => l.msg === 'Kubernetes Events dropped');
    expect(warnings.map((l) => [l.level, l.dropped, l.droppedTotal, l.why])).toEqual([['warn', 1, 1, 'queue full']]);
    release();
    await recorder.whenIdle();
    expect(api.done).toHaveLength(12);
    // the drops not logged yet are told when the recorder stops
    await recorder.stop(1000);
    expect(logs.filter((l) => l.msg === 'Kubernetes Events dropped').map((l) => [l.dropped, l.droppedTotal])).toEqual([[1, 1], [987, 988]]);
  });

  it('keeps each object\'s order, one send per object at a time, with several senders', async () => {
    const { api, recorder } = setup({ senders: 4 });
    api.latencyMs = () => Math.floor(Math.random() * 4);
    const names = ['a', 'b', 'c', 'd', 'e', 'f'];
    for (let i = 0; i < 20; i++) for (const name of names) recorder.record(object(name), 'Normal', `${name}${i}`, 'm');
    await recorder.whenIdle();
    expect(api.peakPerKey).toBe(1);
    expect(api.peakTotal).toBeLessThanOrEqual(4);
    for (const name of names) {
      expect(api.done.filter((s) => s.key === `ns/${name}`).map((s) => s.reason)).toEqual(Array.from({ length: 20 }, (_, i) => `${name}${i}`));
    }
  });

  it('a failed send is logged and the next ones go on', async () => {
    const { api, recorder, logs } = setup();
    api.fail = true;
    recorder.record(object('a'), 'Normal', 'Configured', 'm');
    recorder.record(object('a'), 'Warning', 'Failing', 'm');
    await recorder.whenIdle();
    expect(api.started.map((s) => s.reason)).toEqual(['Configured', 'Failing']);
    expect(logs.filter((l) => l.msg === 'could not record event').map((l) => [l.level, l.endpoint, l.reason])).toEqual([['warn', 'ns/a', 'Configured'], ['warn', 'ns/a', 'Failing']]);
  });

  it('stop() sends what is queued within its budget', async () => {
    const { api, recorder } = setup({ senders: 2 });
    api.latencyMs = () => 5;
    for (let i = 0; i < 20; i++) recorder.record(object(`e${i % 3}`), 'Normal', `R${i}`, 'm');
    const left = await recorder.stop(10_000);
    expect(left).toBe(0);
    expect(api.done).toHaveLength(20);
    expect(recorder.dropped).toBe(0);
  });

  it('stop() keeps to its budget against an API that never answers, drops the rest (counted, logged) and takes no more Events', async () => {
    const { api, recorder, logs, hold } = setup({ senders: 2 });
    hold();
    for (let i = 0; i < 10; i++) recorder.record(object(`e${i}`), 'Normal', `R${i}`, 'm');
    const started = performance.now();
    const left = await recorder.stop(200);
    const took = performance.now() - started;
    expect(took).toBeGreaterThanOrEqual(150);
    expect(took).toBeLessThan(2000);
    expect(left).toBe(8);
    expect(recorder.dropped).toBe(8);
    expect(recorder.queued).toBe(0);
    expect(logs.filter((l) => l.msg === 'Kubernetes Events dropped').map((l) => [l.dropped, l.why])).toEqual([[8, 'shutdown budget spent']]);
    recorder.record(object('late'), 'Normal', 'Late', 'm');
    expect(recorder.dropped).toBe(9);
    expect(api.started).toHaveLength(2);
  });

  it('whenIdle() resolves at once with nothing to send, and after the last send otherwise', async () => {
    const { api, recorder } = setup();
    await recorder.whenIdle();
    api.latencyMs = () => 2;
    recorder.record(object('a'), 'Normal', 'R', 'm');
    expect(api.done).toHaveLength(0);
    await recorder.whenIdle();
    expect(api.done).toHaveLength(1);
  });
});
