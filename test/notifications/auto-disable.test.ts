// retry.disableAfter (api.md section 11): an endpoint failing without a single success for that long stops sending
// and keeps its queue; a changed configuration or `resume()` sends again, in order. Real loopback receivers,
// virtual time (the fake clock's sleeps advance it at once).
import { describe, expect, it } from 'vitest';
import { Endpoint, endpointConfig, type EndpointConfig } from '../../src/notifications/endpoint.ts';
import { EndpointSet } from '../../src/notifications/endpoint-set.ts';
import { SinkClosedError } from '../../src/notifications/errors.ts';
import { makeEvents } from '../support/events.ts';
import { startReceiver, useCleanups } from '../support/cleanup.ts';
import type { TestReceiver } from '../support/receiver.ts';
import { until } from '../support/wait.ts';
import { fakeClock, permitRecordingBackend, send } from './test-sinks.ts';

const cleanups = useCleanups();
const START = 1_000_000;

// A breaker that retries every 4 virtual seconds; disabled after 10 virtual seconds of failing.
const config = (url: string, extra: Partial<EndpointConfig> = {}): EndpointConfig =>
  endpointConfig({ url, threshold: 1, backoffMs: 4000, timeoutMs: 2000, retry: { disableAfterMs: 10_000 }, ...extra });

/** 503 for every event whose id starts with `failing`, 202 for the rest; `healthy()` makes it take everything. */
async function receiver(): Promise<TestReceiver & { healthy(): void }> {
  const r = await startReceiver(cleanups);
  let down = true;
  r.respond((req) => {
    const id = (req.json as { events: { id: string }[] }).events[0]?.id ?? '';
    return down && id.startsWith('failing') ? 503 : 202;
  });
  return Object.assign(r, { healthy: () => void (down = false) });
}

const ids = (r: TestReceiver, prefix: string, acceptedOnly = false): string[] =>
  r.events({ acceptedOnly }).map((e) => e.id).filter((id) => id.startsWith(prefix));

