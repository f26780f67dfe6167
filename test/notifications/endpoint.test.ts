import { createServer, type Server } from 'node:http';
import { describe, expect, it } from 'vitest';
import { Endpoint, endpointConfig, type EndpointConfig, type EndpointConfigInput } from '../../src/notifications/endpoint.ts';
import { EndpointSet } from '../../src/notifications/endpoint-set.ts';
import { NO_FILTER } from '../../src/notifications/filter.ts';
import { MemoryStore, type QueueBackend, type Route } from '../../src/notifications/queue-store.ts';
import { makeEvents } from '../support/events.ts';
import { startReceiver, useCleanups } from '../support/cleanup.ts';
import type { TestReceiver } from '../support/receiver.ts';
import { EndpointConfigError, SinkClosedError, QueueFullError } from '../../src/notifications/errors.ts';
import { until } from '../support/wait.ts';
import { permitRecordingBackend, queued, send } from './test-sinks.ts';

const cleanups = useCleanups();
const receiver = (): Promise<TestReceiver> => startReceiver(cleanups);

// Fast retries for tests: Distribution's breaker, tripping after 3 failures, 20 ms apart.
const fast = (url: string, extra: Partial<EndpointConfigInput> = {}): EndpointConfig =>
  endpointConfig({ url, threshold: 3, backoffMs: 20, timeoutMs: 1000, ...extra });

function endpoint(name: string, config: EndpointConfig): Endpoint {
  const e = new Endpoint(name, config);
  cleanups.push(() => e.close({ signal: AbortSignal.abort() }));
  return e;
}

const acceptedIds = (r: TestReceiver): string[] => r.events({ acceptedOnly: true }).map((e) => e.id);

