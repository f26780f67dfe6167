// A receiver's Retry-After on 429 and 503 (api.md section 11): the next attempt waits at least that long, capped by
// retry.maxBackoff, under both strategies; the strategy's own delay wins when it is longer. Real loopback
// receivers; virtual time (the fake clock's sleeps advance it at once), read by the receiver at each request.
import { describe, expect, it } from 'vitest';
import { Endpoint, endpointConfig, type EndpointConfig } from '../../src/notifications/endpoint.ts';
import { HttpStatusError } from '../../src/notifications/errors.ts';
import { HttpSink } from '../../src/notifications/http-sink.ts';
import { parseRetryAfter } from '../../src/notifications/retry-after.ts';
import { makeEvents } from '../support/events.ts';
import { startReceiver, useCleanups } from '../support/cleanup.ts';
import type { ScriptedResponse, TestReceiver } from '../support/receiver.ts';
import { until } from '../support/wait.ts';
import { fakeClock, queued, send } from './test-sinks.ts';

const cleanups = useCleanups();
const NOW = Date.UTC(2026, 10, 22, 9, 30, 0); // a whole second, so an HTTP date (whole seconds) is exact

describe('parseRetryAfter', () => {
  it('reads delta-seconds and HTTP dates (IMF-fixdate and the obsolete forms), a past date as 0', () => {
    expect(parseRetryAfter('120', NOW)).toBe(120_000);
    expect(parseRetryAfter(' 0 ', NOW)).toBe(0);
    expect(parseRetryAfter(new Date(NOW + 30_000).toUTCString(), NOW)).toBe(30_000);
    expect(parseRetryAfter('Sunday, 22-Nov-26 09:31:00 GMT', NOW)).toBe(60_000); // RFC 850
    expect(parseRetryAfter('Sun Nov 22 09:30:10 2026', NOW)).toBeGreaterThanOrEqual(0); // asctime: no zone, read as local
    expect(parseRetryAfter(new Date(NOW - 5000).toUTCString(), NOW)).toBe(0);
    expect(parseRetryAfter(['7', '9'], NOW)).toBe(7000);
    expect(parseRetryAfter('99999999999999999999', NOW)).toBe(Number.MAX_SAFE_INTEGER);
  });

  it('ignores what is not a wait: missing, empty, negative, fractional, garbage', () => {
    for (const value of [undefined, '', '   ', '-3', '1.5', 'soon', 'Wed, 99 Foo 2026 99:99:99 GMT']) {
      expect(parseRetryAfter(value, NOW), String(value)).toBeUndefined();
    }
  });
});

describe('HttpSink and Retry-After', () => {
  it('puts a 429 or 503 answer\'s Retry-After into the error, and ignores it on other codes', async () => {
    const r = await startReceiver(cleanups);
    r.enqueue(
      { status: 429, headers: { 'retry-after': '7' } },
      { status: 503, headers: { 'retry-after': new Date(NOW + 12_000).toUTCString() } },
      { status: 500, headers: { 'retry-after': '7' } },
      { status: 503 },
    );
    const sink = new HttpSink({ url: r.url, timeoutMs: 2000, now: () => NOW });
    cleanups.push(() => sink.close());
    const asked: (number | undefined)[] = [];
    for (let i = 0; i < 4; i++) {
      const error = await sink.write(queued(makeEvents(1))).then(() => undefined, (e: unknown) => e);
      expect(error).toBeInstanceOf(HttpStatusError);
      asked.push((error as HttpStatusError).retryAfterMs);
    }
    expect(asked).toEqual([7000, 12_000, undefined, undefined]);
  });
});

// Breaker with a threshold no test reaches: on its own it retries at once, so every wait is the receiver's.
const breaker = (url: string, maxBackoffMs = 60_000): EndpointConfig =>
  endpointConfig({ url, threshold: 100, backoffMs: 10, timeoutMs: 2000, retry: { strategy: 'Breaker', maxBackoffMs } });
// Exponential whose jitter (random 0) always picks no delay: again every wait is the receiver's.
const exponential = (url: string, maxBackoffMs = 60_000): EndpointConfig =>
  endpointConfig({ url, backoffMs: 10, timeoutMs: 2000, retry: { strategy: 'Exponential', maxBackoffMs } });

