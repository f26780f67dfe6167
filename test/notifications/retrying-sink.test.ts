// The retrying sink's receiver-facing options on their own (no HTTP): a destination that throws the errors an HTTP
// sink throws, virtual time. The loopback versions are in client-errors, retry-after and auto-disable tests.
import { describe, expect, it } from 'vitest';
import { HttpRequestError, HttpStatusError } from '../../src/notifications/errors.ts';
import { BreakerStrategy } from '../../src/notifications/retry.ts';
import { RetryingSink, systemClock } from '../../src/notifications/retrying-sink.ts';
import { MAX_TIMER_MS } from '../../src/notifications/timer-delay.ts';
import type { QueuedEvent, Sink } from '../../src/notifications/sink.ts';
import { fakeClock } from './test-sinks.ts';

const events = (n: number): QueuedEvent[] => Array.from({ length: n }, (_, i) => ({ id: `e-${i}`, json: '{}', acceptedAt: 0 }));

/** Throws the scripted errors in turn, then accepts; records the virtual time of each attempt. */
function scripted(clock: { now(): number }, ...errors: Error[]): Sink<QueuedEvent> & { at: number[] } {
  const at: number[] = [];
  return {
    at,
    write: async () => {
      at.push(clock.now());
      const error = errors.shift();
      if (error) throw error;
    },
    close: async () => {},
  };
}

describe('RetryingSink: Retry-After', () => {
  it('waits what the error asks, capped by maxRetryAfterMs (default 5 minutes); a request error has none', async () => {
    const clock = fakeClock(0);
    const dst = scripted(clock, new HttpStatusError(503, 'Service Unavailable', undefined, 2000), new HttpStatusError(429, 'Too Many Requests', undefined, 3_600_000), new HttpRequestError('refused'));
    await new RetryingSink(dst, new BreakerStrategy(100, 0), { clock }).write(events(1));
    expect(dst.at).toEqual([0, 2000, 2000 + 300_000, 2000 + 300_000]);
  });
});

describe('RetryingSink: attempted', () => {
  it('is told after each attempt, failed or not, once the attempt has ended and before the next permit', async () => {
    const clock = fakeClock(0);
    const log: string[] = [];
    const dst = scripted(clock, new HttpRequestError('refused'), new HttpStatusError(503, 'Service Unavailable'));
    const write = dst.write;
    dst.write = async (items) => {
      log.push('attempt');
      await write(items);
    };
    const sink = new RetryingSink(dst, new BreakerStrategy(1, 100), {
      clock,
      permit: async () => void log.push('permit'),
      attempted: () => void log.push('ended'),
    });
    await sink.write(events(1));
    expect(log).toEqual(['permit', 'attempt', 'ended', 'permit', 'attempt', 'ended', 'permit', 'attempt', 'ended']);
  });
});

describe('RetryingSink: attempted, when the write is aborted while a permit is given', () => {
  it('is told too: the attempt the permit allowed is not made', async () => {
    const clock = fakeClock(0);
    const stop = new AbortController();
    const log: string[] = [];
    const dst = scripted(clock);
    const sink = new RetryingSink(dst, new BreakerStrategy(1, 100), {
      clock,
      permit: async () => {
        log.push('permit');
        stop.abort(); // the write is aborted as the permit is given
      },
      attempted: () => void log.push('ended'),
    });
    await expect(sink.write(events(1), { signal: stop.signal })).rejects.toMatchObject({ code: 'ERR_WRITE_ABORTED' });
    expect(log).toEqual(['permit', 'ended']);
    expect(dst.at).toEqual([]);
  });
});

describe('RetryingSink: disableAfterMs', () => {
  it('calls disable once per failing streak; if the caller does not stop it, delivery goes on', async () => {
    const clock = fakeClock(0);
    const told: string[] = [];
    const fail = (): Error => new HttpStatusError(503, 'Service Unavailable');
    const dst = scripted(clock, fail(), fail(), fail(), fail());
    const sink = new RetryingSink(dst, new BreakerStrategy(1, 4000), { clock, disableAfterMs: 10_000, disable: (m) => told.push(m) });
    await sink.write(events(1));
    // 0, 4, 8 s; the wait is cut at 10 s to tell, then the attempt due at 12 s goes out.
    expect(dst.at).toEqual([0, 4000, 8000, 12_000, 16_000]);
    expect(clock.sleeps).toEqual([4000, 4000, 2000, 2000, 4000]);
    expect(told).toEqual(['failing without a success for 10000ms (retry.disableAfter); last: 503 Service Unavailable']);
  });

  it('an aborted write after disable rejects with what was settled', async () => {
    const clock = fakeClock(0);
    const stop = new AbortController();
    const dst = scripted(clock, ...Array.from({ length: 10 }, () => new HttpStatusError(500, 'Internal Server Error')));
    const sink = new RetryingSink(dst, new BreakerStrategy(1, 4000), { clock, disableAfterMs: 5000, disable: () => stop.abort() });
    await expect(sink.write(events(2), { signal: stop.signal })).rejects.toMatchObject({ code: 'ERR_WRITE_ABORTED', settled: 0 });
    expect(dst.at).toEqual([0, 4000]);
  });
});

describe('systemClock.sleep beyond what a Node.js timer keeps (about 24.8 days)', () => {
  it('waits instead of ending after 1 ms (a 720h retry.maxBackoff, a long Retry-After); aborting still ends it at once', async () => {
    const stop = new AbortController();
    let ended = false;
    const sleeping = systemClock.sleep(MAX_TIMER_MS + 1_000, stop.signal).then(() => (ended = true), () => 'aborted');
    const warnings: string[] = [];
    const onWarning = (warning: Error): void => void warnings.push(warning.name);
    process.on('warning', onWarning);
    try {
      await new Promise((resolve) => setTimeout(resolve, 100)); // the window in which an overflowed timer would have fired
      expect(ended).toBe(false);
      stop.abort();
      expect(await sleeping).toBe('aborted');
      expect(warnings).not.toContain('TimeoutOverflowWarning');
    } finally {
      process.off('warning', onWarning);
    }
  });
});
