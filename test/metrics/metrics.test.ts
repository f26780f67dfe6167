import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { register as globalRegistry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { endpointConfig, type EndpointConfig, type EndpointConfigInput } from '../../src/notifications/endpoint.ts';
import { EndpointSet } from '../../src/notifications/endpoint-set.ts';
import type { AttemptResult } from '../../src/notifications/listener.ts';
import { DELIVERY_BUCKETS, LATENCY_BUCKETS, Metrics } from '../../src/metrics/metrics.ts';
import { makeEvents } from '../support/events.ts';
import { startReceiver, useCleanups } from '../support/cleanup.ts';
import type { TestReceiver } from '../support/receiver.ts';
import { until } from '../support/wait.ts';

const cleanups = useCleanups();
const receiver = (): Promise<TestReceiver> => startReceiver(cleanups);

/** An EndpointSet whose endpoints report to `metrics`, which reads the set back at scrape time. */
function wiredSet(metrics: Metrics): EndpointSet {
  const set = new EndpointSet({ listenerFor: (name) => metrics.listenerFor(name) });
  metrics.setEndpointsProvider(() => set.list().map((e) => ({ name: e.name, pending: e.pending, ready: !e.config.disabled })));
  cleanups.push(() => set.close(AbortSignal.abort()));
  return set;
}

// Breaker tripping after 3 failures, 20 ms apart: fast enough for tests.
const fast = (url: string, extra: Partial<EndpointConfigInput> = {}): EndpointConfig =>
  endpointConfig({ url, threshold: 3, backoffMs: 20, timeoutMs: 2000, ...extra });

const lines = async (metrics: Metrics): Promise<string[]> => (await metrics.render()).split('\n');

/** The value of the one sample whose line starts with `series` followed by a space; undefined if absent. */
async function sample(metrics: Metrics, series: string): Promise<number | undefined> {
  const line = (await lines(metrics)).find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

function attempt(at: number, extra: Partial<AttemptResult> & { acceptedAt?: number[] }): AttemptResult {
  const events = (extra.acceptedAt ?? [at]).map((acceptedAt, i) => ({ id: `ev-${i}`, json: '{}', acceptedAt }));
  return { events, durationMs: 10, at, ...extra };
}

describe('Metrics against a real endpoint and receiver', () => {
  it('counts events, outcomes, statuses, durations and latency, and shows pending at scrape time', async () => {
    const r = await receiver();
    r.enqueue(202, 503).respond(() => 202);
    const metrics = new Metrics();
    const set = wiredSet(metrics);
    const withCredentials = r.url.replace('http://', 'http://alice:s3cret@');
    set.apply('ns/a', fast(withCredentials));
    set.apply('ns/b', fast(r.url, { disabled: true })); // paused: its events stay pending

    await set.write(makeEvents(3));
    // ev-0 -> 202, ev-1 -> 503 then retried -> 202, ev-2 -> 202.
    await r.waitFor(() => r.events({ acceptedOnly: true }).length >= 3);
    await until(() => set.get('ns/a')?.pending === 0 && set.get('ns/a')?.stats().delivered === 3, 'ns/a drained', 5000);

    const out = await lines(metrics);
    expect(out).toContain('registry_notifications_events_total{type="Events",endpoint="ns/a"} 3');
    expect(out).toContain('registry_notifications_events_total{type="Successes",endpoint="ns/a"} 3');
    expect(out).toContain('registry_notifications_events_total{type="Failures",endpoint="ns/a"} 1');
    expect(out).toContain('registry_notifications_events_total{type="Errors",endpoint="ns/a"} 0');
    expect(out).toContain('registry_notifications_events_total{type="Events",endpoint="ns/b"} 3');
    expect(out).toContain('registry_notifications_status_total{code="202 Accepted",endpoint="ns/a"} 3');
    expect(out).toContain('registry_notifications_status_total{code="503 Service Unavailable",endpoint="ns/a"} 1');
    expect(out).toContain('registry_notifications_pending_total{endpoint="ns/a"} 0');
    expect(out).toContain('registry_notifications_pending_total{endpoint="ns/b"} 3');
    expect(out).toContain('registry_notifier_delivery_duration_seconds_count{endpoint="ns/a"} 4');
    expect(out).toContain('registry_notifier_event_latency_seconds_count{endpoint="ns/a"} 3');
    expect(out).toContain('registry_notifier_delivery_duration_seconds_bucket{le="+Inf",endpoint="ns/a"} 4');
    expect(out).toContain('registry_notifier_dead_lettered_total{endpoint="ns/a"} 0');
    expect(out).toContain('registry_notifier_endpoints{ready="true"} 1');
    expect(out).toContain('registry_notifier_endpoints{ready="false"} 1');
    expect(out.filter((l) => l.startsWith('registry_notifications_status_total{'))).toHaveLength(2);
    expect(out.some((l) => l.startsWith('registry_notifier_event_latency_seconds_count{endpoint="ns/b"}'))).toBe(false);

    const text = out.join('\n');
    expect(text).not.toContain('127.0.0.1');
    expect(text).not.toContain('http://');
    expect(text).not.toContain('s3cret');
    expect(text).not.toContain('ev-');
  });

  it('counts errors when nothing answers, discards on removal, and forgetEndpoint removes every series', async () => {
    const probe = await receiver();
    const deadUrl = probe.url;
    await probe.close(); // nothing listens there now: connection refused
    const metrics = new Metrics();
    const set = wiredSet(metrics);
    set.apply('ns/c', fast(deadUrl));
    await set.write(makeEvents(2));
    const c = set.get('ns/c')!;
    await until(() => c.stats().errors >= 2, 'failed attempts', 5000);

    expect(await set.remove('ns/c')).toBe(2);
    const errors = c.stats().errors; // each attempt carried the head event only (maxBatchEvents 1)
    expect(await sample(metrics, 'registry_notifications_events_total{type="Errors",endpoint="ns/c"}')).toBe(errors);
    expect(await sample(metrics, 'registry_notifier_discarded_total{endpoint="ns/c"}')).toBe(2);
    expect(await sample(metrics, 'registry_notifier_delivery_duration_seconds_count{endpoint="ns/c"}')).toBe(errors);
    expect(await sample(metrics, 'registry_notifications_pending_total{endpoint="ns/c"}')).toBeUndefined(); // gone from the set

    metrics.forgetEndpoint('ns/c');
    expect((await lines(metrics)).filter((l) => l.includes('endpoint="ns/c"'))).toEqual([]);
  });

  it('counts coalesced events per endpoint (registry_notifier_coalesced_total), from 0, and forgets the series', async () => {
    const metrics = new Metrics();
    const set = wiredSet(metrics);
    set.apply('ns/quiet', fast('http://127.0.0.1:9/', { disabled: true, coalesce: { actions: ['pull'], windowMs: 60_000 } }));
    set.apply('ns/all', fast('http://127.0.0.1:9/', { disabled: true }));
    expect(await sample(metrics, 'registry_notifier_coalesced_total{endpoint="ns/quiet"}')).toBe(0);
    const pulls = makeEvents(4).map((ev) => ({ ...ev, action: 'pull' })); // one repository and tag: one key
    await set.write(pulls);
    expect(await sample(metrics, 'registry_notifier_coalesced_total{endpoint="ns/quiet"}')).toBe(3);
    expect(await sample(metrics, 'registry_notifier_coalesced_total{endpoint="ns/all"}')).toBe(0);
    expect(await sample(metrics, 'registry_notifications_events_total{type="Events",endpoint="ns/quiet"}')).toBe(1);
    expect(await sample(metrics, 'registry_notifications_events_total{type="Events",endpoint="ns/all"}')).toBe(4);
    await set.remove('ns/quiet');
    metrics.forgetEndpoint('ns/quiet');
    expect((await lines(metrics)).filter((l) => l.includes('endpoint="ns/quiet"'))).toEqual([]);
  });

  it('dead-letters count per endpoint', async () => {
    const r = await receiver();
    r.respond(() => 503);
    const metrics = new Metrics();
    const set = wiredSet(metrics);
    set.apply('dl', fast(r.url, { retry: { strategy: 'Breaker', maxBackoffMs: 1000, maxAttempts: 2, maxAgeMs: 0 } }));
    await set.write(makeEvents(1));
    await until(() => set.get('dl')?.stats().deadLettered === 1, 'dead-lettered', 5000);
    const out = await lines(metrics);
    expect(out).toContain('registry_notifier_dead_lettered_total{endpoint="dl"} 1');
    expect(out).toContain('registry_notifications_events_total{type="Failures",endpoint="dl"} 2');
    expect(out).toContain('registry_notifications_status_total{code="503 Service Unavailable",endpoint="dl"} 2');
    expect(out).toContain('registry_notifications_events_total{type="Successes",endpoint="dl"} 0');
  });
});

describe('Metrics, driven directly', () => {
  it('observes latency from acceptance to the end of a successful attempt, per event, in seconds', async () => {
    const metrics = new Metrics();
    const listener = metrics.listenerFor('x');
    const at = 1_700_000_000_000;
    listener.attempt?.(attempt(at, { status: 200, statusText: 'OK', durationMs: 1500, acceptedAt: [at - 2500, at - 500] }));
    listener.attempt?.(attempt(at, { status: 500, statusText: 'Internal Server Error', acceptedAt: [at - 9000] }));
    const out = await lines(metrics);
    expect(out).toContain('registry_notifier_event_latency_seconds_bucket{le="0.1",endpoint="x"} 0');
    expect(out).toContain('registry_notifier_event_latency_seconds_bucket{le="1",endpoint="x"} 1');
    expect(out).toContain('registry_notifier_event_latency_seconds_bucket{le="10",endpoint="x"} 2');
    expect(out).toContain('registry_notifier_event_latency_seconds_sum{endpoint="x"} 3');
    expect(out).toContain('registry_notifier_event_latency_seconds_count{endpoint="x"} 2'); // the 500 adds none
    expect(out).toContain('registry_notifier_delivery_duration_seconds_sum{endpoint="x"} 1.51');
    expect(out).toContain('registry_notifications_status_total{code="200 OK",endpoint="x"} 1');
    expect(out).toContain('registry_notifications_status_total{code="500 Internal Server Error",endpoint="x"} 1');
    expect(out).toContain('registry_notifications_events_total{type="Successes",endpoint="x"} 2');
    expect(out).toContain('registry_notifications_events_total{type="Failures",endpoint="x"} 1');
  });

  it('writes a status without a reason phrase as Go does, from the code', async () => {
    const metrics = new Metrics();
    metrics.listenerFor('x').attempt?.(attempt(0, { status: 404 }));
    expect(await lines(metrics)).toContain('registry_notifications_status_total{code="404 Not Found",endpoint="x"} 1');
  });

  it('counts ingest requests by numeric code, accepted events and duplicates', async () => {
    const metrics = new Metrics();
    metrics.ingestRequest(202);
    metrics.ingestRequest(202);
    metrics.ingestRequest(400);
    metrics.ingestEvents(5);
    metrics.ingestDuplicates(2);
    const out = await lines(metrics);
    expect(out).toContain('registry_notifier_ingest_requests_total{code="202"} 2');
    expect(out).toContain('registry_notifier_ingest_requests_total{code="400"} 1');
    expect(out).toContain('registry_notifier_ingest_events_total 5');
    expect(out).toContain('registry_notifier_ingest_duplicates_total 2');
  });

  it('a forgotten endpoint stays gone even if its old listener still reports, and comes back fresh', async () => {
    const metrics = new Metrics();
    const old = metrics.listenerFor('ns/gone');
    old.queued?.(4);
    old.attempt?.(attempt(0, { status: 503, statusText: 'Service Unavailable' }));
    expect(await lines(metrics)).toContain('registry_notifications_events_total{type="Events",endpoint="ns/gone"} 4');
    metrics.forgetEndpoint('ns/gone');
    old.queued?.(1);
    old.attempt?.(attempt(0, { status: 200, statusText: 'OK' }));
    old.discarded?.(3);
    old.deadLettered?.([], 'late');
    expect((await metrics.render()).includes('ns/gone')).toBe(false);

    metrics.listenerFor('ns/gone').queued?.(1);
    expect(await lines(metrics)).toContain('registry_notifications_events_total{type="Events",endpoint="ns/gone"} 1');
  });

  it('uses a private registry with the default process metrics, and the pending gauge follows its provider', async () => {
    const a = new Metrics();
    const b = new Metrics(); // a second instance must not collide
    expect(globalRegistry.getSingleMetric('registry_notifications_events_total')).toBeUndefined();
    expect(a.contentType).toMatch(/^text\/plain; version=0\.0\.4/);
    let endpoints = [{ name: 'one', pending: 7, ready: true }, { name: 'two', pending: 0, ready: false }];
    b.setEndpointsProvider(() => endpoints);
    const first = await lines(b);
    expect(first.some((l) => l.startsWith('process_cpu_user_seconds_total '))).toBe(true);
    expect(first).toContain('registry_notifications_pending_total{endpoint="one"} 7');
    expect(first).toContain('registry_notifications_pending_total{endpoint="two"} 0');
    expect(first).toContain('# TYPE registry_notifications_pending_total gauge');
    expect(first).toContain('# TYPE registry_notifications_events_total counter');
    endpoints = [{ name: 'one', pending: 2, ready: true }];
    const second = await lines(b);
    expect(second).toContain('registry_notifications_pending_total{endpoint="one"} 2');
    expect(second.some((l) => l.includes('endpoint="two"'))).toBe(false);
    expect(second).toContain('registry_notifier_endpoints{ready="false"} 0');
    expect((await lines(a)).filter((l) => l.startsWith('registry_notifications_pending_total{'))).toEqual([]);
  });
});

describe('Metrics cardinality: series = base + k × endpoints', () => {
  // Per endpoint, from its first listener on: registry_notifications_events_total × 4 types, pending_total,
  // registry_notifier_dead_lettered_total, discarded_total, coalesced_total and auto_disabled = 9; plus one
  // registry_notifications_status_total per status code it was answered with (202 and 503 here); plus, with
  // per-endpoint histograms, each histogram's buckets + `+Inf` + `_sum` + `_count` (8 + 3 each).
  const HISTOGRAM_SERIES = DELIVERY_BUCKETS.length + 3 + LATENCY_BUCKETS.length + 3;
  const PER_ENDPOINT = 9;
  const CODES = 2;
  // Ours without endpoints: registry_notifier_endpoints{ready} × 2, ingest_events_total, ingest_duplicates_total,
  // ingest_requests_total × the 2 codes answered, storage_available × 1 backend; with the histograms per process,
  // those 22 series too, whatever the number of endpoints.
  const BASE = 7;

  /** The series lines (not comments) of one scrape, ours and Node's process metrics apart, and its size. */
  async function scrape(metrics: Metrics): Promise<{ ours: string[]; process: string[]; bytes: number }> {
    const text = await metrics.render();
    const series = text.split('\n').filter((l) => l !== '' && !l.startsWith('#'));
    return { ours: series.filter((l) => l.startsWith('registry_notif')), process: series.filter((l) => !l.startsWith('registry_notif')), bytes: text.length };
  }

  /** A Metrics with `n` endpoints that each saw every kind of record: queued, 202, 503, an error, a dead letter, … */
  function busy(endpointHistograms: boolean, n: number): { metrics: Metrics; names: string[] } {
    const names = Array.from({ length: n }, (_, i) => `team-${i % 10}/hook-${i}`);
    const metrics = new Metrics({ endpointHistograms, endpoints: () => names.map((name) => ({ name, pending: 1, ready: true, reason: 'Idle' })) });
    metrics.ingestRequest(202);
    metrics.ingestRequest(401);
    metrics.ingestEvents(n);
    metrics.ingestDuplicates(1);
    metrics.storageAvailable('journal', true);
    const at = 1_700_000_000_000;
    for (const name of names) {
      const listener = metrics.listenerFor(name);
      listener.queued?.(4);
      listener.attempt?.(attempt(at, { status: 202, statusText: 'Accepted', acceptedAt: [at - 50, at - 5000] }));
      listener.attempt?.(attempt(at, { status: 503, statusText: 'Service Unavailable' }));
      listener.attempt?.(attempt(at, { durationMs: 1000 })); // no answer: an error
      listener.attempt?.(attempt(at, { status: 202, statusText: 'Accepted' })); // a code seen before adds nothing
      listener.deadLettered?.([{ id: 'ev-9', json: '{}', acceptedAt: at }], 'gave up');
      listener.discarded?.(1);
      listener.coalesced?.(2);
    }
    return { metrics, names };
  }

  it.each([
    { histograms: true, k: PER_ENDPOINT + CODES + 22, base: BASE },
    { histograms: false, k: PER_ENDPOINT + CODES, base: BASE + 22 },
  ])('endpoint histograms $histograms: $base + $k per endpoint, back to $base once every endpoint is forgotten', async ({ histograms, k, base }) => {
    expect(HISTOGRAM_SERIES).toBe(22);
    const counts: Record<number, { ours: number; bytes: number }> = {};
    for (const n of [0, 3, 50]) {
      const { metrics, names } = busy(histograms, n);
      const { ours, process, bytes } = await scrape(metrics);
      expect(ours, `${n} endpoints`).toHaveLength(base + k * n);
      // Node's process metrics never carry an endpoint, so they stay a fixed part of the base.
      expect(process.filter((l) => l.includes('endpoint='))).toEqual([]);
      expect(process.length).toBeLessThan(150);
      counts[n] = { ours: ours.length, bytes };
      for (const name of names) metrics.forgetEndpoint(name);
      names.length = 0; // the provider lists none now, as after every endpoint was deleted
      expect((await scrape(metrics)).ours, `${n} endpoints forgotten`).toHaveLength(base);
    }
    const perEndpoint = (counts[50]!.bytes - counts[0]!.bytes) / 50;
    expect(perEndpoint).toBeLessThan(histograms ? 3500 : 1100); // README: about 2.7 kB and 0.8 kB with names like team-3/hook-13
    const histogramLines = (await scrape(busy(histograms, 3).metrics)).ours.filter((l) => l.startsWith('registry_notifier_delivery_duration_seconds_bucket'));
    expect(histogramLines).toHaveLength(histograms ? 3 * (DELIVERY_BUCKETS.length + 1) : DELIVERY_BUCKETS.length + 1);
    expect(histogramLines.every((l) => l.includes('endpoint=') === histograms)).toBe(true);
  });

  it('the README states these numbers and buckets', () => {
    const readme = readFileSync(join(import.meta.dirname, '../../README.md'), 'utf8');
    expect(readme).toContain(`| \`--endpoint-histograms=true\` (default) | ${PER_ENDPOINT + HISTOGRAM_SERIES}, + 1 per status code`);
    expect(readme).toContain(`| \`--endpoint-histograms=false\` | ${PER_ENDPOINT}, + 1 per status code`);
    expect(readme).toContain(`| the same + ${HISTOGRAM_SERIES} |`);
    expect(readme).toContain(`\`delivery_duration_seconds\` ${DELIVERY_BUCKETS.join(', ')} (`);
    expect(readme).toContain(`\`event_latency_seconds\` ${LATENCY_BUCKETS.join(', ')}\n(`);
  });

  it('without per-endpoint histograms every endpoint feeds the one histogram of each name', async () => {
    const { metrics } = busy(false, 3);
    const out = await lines(metrics);
    expect(out).toContain('registry_notifier_delivery_duration_seconds_count 12'); // 4 attempts × 3 endpoints
    expect(out).toContain('registry_notifier_event_latency_seconds_count 9'); // 3 events delivered × 3
    expect(out).toContain('registry_notifier_event_latency_seconds_bucket{le="0.1"} 6');
    expect(out).toContain('registry_notifier_event_latency_seconds_bucket{le="10"} 9');
    expect(out).toContain('registry_notifications_status_total{code="202 Accepted",endpoint="team-1/hook-1"} 2');
  });
});
