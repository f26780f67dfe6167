// The per-key work queue: every reconcile is a promise the test settles by hand, every retry wait goes through a
// recording delay that is held until the test releases it, so ordering is exact and nothing sleeps.
import { afterEach, describe, expect, it } from 'vitest';
import { WorkQueue, type ReconcileResult } from '../../src/k8s/work-queue.ts';
import { until } from '../support/wait.ts';
import { captureLogs, ManualDelay, type LogLine } from './support.ts';

interface Call {
  key: string;
  resolve: (result?: ReconcileResult) => void;
  reject: (error: Error) => void;
}

interface Harness {
  queue: WorkQueue;
  /** Every handler call, in order; settle them with resolve/reject. */
  calls: Call[];
  delay: ManualDelay;
  logs: LogLine[];
  /** Most reconciles running at the same time, overall and for one key. */
  peak: { overall: number; perKey: number };
}

const harnesses: Harness[] = [];

afterEach(async () => {
  // A failed test may leave reconciles unsettled; stop() would wait for them forever.
  for (const h of harnesses.splice(0)) {
    const stopping = h.queue.stop();
    for (const call of h.calls) call.resolve();
    await stopping;
  }
});

function harness(options: { concurrency?: number } = {}): Harness {
  const calls: Call[] = [];
  const delay = new ManualDelay(0);
  const { logger, lines } = captureLogs();
  const running = new Map<string, number>();
  const peak = { overall: 0, perKey: 0 };
  const queue = new WorkQueue({
    handler: (key) =>
      new Promise<ReconcileResult | void>((resolve, reject) => {
        running.set(key, (running.get(key) ?? 0) + 1);
        peak.perKey = Math.max(peak.perKey, running.get(key)!);
        peak.overall = Math.max(peak.overall, [...running.values()].reduce((a, b) => a + b, 0));
        const end = (): void => void running.set(key, running.get(key)! - 1);
        calls.push({ key, resolve: (r) => (end(), resolve(r)), reject: (e) => (end(), reject(e)) });
      }),
    logger,
    backoff: { baseMs: 1000, maxMs: 8000 },
    delay: delay.delay,
    random: () => 0.25,
    ...(options.concurrency !== undefined && { concurrency: options.concurrency }),
  });
  const h = { queue, calls, delay, logs: lines, peak };
  harnesses.push(h);
  return h;
}

const keys = (calls: Call[]): string[] => calls.map((c) => c.key);

/** Waits until the handler was called `n` times in all (a settled reconcile or a released wait starts the next). */
const calledTimes = (h: Harness, n: number): Promise<void> => until(() => h.calls.length >= n, () => `${n} handler calls (got ${keys(h.calls).join(', ')})`);

/** Waits until `n` retry waits were asked for in all (a failure's backoff, or a requeue). */
const waitsAsked = (h: Harness, n: number): Promise<void> => until(() => h.delay.waits.length >= n, () => `${n} waits (got ${h.delay.waits.join(', ')})`);

/** whenIdle with a deadline: nothing queued or running any more. */
async function idle(h: Harness): Promise<void> {
  let done = false;
  void h.queue.whenIdle().then(() => (done = true));
  await until(() => done, () => `the queue to be idle (calls: ${keys(h.calls).join(', ')})`);
}