describe('retry.disableAfter', () => {
  it('failing for the duration stops sending, keeps the queue, and a changed configuration delivers it in order', async () => {
    const r = await receiver();
    const clock = fakeClock(START);
    const backend = permitRecordingBackend();
    const told: string[] = [];
    const e = new Endpoint('ns/flaky', config(r.url), { clock, listener: { autoDisabled: (m) => told.push(m) } }, backend.storeFor('ns/flaky'));
    cleanups.push(() => e.close({ signal: AbortSignal.abort() }));
    send(e, makeEvents(3, 'failing'));
    await until(() => e.autoDisabled !== undefined, 'auto-disabled', 5000);

    // Attempts at 0, 4 and 8 virtual seconds; at 10 it stops, before the one due at 12.
    expect(ids(r, 'failing')).toEqual(['failing-0', 'failing-0', 'failing-0']);
    expect(e.autoDisabled).toEqual({ since: START + 10_000, message: 'failing without a success for 10000ms (retry.disableAfter); last: 503 Service Unavailable' });
    expect(told).toEqual([e.autoDisabled!.message]);
    expect(e.pending).toBe(3);

    // Nothing is sent while disabled, even with new events: an endpoint sent to afterwards is served first.
    const marker = new Endpoint('marker', config(r.url), {}, backend.storeFor('marker'));
    cleanups.push(() => marker.close({ signal: AbortSignal.abort() }));
    backend.asked.length = 0;
    send(e, makeEvents(1, 'failing-late'));
    send(marker, makeEvents(1, 'marker'));
    await r.waitFor(() => ids(r, 'marker', true).length === 1);
    expect(backend.asked).toEqual(['marker']);
    expect(e.pending).toBe(4);

    // The same configuration applied again (a resync, an unchanged file) leaves it stopped.
    e.update(config(r.url));
    expect(e.autoDisabled).toBeDefined();

    // A changed one sends again: the queue, in order, to a receiver that is back.
    r.healthy();
    e.update(config(r.url, { timeoutMs: 3000 }));
    expect(e.autoDisabled).toBeUndefined();
    await until(() => e.pending === 0, 'queue delivered', 5000);
    expect(ids(r, 'failing', true)).toEqual(['failing-0', 'failing-1', 'failing-2', 'failing-late-0']);
    expect(told).toHaveLength(1);
  });

  it('a success before the duration starts it again: failing streaks shorter than it never stop the endpoint', async () => {
    const r = await startReceiver(cleanups);
    // ev-0: 503 at 0 s and 4 s, 202 at 8 s; ev-1: 503 at 8 s and 12 s, 202 at 16 s. Failing 16 s in all, 8 s at most in a row.
    r.enqueue(503, 503, 202, 503, 503, 202);
    const clock = fakeClock(START);
    const e = new Endpoint('ns/recovering', config(r.url), { clock });
    cleanups.push(() => e.close({ signal: AbortSignal.abort() }));
    send(e, makeEvents(2));
    await until(() => e.stats().delivered === 2, 'both delivered', 5000);
    expect(e.autoDisabled).toBeUndefined();
    expect(r.requests).toHaveLength(6);
    expect(clock.now()).toBe(START + 16_000);
  });

  it('counts dead-lettered events as failures (no success); after an idle spell the next event is tried once first', async () => {
    const r = await startReceiver(cleanups);
    r.respond(() => 400);
    const clock = fakeClock(START);
    const e = new Endpoint('ns/refusing', config(r.url, { retry: { ...config(r.url).retry, clientErrors: 'DeadLetter' } }), { clock });
    cleanups.push(() => e.close({ signal: AbortSignal.abort() }));
    send(e, makeEvents(1));
    await until(() => e.stats().deadLettered === 1, 'dead-lettered', 5000);
    clock.advance(11_000); // idle: no attempt, so nothing stops yet
    expect(e.autoDisabled).toBeUndefined();
    send(e, makeEvents(1, 'after'));
    await until(() => e.autoDisabled !== undefined, 'auto-disabled', 5000);
    // The late event was tried once (refused 11 s into the streak, past the 10 s), then the endpoint stopped.
    expect(r.events().map((ev) => ev.id)).toEqual(['ev-0', 'after-0']);
    expect(e.autoDisabled?.since).toBe(START + 11_000);
    expect(e.stats().deadLettered).toBe(2);
    send(e, makeEvents(1, 'kept'));
    expect(e.pending).toBe(1);
  });

  it('after an idle spell a first attempt that succeeds ends the streak; 0s never disables', async () => {
    const r = await startReceiver(cleanups);
    r.enqueue(503, 503, 503);
    const clock = fakeClock(START);
    // maxAttempts 3: ev-0 is dead-lettered after attempts at 0, 4 and 8 s, before the 10 s.
    const e = new Endpoint('ns/back', config(r.url, { retry: { ...config(r.url).retry, maxAttempts: 3 } }), { clock });
    cleanups.push(() => e.close({ signal: AbortSignal.abort() }));
    send(e, makeEvents(1));
    await until(() => e.stats().deadLettered === 1, 'dead-lettered', 5000);
    clock.advance(60_000);
    send(e, makeEvents(1, 'later'));
    await until(() => e.stats().delivered === 1, 'delivered after the idle spell', 5000);
    expect(e.autoDisabled).toBeUndefined();

    r.respond(() => 503);
    const never = new Endpoint('ns/never', config(r.url, { retry: { ...config(r.url).retry, disableAfterMs: 0, maxAttempts: 3 } }), { clock });
    cleanups.push(() => never.close({ signal: AbortSignal.abort() }));
    const from = clock.now();
    send(never, makeEvents(3));
    await until(() => never.stats().deadLettered === 3, 'three dead letters', 5000);
    expect(never.autoDisabled).toBeUndefined();
    expect(clock.now() - from).toBeGreaterThan(3 * 8000); // failing far longer than 10 s
  });

  it('EndpointSet.resume sends again at once with a fresh failing time; false when not stopped, undefined when unknown', async () => {
    const r = await receiver();
    const clock = fakeClock(START);
    const set = new EndpointSet({ clock });
    cleanups.push(() => set.close(AbortSignal.abort()));
    set.apply('ns/a', config(r.url));
    await set.write(makeEvents(2, 'failing'));
    const e = set.get('ns/a')!;
    await until(() => e.autoDisabled !== undefined, 'auto-disabled', 5000);
    expect(set.resume('ns/b')).toBeUndefined();

    // Resumed while the receiver still fails: it tries again for a whole new 10 s before stopping again.
    const before = r.requests.length;
    const resumedAt = clock.now();
    expect(set.resume('ns/a')).toBe(true);
    expect(e.autoDisabled).toBeUndefined();
    await until(() => e.autoDisabled !== undefined, 'auto-disabled again', 5000);
    expect(r.requests.length - before).toBe(3);
    expect(e.autoDisabled?.since).toBe(resumedAt + 10_000);

    r.healthy();
    expect(set.resume('ns/a')).toBe(true);
    await until(() => e.pending === 0, 'delivered after resume', 5000);
    expect(ids(r, 'failing', true)).toEqual(['failing-0', 'failing-1']);
    expect(set.resume('ns/a')).toBe(false);
  });

  it('a disabled endpoint stays paused when resumed, and resume after close throws', async () => {
    const r = await receiver();
    const clock = fakeClock(START);
    const e = new Endpoint('ns/both', config(r.url), { clock });
    send(e, makeEvents(1, 'failing'));
    await until(() => e.autoDisabled !== undefined, 'auto-disabled', 5000);
    e.update(config(r.url, { disabled: true })); // a change: no longer auto-disabled, but disabled by the spec
    expect(e.autoDisabled).toBeUndefined();
    expect(e.resume()).toBe(false);
    await e.close({ signal: AbortSignal.abort() });
    expect(() => e.resume()).toThrow(SinkClosedError);
  });
});
