import { getEventListeners } from 'node:events';
import { describe, expect, it } from 'vitest';
import { SinkClosedError, WriteAbortedError } from '../../src/notifications/errors.ts';
import { BreakerStrategy, ExponentialStrategy, type RetryStrategy } from '../../src/notifications/retry.ts';
import { RetryingSink } from '../../src/notifications/retrying-sink.ts';
import type { QueuedEvent } from '../../src/notifications/sink.ts';
import { checkClose } from './sink-contract.ts';
import { until } from '../support/wait.ts';
import { fakeClock, RecordingSink } from './test-sinks.ts';

const queued = (n: number, acceptedAt = 1_000_000): QueuedEvent[] =>
  Array.from({ length: n }, (_, i) => ({ id: `q-${i}`, json: `{"id":"q-${i}"}`, acceptedAt }));

describe('BreakerStrategy', () => {
  it('lets `threshold` attempts through at once, then waits `backoff` after the last failure', () => {
    const breaker = new BreakerStrategy(3, 1000);
    for (let i = 0; i < 3; i++) {
      expect(breaker.proceed(100)).toBe(0);
      breaker.failure(100);
    }
    expect(breaker.proceed(100)).toBe(1000);
    expect(breaker.proceed(600)).toBe(500);
    expect(breaker.proceed(1100)).toBe(0);
    breaker.success();
    expect(breaker.failures).toBe(0);
    expect(breaker.proceed(1100)).toBe(0);
  });
});

describe('ExponentialStrategy', () => {
  it('doubles the ceiling per failure from the base, capped, with full jitter', () => {
    const strategy = new ExponentialStrategy(100, 1000, () => 0.999999);
    const waits: number[] = [];
    for (let i = 0; i < 6; i++) {
      strategy.failure(0);
      waits.push(strategy.proceed(0));
    }
    expect(waits).toEqual([99, 199, 399, 799, 999, 999]);
    const jittered = new ExponentialStrategy(100, 1000, () => 0.5);
    jittered.failure(0);
    jittered.failure(0);
    expect(jittered.proceed(0)).toBe(100);
    jittered.success();
    expect(jittered.proceed(0)).toBe(0);
  });
});

// The same scenario against both strategies (go-events runs one test table over Breaker and Exponential).
const strategies: [string, () => RetryStrategy][] = [
  ['Breaker', () => new BreakerStrategy(2, 500)],
  ['Exponential', () => new ExponentialStrategy(100, 400, () => 1)],
];

describe.each(strategies)('RetryingSink with %s', (_name, make) => {
  it('retries a failing destination until it accepts, waiting as the strategy says', async () => {
    const clock = fakeClock();
    const dst = new RecordingSink<QueuedEvent>().fail(5);
    const sink = new RetryingSink(dst, make(), { clock });
    await sink.write(queued(2));
    expect(dst.attempts).toBe(6);
    expect(dst.items.map((e) => e.id)).toEqual(['q-0', 'q-1']);
    expect(clock.sleeps.length).toBeGreaterThan(0);
    expect(sink.failures).toBe(0);
  });

  it('dead-letters the whole batch after maxAttempts failed attempts', async () => {
    const dead: [string[], string][] = [];
    const dst = new RecordingSink<QueuedEvent>().fail(100);
    const sink = new RetryingSink(dst, make(), {
      clock: fakeClock(),
      budget: { maxAttempts: 3, maxAgeMs: 0 },
      deadLetter: (events, reason) => dead.push([events.map((e) => e.id), reason]),
    });
    await sink.write(queued(2));
    expect(dst.attempts).toBe(3);
    expect(dead).toEqual([[['q-0', 'q-1'], 'gave up after 3 attempts; last: scripted failure']]);
  });

  it('dead-letters by age only the head that is too old, and keeps retrying the rest', async () => {
    const clock = fakeClock(10_000);
    const dead: string[] = [];
    const dst = new RecordingSink<QueuedEvent>().fail(4);
    const sink = new RetryingSink(dst, make(), {
      clock,
      budget: { maxAttempts: 0, maxAgeMs: 5_000 },
      deadLetter: (events) => dead.push(...events.map((e) => e.id)),
    });
    const batch = [
      { id: 'old', json: '{}', acceptedAt: 4_000 }, // 6 s old: over the limit at the first failure
      { id: 'young', json: '{}', acceptedAt: 10_000 }, // the retries take ~1 s of virtual time: stays young
    ];
    await sink.write(batch);
    expect(dead).toEqual(['old']);
    expect(dst.items.map((e) => e.id)).toEqual(['young']);
  });

  it('stops waiting when the write is aborted, saying how much of the batch was settled', async () => {
    const dst = new RecordingSink<QueuedEvent>().fail(100);
    const sink = new RetryingSink(dst, make());
    const controller = new AbortController();
    const write = sink.write(queued(2), { signal: controller.signal });
    await dst.waitForAttempts(2);
    controller.abort();
    const error = await write.catch((e: unknown) => e);
    expect(error).toBeInstanceOf(WriteAbortedError);
    expect(error).toMatchObject({ code: 'ERR_WRITE_ABORTED', settled: 0 });
  });

  it('rejects a waiting write with SinkClosedError when closed', async () => {
    const dst = new RecordingSink<QueuedEvent>().fail(100);
    const sink = new RetryingSink(dst, make());
    const write = sink.write(queued(1));
    await dst.waitForAttempts(2);
    await sink.close();
    await expect(write).rejects.toBeInstanceOf(SinkClosedError);
  });

  it('follows the close contract', async () => {
    await checkClose(new RetryingSink(new RecordingSink<QueuedEvent>(), make()), queued(1));
  });
});

