// retry.clientErrors (api.md section 11): with DeadLetter, a 4xx that says "never" (400, 404, 410, 422, ...)
// dead-letters the attempt's events at once and the endpoint goes on to the next ones; the 4xx that say "later"
// (408, 409, 425, 429) and everything under the default Retry are retried as Distribution does.
import { describe, expect, it } from 'vitest';
import { Metrics } from '../../src/metrics/metrics.ts';
import { endpointConfig, type EndpointConfig, type EndpointConfigInput } from '../../src/notifications/endpoint.ts';
import { EndpointSet } from '../../src/notifications/endpoint-set.ts';
import { makeEvents } from '../support/events.ts';
import { startReceiver, useCleanups } from '../support/cleanup.ts';
import type { TestReceiver } from '../support/receiver.ts';
import { until } from '../support/wait.ts';
import { fakeClock } from './test-sinks.ts';

const cleanups = useCleanups();

// A breaker that would wait a whole virtual minute after the first failure: "at once" shows as no sleep at all.
const config = (url: string, retry: EndpointConfigInput['retry']): EndpointConfig =>
  endpointConfig({ url, threshold: 1, backoffMs: 60_000, timeoutMs: 2000, retry });

interface Wired {
  set: EndpointSet;
  metrics: Metrics;
  clock: ReturnType<typeof fakeClock>;
  dead: string[];
}

function wired(): Wired {
  const metrics = new Metrics();
  const clock = fakeClock();
  const dead: string[] = [];
  const set = new EndpointSet({
    clock,
    listenerFor: (name) => {
      const listener = metrics.listenerFor(name);
      return { ...listener, deadLettered: (events, reason) => (listener.deadLettered?.(events, reason), dead.push(...events.map((e) => `${e.id}: ${reason}`))) };
    },
  });
  cleanups.push(() => set.close(AbortSignal.abort()));
  return { set, metrics, clock, dead };
}

/** Answers `status` to the first event every time it is sent, 202 to everything else. */
async function refusingFirst(status: number): Promise<TestReceiver> {
  const r = await startReceiver(cleanups);
  r.respond((req) => ((req.json as { events: { id: string }[] }).events[0]?.id === 'ev-0' ? status : 202));
  return r;
}

const sent = (r: TestReceiver): string[] => r.events().map((e) => e.id);

describe('retry.clientErrors: DeadLetter', () => {
  it.each([400, 404, 410, 422])('a %i dead-letters the event at once (no retry budget) and the next one is delivered', async (status) => {
    const r = await refusingFirst(status);
    const { set, metrics, clock, dead } = wired();
    set.apply('ns/strict', config(r.url, { clientErrors: 'DeadLetter', maxAttempts: 0 }));
    await set.write(makeEvents(2));
    await r.waitFor(() => r.events({ acceptedOnly: true }).length === 1);
    const e = set.get('ns/strict')!;
    await until(() => e.pending === 0, 'queue drained', 5000);

    expect(sent(r)).toEqual(['ev-0', 'ev-1']); // one attempt for ev-0, then straight on
    expect(clock.sleeps).toEqual([]); // not even the breaker's minute: the receiver is up, the event is refused
    expect(dead).toHaveLength(1);
    expect(dead[0]).toMatch(new RegExp(`^ev-0: ${status} .*client error, not retried \\(retry\\.clientErrors: DeadLetter\\)$`));
    expect(e.stats()).toMatchObject({ delivered: 1, failures: 1, deadLettered: 1, consecutiveFailures: 0 });
    const text = await metrics.render();
    expect(text).toContain('registry_notifier_dead_lettered_total{endpoint="ns/strict"} 1');
    expect(text).toContain('registry_notifications_events_total{type="Failures",endpoint="ns/strict"} 1');
  });

  it('dead-letters a whole batch that gets a 400, and only that batch', async () => {
    const r = await refusingFirst(400);
    const { set, dead } = wired();
    set.apply('ns/batch', endpointConfig({ ...config(r.url, { clientErrors: 'DeadLetter' }), maxBatchEvents: 2, disabled: true }));
    await set.write(makeEvents(4));
    set.apply('ns/batch', { ...config(r.url, { clientErrors: 'DeadLetter' }), maxBatchEvents: 2 });
    await until(() => set.get('ns/batch')?.pending === 0, 'queue drained', 5000);
    expect(dead.map((d) => d.split(':')[0])).toEqual(['ev-0', 'ev-1']);
    expect(r.events({ acceptedOnly: true }).map((e) => e.id)).toEqual(['ev-2', 'ev-3']);
  });

  it.each([408, 409, 425, 429])('a %i is retried: nothing dead-lettered, the event delivered once the receiver takes it', async (status) => {
    const r = await startReceiver(cleanups);
    r.enqueue(status, status);
    const { set, dead } = wired();
    set.apply('ns/strict', config(r.url, { clientErrors: 'DeadLetter' }));
    await set.write(makeEvents(2));
    const e = set.get('ns/strict')!;
    await until(() => e.stats().delivered === 2, 'both delivered', 5000);
    expect(sent(r)).toEqual(['ev-0', 'ev-0', 'ev-0', 'ev-1']);
    expect(dead).toEqual([]);
    expect(e.stats()).toMatchObject({ delivered: 2, failures: 2, deadLettered: 0 });
  });

  it('a 500 is retried as before: clientErrors is about 4xx only', async () => {
    const r = await startReceiver(cleanups);
    r.enqueue(500, 503);
    const { set, dead } = wired();
    set.apply('ns/strict', config(r.url, { clientErrors: 'DeadLetter' }));
    await set.write(makeEvents(1));
    await r.waitFor(() => r.events({ acceptedOnly: true }).length === 1);
    expect(sent(r)).toEqual(['ev-0', 'ev-0', 'ev-0']);
    expect(dead).toEqual([]);
  });
});

describe('retry.clientErrors: Retry (the default, Distribution)', () => {
  it('retries a 400 until the receiver takes the event; nothing is dead-lettered', async () => {
    const r = await startReceiver(cleanups);
    r.enqueue(400, 404, 422);
    const { set, dead } = wired();
    const given = config(r.url, {});
    expect(given.retry.clientErrors).toBe('Retry');
    set.apply('ns/lenient', given);
    await set.write(makeEvents(2));
    await r.waitFor(() => r.events({ acceptedOnly: true }).length === 2);
    expect(sent(r)).toEqual(['ev-0', 'ev-0', 'ev-0', 'ev-0', 'ev-1']);
    expect(dead).toEqual([]);
  });

  it('a 400 still dead-letters once maxAttempts is spent, with the budget reason', async () => {
    const r = await refusingFirst(400);
    const { set, dead } = wired();
    set.apply('ns/budget', config(r.url, { maxAttempts: 2 }));
    await set.write(makeEvents(2));
    await r.waitFor(() => r.events({ acceptedOnly: true }).length === 1);
    expect(sent(r)).toEqual(['ev-0', 'ev-0', 'ev-1']);
    expect(dead).toEqual(['ev-0: gave up after 2 attempts; last: 400 Bad Request']);
  });
});