describe('Endpoint over real HTTP', () => {
  it('a flaky receiver (half the answers 500) ends with every event, in order, each accepted once', async () => {
    const r = await receiver();
    let n = 0;
    r.respond(() => (n++ % 2 === 0 ? 500 : 200));
    const e = endpoint('flaky', fast(r.url));
    const events = makeEvents(200);
    for (let i = 0; i < 200; i += 7) send(e, events.slice(i, i + 7));
    await r.waitFor(() => acceptedIds(r).length >= 200, 15_000);
    expect(acceptedIds(r)).toEqual(events.map((ev) => ev.id));
    await until(() => e.pending === 0, 'queue drained', 5000);
    const stats = e.stats();
    expect(stats.delivered).toBe(200);
    expect(stats.failures).toBe(200);
    expect(stats.responses).toEqual([{ code: 200, count: 200 }, { code: 500, count: 200 }]);
    expect(e.pending).toBe(0);
  });

  it('a receiver that is down and comes back receives everything in order', async () => {
    const probe = await receiver();
    const url = probe.url;
    const port = Number(new URL(url).port);
    await probe.close(); // nothing listens: connection refused
    const e = endpoint('down', fast(url));
    const events = makeEvents(30);
    send(e, events);
    await until(() => e.stats().errors >= 5, 'failed attempts', 5000);
    expect(e.stats().delivered).toBe(0);
    const ids: string[] = [];
    const server = createServer((req, res) => {
      let body = '';
      req.on('data', (c: Buffer) => (body += c.toString()));
      req.on('end', () => {
        ids.push(...(JSON.parse(body) as { events: { id: string }[] }).events.map((ev) => ev.id));
        res.end();
      });
    });
    await listen(server, port);
    await until(() => ids.length >= 30, 'all events after recovery', 10_000);
    expect(ids).toEqual(events.map((ev) => ev.id));
    expect(e.stats().consecutiveFailures).toBe(0);
  });

  it('a receiver that never answers is cut by the timeout and the event retried', async () => {
    const r = await receiver();
    let first = true;
    r.respond(async () => {
      if (first) {
        first = false;
        await new Promise(() => {}); // hang the first request forever
      }
      return 202;
    });
    const e = endpoint('hung', fast(r.url, { timeoutMs: 150 }));
    send(e, makeEvents(2));
    await r.waitFor(() => acceptedIds(r).length >= 2, 5000);
    expect(acceptedIds(r)).toEqual(['ev-0', 'ev-1']);
    expect(e.stats().errors).toBe(1);
    expect(e.stats().lastError).toBe('no answer within 150ms');
  });

  it('update moves the queue to a new URL live, without losing or reordering events', async () => {
    const broken = await receiver();
    broken.respond(() => 503);
    const fixed = await receiver();
    const e = endpoint('moving', fast(broken.url, { backoffMs: 60_000 }));
    const before = makeEvents(40, 'before');
    send(e, before);
    await broken.waitFor((reqs) => reqs.length >= 3);
    const t0 = performance.now();
    e.update(fast(fixed.url));
    const after = makeEvents(10, 'after');
    send(e, after);
    await fixed.waitFor(() => acceptedIds(fixed).length >= 50);
    expect(acceptedIds(fixed)).toEqual([...before, ...after].map((ev) => ev.id));
    expect(broken.events({ acceptedOnly: true })).toHaveLength(0);
    // The switch is immediate: no waiting out the old endpoint's backoff (60 s) or any pause.
    expect(performance.now() - t0).toBeLessThan(500);
  });

  it('an update that is refused changes nothing, and is refused again when applied again (a password with a bare % in the URL)', async () => {
    const r = await receiver();
    const e = endpoint('refused-update', fast(r.url));
    const bad = fast(r.url.replace('http://', 'http://user:50%@'), { headers: [['X-New', '1']], maxBatchEvents: 5 });
    for (let i = 0; i < 2; i++) {
      const error = (() => { try { e.update(bad); } catch (caught) { return caught; } })();
      expect(error).toBeInstanceOf(EndpointConfigError);
      expect((error as Error).message).not.toContain('50%');
      expect(e.config.url).toBe(r.url);
    }
    send(e, makeEvents(1, 'still'));
    await r.waitFor((reqs) => reqs.length === 1);
    expect(r.requests[0]!.headers['x-new']).toBeUndefined();
    expect(r.requests[0]!.headers.authorization).toBeUndefined();
  });

  it('update changes filters, headers and batch size in place for later events', async () => {
    const r = await receiver();
    const e = endpoint('tuned', fast(r.url));
    send(e, makeEvents(1, 'one'));
    await r.waitFor((reqs) => reqs.length === 1);
    e.update(fast(r.url, { headers: [['X-Version', '2']], filter: { ...NO_FILTER, ignoredActions: ['pull'] } }));
    send(e, [...makeEvents(1, 'push'), { ...makeEvents(1, 'pull')[0]!, action: 'pull' }]);
    await r.waitFor((reqs) => reqs.length === 2);
    expect(r.requests[0]?.headers['x-version']).toBeUndefined();
    expect(r.requests[1]?.headers['x-version']).toBe('2');
    expect(r.events().map((ev) => ev.id)).toEqual(['one-0', 'push-0']);
  });

  it('batches up to maxBatchEvents from what is queued, in order', async () => {
    const r = await receiver();
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    r.respond(async (req) => (req.seq === 0 ? (await gate, 200) : 200));
    const e = endpoint('batched', fast(r.url, { maxBatchEvents: 100 }));
    send(e, makeEvents(1, 'lead'));
    await r.waitFor((reqs) => reqs.length === 1);
    const rest = makeEvents(250, 'rest');
    send(e, rest);
    release();
    await r.waitFor(() => acceptedIds(r).length >= 251);
    expect(r.requests.map((q) => (q.json as { events: unknown[] }).events.length)).toEqual([1, 100, 100, 50]);
    expect(acceptedIds(r)).toEqual(['lead-0', ...rest.map((ev) => ev.id)]);
  });

  it('disabled keeps queueing and sends nothing; enabling sends it all', async () => {
    const r = await receiver();
    const backend = permitRecordingBackend();
    const e = new Endpoint('paused', fast(r.url, { disabled: true }), {}, backend.storeFor('paused'));
    cleanups.push(() => e.close({ signal: AbortSignal.abort() }));
    // An enabled endpoint sent to after the disabled one: its permit is asked (and its event delivered) only
    // after a disabled endpoint that sends anyway would have asked for its own.
    const marker = new Endpoint('marker', fast(r.url), {}, backend.storeFor('marker'));
    cleanups.push(() => marker.close({ signal: AbortSignal.abort() }));
    send(e, makeEvents(5));
    send(marker, makeEvents(1, 'marker'));
    await r.waitFor(() => acceptedIds(r).includes('marker-0'));
    expect(backend.asked).toEqual(['marker']);
    expect(acceptedIds(r)).toEqual(['marker-0']);
    expect(e.pending).toBe(5);
    e.update(fast(r.url));
    await r.waitFor(() => acceptedIds(r).length === 6);
    await until(() => e.pending === 0, 'queue drained', 5000);
    expect(acceptedIds(r)).toEqual(['marker-0', ...makeEvents(5).map((ev) => ev.id)]);
  });

  it('dead-letters events that exhaust maxAttempts and moves on to the next', async () => {
    const r = await receiver();
    r.respond((req) => ((req.json as { events: { id: string }[] }).events[0]?.id === 'ev-0' ? 500 : 200));
    const dead: string[] = [];
    const e = new Endpoint('budget', fast(r.url, { retry: { strategy: 'Breaker', maxBackoffMs: 1000, maxAttempts: 4, maxAgeMs: 0 } }), {
      listener: { deadLettered: (events, reason) => dead.push(...events.map((ev) => `${ev.id}: ${reason}`)) },
    });
    cleanups.push(() => e.close());
    send(e, makeEvents(3));
    await r.waitFor(() => acceptedIds(r).length === 2);
    await until(() => e.pending === 0, 'queue drained', 5000);
    expect(dead).toEqual(['ev-0: gave up after 4 attempts; last: 500 Internal Server Error']);
    expect(acceptedIds(r)).toEqual(['ev-1', 'ev-2']);
    expect(e.stats()).toMatchObject({ deadLettered: 1, delivered: 2, failures: 4 });
  });

  it('close delivers what it holds before resolving; then enqueue and a second close are refused as closed', async () => {
    const r = await receiver();
    const e = new Endpoint('closing', fast(r.url));
    send(e, makeEvents(3));
    await e.close();
    expect(acceptedIds(r)).toEqual(['ev-0', 'ev-1', 'ev-2']);
    expect(e.closing).toBe(true);
    expect(() => e.enqueue(queued(makeEvents(1, 'late')))).toThrow(SinkClosedError);
    await expect(e.close()).rejects.toThrow(SinkClosedError);
  });
});