describe('RetryingSink permit', () => {
  it('asks before every attempt and waits for it; an abort while waiting ends the write with nothing sent', async () => {
    const dst = new RecordingSink<QueuedEvent>().fail(1);
    let grants = 0;
    let release: (() => void) | undefined;
    const sink = new RetryingSink(dst, new BreakerStrategy(10, 0), {
      permit: () => new Promise<void>((resolve) => {
        grants++;
        release = resolve;
      }),
    });
    const batch = [{ id: 'e1', json: '{}', acceptedAt: 0 }];
    const written = sink.write(batch);
    await until(() => grants === 1, 'the first permit asked', 2000);
    expect(dst.attempts).toBe(0);
    release!();
    await until(() => grants === 2, 'a permit before the retry', 2000);
    expect(dst.attempts).toBe(1);
    release!();
    await written;
    expect(dst.attempts).toBe(2);

    const stop = new AbortController();
    const waiting = sink.write(batch, { signal: stop.signal });
    await until(() => grants === 3, 'waiting for a permit', 2000);
    stop.abort();
    release!();
    await expect(waiting).rejects.toBeInstanceOf(WriteAbortedError);
    expect(dst.attempts).toBe(2);
  });

  it('the signal a permit waits on aborts with the write\'s signal or with close; once the permit is given nothing stays registered on the write\'s signal', async () => {
    const seen: AbortSignal[] = [];
    const sink = new RetryingSink(new RecordingSink<QueuedEvent>(), new BreakerStrategy(10, 0), {
      permit: (signal) => {
        seen.push(signal);
        return seen.length === 1 ? Promise.resolve() : new Promise<void>((resolve) => signal.addEventListener('abort', () => resolve(), { once: true }));
      },
    });
    const batch = [{ id: 'e1', json: '{}', acceptedAt: 0 }];
    const first = new AbortController();
    await sink.write(batch, { signal: first.signal });
    expect(getEventListeners(first.signal, 'abort')).toHaveLength(0); // nothing left behind by a delivered write
    expect(seen[0]!.aborted).toBe(false);

    const second = new AbortController();
    const waiting = sink.write(batch, { signal: second.signal });
    await until(() => seen.length === 2, 'the second permit asked', 2000);
    second.abort(new Error('moved on'));
    await expect(waiting).rejects.toBeInstanceOf(WriteAbortedError);
    expect(seen[1]!.aborted).toBe(true);
    expect(getEventListeners(second.signal, 'abort')).toHaveLength(0);

    const third = sink.write(batch, { signal: new AbortController().signal });
    await until(() => seen.length === 3, 'the third permit asked', 2000);
    const closing = sink.close();
    await expect(third).rejects.toBeInstanceOf(SinkClosedError);
    expect(seen[2]!.aborted).toBe(true);
    await closing;
  });
});