const strategies: [string, (url: string, maxBackoffMs?: number) => EndpointConfig][] = [
  ['Breaker', breaker],
  ['Exponential', exponential],
];

/** A receiver answering `first` to the first request and 202 after, recording the virtual time of each request. */
async function scripted(clock: ReturnType<typeof fakeClock>, first: (now: number) => ScriptedResponse): Promise<{ r: TestReceiver; at: number[] }> {
  const r = await startReceiver(cleanups);
  const at: number[] = [];
  r.respond(() => {
    at.push(clock.now());
    return at.length === 1 ? first(clock.now()) : 202;
  });
  return { r, at };
}

async function deliverOne(clock: ReturnType<typeof fakeClock>, config: EndpointConfig): Promise<Endpoint> {
  const e = new Endpoint('ns/polite', config, { clock, random: () => 0 });
  cleanups.push(() => e.close({ signal: AbortSignal.abort() }));
  send(e, makeEvents(1));
  await until(() => e.stats().delivered === 1, 'delivered after the wait', 5000);
  return e;
}

describe.each(strategies)('Retry-After with %s', (_name, make) => {
  it.each([429, 503])('%i with delta-seconds: the next attempt is not before it', async (status) => {
    const clock = fakeClock(NOW);
    const { r, at } = await scripted(clock, () => ({ status, headers: { 'retry-after': '30' } }));
    await deliverOne(clock, make(r.url));
    expect(at).toHaveLength(2);
    expect(at[1]! - at[0]!).toBeGreaterThanOrEqual(30_000);
    expect(at[1]! - at[0]!).toBeLessThan(31_000);
  });

  it.each([429, 503])('%i with an HTTP date: the next attempt is not before that date', async (status) => {
    const clock = fakeClock(NOW);
    let until = 0;
    const { r, at } = await scripted(clock, (now) => ({ status, headers: { 'retry-after': new Date((until = now + 45_000)).toUTCString() } }));
    await deliverOne(clock, make(r.url));
    expect(at[1]).toBeGreaterThanOrEqual(until);
    expect(at[1]! - until).toBeLessThan(1000);
  });

  it('is capped by retry.maxBackoff', async () => {
    const clock = fakeClock(NOW);
    const { r, at } = await scripted(clock, () => ({ status: 503, headers: { 'retry-after': '3600' } }));
    await deliverOne(clock, make(r.url, 10_000));
    expect(at[1]! - at[0]!).toBeGreaterThanOrEqual(10_000);
    expect(at[1]! - at[0]!).toBeLessThan(11_000);
  });

  it('is ignored on a 500', async () => {
    const clock = fakeClock(NOW);
    const { r, at } = await scripted(clock, () => ({ status: 500, headers: { 'retry-after': '30' } }));
    await deliverOne(clock, make(r.url));
    expect(at[1]! - at[0]!).toBeLessThan(1000);
  });
});

describe('Retry-After and the strategy\'s own delay', () => {
  it('the longer one wins: a breaker waiting 20 s is not cut short by a Retry-After of 5 s', async () => {
    const clock = fakeClock(NOW);
    const { r, at } = await scripted(clock, () => ({ status: 503, headers: { 'retry-after': '5' } }));
    await deliverOne(clock, endpointConfig({ url: r.url, threshold: 1, backoffMs: 20_000, timeoutMs: 2000 }));
    expect(at[1]! - at[0]!).toBeGreaterThanOrEqual(20_000);
    expect(at[1]! - at[0]!).toBeLessThan(21_000);
  });

  it('a success forgets it: the event after a waited one goes at once', async () => {
    const clock = fakeClock(NOW);
    const { r, at } = await scripted(clock, () => ({ status: 429, headers: { 'retry-after': '30' } }));
    const e = await deliverOne(clock, breaker(r.url));
    send(e, makeEvents(1, 'next'));
    await until(() => e.stats().delivered === 2, 'second delivered', 5000);
    expect(at).toHaveLength(3);
    expect(at[2]).toBe(at[1]);
  });
});