describe('WorkQueue', () => {
  it('runs one reconcile per key at a time; adds during it collapse into exactly one more run afterwards', async () => {
    const h = harness();
    h.queue.add('ns/a');
    expect(keys(h.calls)).toEqual(['ns/a']);
    h.queue.add('ns/a');
    h.queue.add('ns/a');
    h.queue.add('ns/a');
    expect(keys(h.calls)).toEqual(['ns/a']);
    h.calls[0]!.resolve();
    await calledTimes(h, 2);
    expect(keys(h.calls)).toEqual(['ns/a', 'ns/a']);
    h.calls[1]!.resolve();
    await idle(h);
    expect(keys(h.calls)).toEqual(['ns/a', 'ns/a']);
    expect(h.peak.perKey).toBe(1);
  });

  it('collapses duplicate adds of a key that is waiting for a free slot', async () => {
    const h = harness({ concurrency: 1 });
    h.queue.add('ns/busy');
    h.queue.add('ns/a');
    h.queue.add('ns/b');
    h.queue.add('ns/a');
    h.queue.add('ns/a');
    expect(keys(h.calls)).toEqual(['ns/busy']);
    h.calls[0]!.resolve();
    await calledTimes(h, 2);
    h.calls[1]!.resolve();
    await calledTimes(h, 3);
    h.calls[2]!.resolve();
    await idle(h);
    expect(keys(h.calls)).toEqual(['ns/busy', 'ns/a', 'ns/b']);
  });

  it('runs different keys side by side up to the concurrency limit, in the order they were added', async () => {
    const h = harness({ concurrency: 2 });
    for (const key of ['ns/a', 'ns/b', 'ns/c', 'ns/d', 'ns/e']) h.queue.add(key);
    expect(keys(h.calls)).toEqual(['ns/a', 'ns/b']);
    h.calls[1]!.resolve();
    await calledTimes(h, 3);
    expect(keys(h.calls)).toEqual(['ns/a', 'ns/b', 'ns/c']);
    h.calls[0]!.resolve();
    h.calls[2]!.resolve();
    await calledTimes(h, 5);
    expect(keys(h.calls)).toEqual(['ns/a', 'ns/b', 'ns/c', 'ns/d', 'ns/e']);
    h.calls[3]!.resolve();
    h.calls[4]!.resolve();
    await idle(h);
    expect(h.peak.overall).toBe(2);
  });

  it('defaults to four at a time', async () => {
    const h = harness();
    for (const key of ['ns/a', 'ns/b', 'ns/c', 'ns/d', 'ns/e', 'ns/f']) h.queue.add(key);
    expect(keys(h.calls)).toEqual(['ns/a', 'ns/b', 'ns/c', 'ns/d']);
    for (const call of h.calls) call.resolve();
    await calledTimes(h, 6);
    expect(keys(h.calls)).toHaveLength(6);
    for (const call of h.calls.slice(4)) call.resolve();
    await idle(h);
    expect(h.peak.overall).toBe(4);
  });

  it('retries a failure with a per-key wait that grows, and a success resets it', async () => {
    const h = harness();
    const fail = (i: number): void => h.calls[i]!.reject(new Error(`boom ${i}`));
    h.queue.add('ns/a');
    fail(0);
    await waitsAsked(h, 1);
    // random() = 0.25 → 500 + 0.25·(ceiling − 500) with ceiling 1000, 2000, 4000: 625, 875, 1375
    expect(h.delay.waits).toEqual([625]);
    expect(h.delay.held).toBe(1);
    await idle(h); // a waiting retry does not count: nothing runs until the wait ends
    expect(keys(h.calls)).toEqual(['ns/a']);
    h.delay.release();
    await calledTimes(h, 2);
    expect(keys(h.calls)).toEqual(['ns/a', 'ns/a']);
    fail(1);
    h.queue.add('ns/b');
    fail(2); // another key keeps its own count
    await waitsAsked(h, 3);
    expect(h.delay.waits).toEqual([625, 875, 625]);
    h.delay.release();
    await calledTimes(h, 5);
    expect(keys(h.calls)).toEqual(['ns/a', 'ns/a', 'ns/b', 'ns/a', 'ns/b']);
    fail(3);
    h.calls[4]!.resolve();
    await waitsAsked(h, 4);
    expect(h.delay.waits).toEqual([625, 875, 625, 1375]);
    h.delay.release();
    await calledTimes(h, 6);
    h.calls[5]!.resolve(); // a succeeds: its count starts again
    await idle(h);
    h.queue.add('ns/a');
    fail(6);
    await waitsAsked(h, 5);
    expect(h.delay.waits).toEqual([625, 875, 625, 1375, 625]);
    const warnings = h.logs.filter((l) => l.msg === 'reconcile failed; retrying');
    expect(warnings.map((l) => [l.level, l.key, l.failures, l.retryInMs, l.error])).toEqual([
      ['warn', 'ns/a', 1, 625, 'boom 0'],
      ['warn', 'ns/a', 2, 875, 'boom 1'],
      ['warn', 'ns/b', 1, 625, 'boom 2'],
      ['warn', 'ns/a', 3, 1375, 'boom 3'],
      ['warn', 'ns/a', 1, 625, 'boom 6'],
    ]);
  });

  it('an add supersedes a pending addAfter: it runs at once and the delayed run is cancelled', async () => {
    const h = harness();
    h.queue.addAfter('ns/a', 30_000);
    expect(h.delay.waits).toEqual([30_000]);
    expect(h.calls).toEqual([]);
    h.queue.add('ns/a');
    expect(keys(h.calls)).toEqual(['ns/a']);
    expect(h.delay.held).toBe(0); // the wait was aborted
    h.calls[0]!.resolve();
    await idle(h); // the aborted wait ended before the run did: a delayed run would have been added by now
    expect(keys(h.calls)).toEqual(['ns/a']);
  });

  it('a later addAfter replaces an earlier one; the key runs once when the wait ends', async () => {
    const h = harness();
    h.queue.addAfter('ns/a', 10_000);
    h.queue.addAfter('ns/a', 20_000);
    expect(h.delay.waits).toEqual([10_000, 20_000]);
    expect(h.delay.held).toBe(1);
    h.delay.release();
    await calledTimes(h, 1);
    h.calls[0]!.resolve();
    await idle(h); // a second run (either wait adding the key) would still be running or queued
    expect(keys(h.calls)).toEqual(['ns/a']);
  });

  it('requeueAfterMs from the handler schedules the next run', async () => {
    const h = harness();
    h.queue.add('ns/a');
    h.calls[0]!.resolve({ requeueAfterMs: 60_000 });
    await waitsAsked(h, 1);
    expect(h.delay.waits).toEqual([60_000]);
    h.delay.release();
    await calledTimes(h, 2);
    expect(keys(h.calls)).toEqual(['ns/a', 'ns/a']);
    h.calls[1]!.resolve();
    await idle(h);
  });

  it('an add while a failing run is in flight wins over its backoff: it runs again at once', async () => {
    const h = harness();
    h.queue.add('ns/a');
    h.queue.add('ns/a');
    h.calls[0]!.reject(new Error('boom'));
    await calledTimes(h, 2);
    expect(keys(h.calls)).toEqual(['ns/a', 'ns/a']);
    expect(h.delay.waits).toEqual([625]);
    expect(h.delay.held).toBe(0);
    h.calls[1]!.resolve();
    await idle(h);
  });

  it('stop() waits for the reconciles in flight, cancels delayed and queued keys, and ignores later adds', async () => {
    const h = harness({ concurrency: 1 });
    h.queue.add('ns/running');
    h.queue.add('ns/queued');
    h.queue.addAfter('ns/delayed', 5000);
    let stopped = false;
    const stopping = h.queue.stop().then(() => void (stopped = true));
    // The marker: a queue with nothing in flight, stopped afterwards, has finished stopping; this one must not have.
    await harness().queue.stop();
    expect(stopped).toBe(false);
    expect(h.delay.held).toBe(0);
    h.queue.add('ns/late');
    h.queue.add('ns/running'); // would otherwise run again afterwards
    h.calls[0]!.reject(new Error('failed while stopping')); // no retry is scheduled either
    await stopping;
    expect(stopped).toBe(true);
    h.delay.release();
    expect(keys(h.calls)).toEqual(['ns/running']);
    expect(h.delay.waits).toEqual([5000]);
    await h.queue.stop(); // idempotent
  });

  it('whenIdle resolves at once when idle, else after the last run (a collapsed re-run included); delayed retries do not count', async () => {
    const h = harness();
    await h.queue.whenIdle();
    h.queue.add('ns/a');
    h.queue.add('ns/b');
    h.queue.add('ns/a');
    let idle = false;
    const waiting = h.queue.whenIdle().then(() => void (idle = true));
    h.calls[0]!.resolve();
    await calledTimes(h, 3);
    expect(keys(h.calls)).toEqual(['ns/a', 'ns/b', 'ns/a']);
    h.calls[1]!.reject(new Error('retry later'));
    await waitsAsked(h, 1); // b's failure is handled: its retry waits, a's re-run still runs
    expect(idle).toBe(false);
    h.calls[2]!.resolve();
    await waiting;
    expect(idle).toBe(true);
    expect(h.delay.held).toBe(1); // b waits for its retry, and the queue counts as idle
  });
});