describe('EndpointSet', () => {
  it('adds and removes endpoints during traffic; removal discards and counts what was pending', async () => {
    const a = await receiver();
    const b = await receiver();
    b.respond(() => 503);
    const set = new EndpointSet();
    cleanups.push(() => set.close(AbortSignal.abort()));
    expect(set.apply('a', fast(a.url))).toBe('created');
    expect(set.apply('b', fast(b.url, { backoffMs: 60_000 }))).toBe('created');
    await set.write(makeEvents(10, 'first'));
    await b.waitFor((reqs) => reqs.length >= 3);
    expect(await set.remove('b')).toBe(10);
    expect(await set.remove('b')).toBe(0);
    await set.write(makeEvents(5, 'second'));
    expect(set.apply('c', fast(a.url))).toBe('created');
    expect(set.apply('a', fast(a.url, { headers: [['X-A', '1']] }))).toBe('updated');
    await set.write(makeEvents(2, 'third'));
    await a.waitFor(() => acceptedIds(a).length >= 19);
    const ids = acceptedIds(a);
    expect(ids.filter((id) => id.startsWith('first') || id.startsWith('second'))).toHaveLength(15);
    expect(ids.filter((id) => id.startsWith('third'))).toHaveLength(4); // a and c both got them
    expect(set.list().map((e) => e.name)).toEqual(['a', 'c']);
  });

  it.each([
    ['the endpoint that would queue them is at its limit', { perEndpoint: 10, total: 100 }, { endpoint: 'all', pending: 8, limit: 10 }],
    ['both fit', { perEndpoint: 11, total: 100 }, undefined],
    ['the total would be over', { perEndpoint: 11, total: 18 }, { endpoint: undefined, pending: 16, limit: 18 }],
  ])('checks pending limits against what each endpoint would queue: %s', async (_case, limits, refusal) => {
    const r = await receiver();
    r.respond(() => 503);
    const set = new EndpointSet({ limits });
    cleanups.push(() => set.close(AbortSignal.abort()));
    set.apply('all', fast(r.url, { backoffMs: 60_000 }));
    set.apply('pushes-only', fast(r.url, { backoffMs: 60_000, filter: { ...NO_FILTER, ignoredActions: ['pull'] } }));
    await set.write(makeEvents(8));
    const pulls = makeEvents(3).map((ev) => ({ ...ev, id: `pull-${ev.id}`, action: 'pull' }));
    const outcome = set.write(pulls);
    if (refusal === undefined) {
      await expect(outcome).resolves.toEqual({ routed: 3, duplicates: [] });
      expect(set.get('all')?.pending).toBe(11);
    } else {
      const error = await outcome.then(() => undefined, (e: unknown) => e);
      expect(error).toBeInstanceOf(QueueFullError);
      expect(error).toMatchObject(refusal);
      expect(set.list().map((e) => e.pending), 'nothing queued anywhere').toEqual([8, 8]);
    }
  });

  it('hands out acceptedAt that never decreases, even if the clock steps back', async () => {
    let now = 2000;
    const { backend, commits } = recordingBackend();
    const set = new EndpointSet({ backend, clock: { now: () => now, sleep: () => new Promise(() => {}) } });
    cleanups.push(() => set.close(AbortSignal.abort()));
    set.apply('a', fast('http://127.0.0.1:9/', { disabled: true }));
    await set.write(makeEvents(1, 'a'));
    now = 1000;
    await set.write(makeEvents(1, 'b'));
    expect(commits.map((routes) => routes[0]?.events[0]?.acceptedAt)).toEqual([2000, 2000]);
  });

  it('asks each filter once per event, commits every route in one step, shares one object per event', async () => {
    const { backend, commits } = recordingBackend();
    const set = new EndpointSet({ backend });
    cleanups.push(() => set.close(AbortSignal.abort()));
    set.apply('all', fast('http://127.0.0.1:9/', { disabled: true }));
    set.apply('pushes', fast('http://127.0.0.1:9/', { disabled: true, filter: { ...NO_FILTER, ignoredActions: ['pull'] } }));
    set.apply('none', fast('http://127.0.0.1:9/', { disabled: true, filter: { ...NO_FILTER, ignoredActions: ['push', 'pull'] } }));
    const events = [...makeEvents(2, 'push'), ...makeEvents(1, 'pull').map((ev) => ({ ...ev, action: 'pull' }))];
    expect(await set.write(events)).toEqual({ routed: 3, duplicates: [] });
    expect(commits).toHaveLength(1);
    const [all, pushes] = commits[0]!;
    expect(commits[0]!.map((route) => [route.endpoint, route.events.map((ev) => ev.id)])).toEqual([
      ['all', ['push-0', 'push-1', 'pull-0']],
      ['pushes', ['push-0', 'push-1']],
    ]);
    expect(pushes!.events[0]).toBe(all!.events[0]);
    expect(all!.events[0]!.json).toBe(JSON.stringify(events[0]));
  });

  it('a commit that fails leaves nothing queued anywhere; the next request goes through', async () => {
    const { backend } = recordingBackend({ failOn: 1 });
    const set = new EndpointSet({ backend });
    cleanups.push(() => set.close(AbortSignal.abort()));
    set.apply('a', fast('http://127.0.0.1:9/', { disabled: true }));
    set.apply('b', fast('http://127.0.0.1:9/', { disabled: true }));
    await expect(set.write(makeEvents(2, 'refused'))).rejects.toThrow('disk is full');
    expect(set.list().map((e) => e.pending)).toEqual([0, 0]);
    await set.write(makeEvents(1, 'next'));
    expect(set.list().map((e) => e.pending)).toEqual([1, 1]);
  });

  it('once close began, accept is refused (SinkClosedError) and nothing is committed: a request must not be answered for events queued nowhere', async () => {
    const { backend, commits } = recordingBackend();
    const set = new EndpointSet({ backend });
    set.apply('a', fast('http://127.0.0.1:9/', { disabled: true }));
    const closing = set.close(AbortSignal.abort());
    await expect(set.write(makeEvents(1, 'late'))).rejects.toBeInstanceOf(SinkClosedError);
    await closing;
    await expect(set.write(makeEvents(1, 'later'))).rejects.toBeInstanceOf(SinkClosedError);
    expect(commits).toEqual([]);
  });

  it('requests reach the queues in the order they called accept, even when a later commit finishes first', async () => {
    const gates: (() => void)[] = [];
    const backend: QueueBackend = {
      commit: (routes) => new Promise((resolve) => gates.push(() => resolve({ routes, duplicates: [] }))),
      storeFor: () => new MemoryStore(),
    };
    const r = await receiver();
    const set = new EndpointSet({ backend });
    cleanups.push(() => set.close(AbortSignal.abort()));
    set.apply('a', fast(r.url));
    const first = set.write(makeEvents(1, 'first'));
    const second = set.write(makeEvents(1, 'second'));
    await until(() => gates.length === 2, 'both commits under way');
    gates[1]!();
    gates[0]!();
    await Promise.all([first, second]);
    await r.waitFor(() => acceptedIds(r).length >= 2);
    expect(acceptedIds(r)).toEqual(['first-0', 'second-0']);
  });

  it('an endpoint removed while its commit is under way gets nothing', async () => {
    let release: (() => void) | undefined;
    const backend: QueueBackend = {
      commit: (routes) => new Promise((resolve) => (release = () => resolve({ routes, duplicates: [] }))),
      storeFor: () => new MemoryStore(),
    };
    const set = new EndpointSet({ backend });
    cleanups.push(() => set.close(AbortSignal.abort()));
    set.apply('stays', fast('http://127.0.0.1:9/', { disabled: true }));
    set.apply('goes', fast('http://127.0.0.1:9/', { disabled: true }));
    const goes = set.get('goes')!;
    const accepted = set.write(makeEvents(2));
    await until(() => release !== undefined, 'the commit under way');
    await set.remove('goes');
    release!();
    await accepted;
    expect(set.get('stays')?.pending).toBe(2);
    expect(goes.pending).toBe(0);
    expect(goes.discarded).toBe(0);
  });
});

/** A backend in memory that records every commit; `failOn: n` makes the n-th commit (1-based) throw. */
function recordingBackend(options: { failOn?: number } = {}): { backend: QueueBackend; commits: (readonly Route[])[] } {
  const commits: (readonly Route[])[] = [];
  let n = 0;
  const backend: QueueBackend = {
    commit: (routes) => {
      if (++n === options.failOn) throw new Error('COMMIT failed: database or disk is full');
      commits.push(routes);
      return { routes, duplicates: [] };
    },
    storeFor: () => new MemoryStore(),
  };
  return { backend, commits };
}

function listen(server: Server, port: number): Promise<void> {
  cleanups.push(async () => {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolve());
  });
}
