// Dead letters in the engine: a retry budget (`retry.maxAttempts`) moves what a receiver keeps refusing aside,
// counted; a replay puts it back, oldest first, to the same receiver. In memory the list is bounded (the newest
// 10,000 are kept); with the journal it outlives the process. The admin call that triggers a replay is
// authenticated with the ingest token.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { Journal } from '../../src/journal/journal.ts';
import { startAdminServer, type AdminServer } from '../../src/metrics/admin-server.ts';
import { Metrics } from '../../src/metrics/metrics.ts';
import { Endpoint, endpointConfig, type EndpointConfig } from '../../src/notifications/endpoint.ts';
import { EndpointSet } from '../../src/notifications/endpoint-set.ts';
import { MemoryStore } from '../../src/notifications/queue-store.ts';
import type { QueuedEvent } from '../../src/notifications/sink.ts';
import { makeEvents } from '../support/events.ts';
import { TestReceiver } from '../support/receiver.ts';
import { until } from '../support/wait.ts';
import { send } from './test-sinks.ts';

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  while (cleanups.length) await Promise.resolve(cleanups.pop()!()).catch(() => {});
});

async function receiver(): Promise<TestReceiver> {
  const r = await TestReceiver.start();
  cleanups.push(() => r.close());
  return r;
}

/** Two attempts, then the dead letters; the breaker never opens in between (threshold above the budget). */
const budget = (url: string, extra: Partial<EndpointConfig> = {}): EndpointConfig =>
  endpointConfig({ url, threshold: 10, backoffMs: 10, timeoutMs: 2000, retry: { strategy: 'Breaker', maxBackoffMs: 100, maxAttempts: 2, maxAgeMs: 0 }, ...extra });

const ids = (events: readonly { id: string }[]): string[] => events.map((e) => e.id);
const queued = (n: number, prefix: string): QueuedEvent[] => Array.from({ length: n }, (_, i) => ({ id: `${prefix}-${i}`, json: `{"id":"${prefix}-${i}"}`, acceptedAt: i }));

describe('dead letters', () => {
  it('maxAttempts 2 against a 500: two attempts per event, then dead-lettered and counted; replay delivers them in order', async () => {
    const r = await receiver();
    r.respond(() => 500);
    const metrics = new Metrics();
    const reasons: string[] = [];
    const listener = metrics.listenerFor('ns/refused');
    const e = new Endpoint('ns/refused', budget(r.url), {
      listener: { ...listener, deadLettered: (events, reason) => (listener.deadLettered?.(events, reason), reasons.push(reason)) },
    });
    cleanups.push(() => e.close({ signal: AbortSignal.abort() }));
    const events = makeEvents(4, 'dl');
    send(e, events);
    await until(() => e.stats().deadLettered === 4 && e.pending === 0, 'four dead letters', 5000);

    // Each event was tried exactly twice, one after the other, and the queue went on to the next.
    expect(ids(r.events())).toEqual(ids(events).flatMap((id) => [id, id]));
    expect(e.stats()).toMatchObject({ delivered: 0, failures: 8, errors: 0, deadLettered: 4, responses: [{ code: 500, count: 8 }] });
    expect(reasons).toEqual(Array(4).fill('gave up after 2 attempts; last: 500 Internal Server Error'));
    const text = await metrics.render();
    expect(text).toContain('registry_notifier_dead_lettered_total{endpoint="ns/refused"} 4');
    expect(text).toContain('registry_notifications_events_total{type="Failures",endpoint="ns/refused"} 8');

    // The receiver recovers: the replay brings the four back, oldest first, and nothing else.
    r.clear();
    r.respond(null);
    expect(e.replayDeadLetters()).toBe(4);
    await r.waitFor(() => r.events({ acceptedOnly: true }).length === 4);
    await until(() => e.pending === 0, 'replayed events delivered', 5000);
    expect(ids(r.events())).toEqual(ids(events));
    expect(e.stats()).toMatchObject({ delivered: 4, deadLettered: 4 });
    expect(e.replayDeadLetters(), 'a second replay has nothing left').toBe(0);
  });

  it('a batch that runs out of budget is dead-lettered whole, and replays in its order behind newer events', async () => {
    const r = await receiver();
    r.respond(() => 500);
    const e = new Endpoint('batched', budget(r.url, { maxBatchEvents: 10 }));
    cleanups.push(() => e.close({ signal: AbortSignal.abort() }));
    send(e, makeEvents(6, 'old'));
    await until(() => e.stats().deadLettered === 6, 'the batch dead-lettered', 5000);
    expect(r.requests).toHaveLength(2);
    expect(ids(r.events())).toEqual([...ids(makeEvents(6, 'old')), ...ids(makeEvents(6, 'old'))]);
    r.clear();
    r.respond(null);
    send(e, makeEvents(2, 'new'));
    await r.waitFor(() => r.events().length === 2);
    expect(e.replayDeadLetters()).toBe(6);
    await r.waitFor(() => r.events().length === 8);
    expect(ids(r.events())).toEqual([...ids(makeEvents(2, 'new')), ...ids(makeEvents(6, 'old'))]);
  });

  it('the in-memory list keeps the newest `capacity` dead letters, oldest first, and counts what it pushed out', () => {
    const store = new MemoryStore(3);
    store.deadLetter(queued(2, 'a'));
    store.deadLetter(queued(3, 'b'));
    expect(store.dropped).toBe(2);
    expect(ids(store.takeDeadLetters())).toEqual(['b-0', 'b-1', 'b-2']);
    expect(store.takeDeadLetters(), 'taken means gone').toEqual([]);
    store.deadLetter(queued(1, 'c'));
    store.drop();
    expect(store.takeDeadLetters()).toEqual([]);
  });

  it('by default the in-memory list holds 10,000: the newest 10,000 of 10,250', () => {
    const store = new MemoryStore();
    for (let i = 0; i < 41; i++) store.deadLetter(queued(250, `batch${i}`));
    const kept = store.takeDeadLetters();
    expect(kept).toHaveLength(10_000);
    expect(store.dropped).toBe(250);
    expect(kept[0]!.id).toBe('batch1-0');
    expect(kept.at(-1)!.id).toBe('batch40-249');
  });

  it('an endpoint with a small in-memory list replays only the newest, in order', async () => {
    const r = await receiver();
    r.respond(() => 500);
    const store = new MemoryStore(2);
    const e = new Endpoint('small', budget(r.url), {}, store);
    cleanups.push(() => e.close({ signal: AbortSignal.abort() }));
    send(e, makeEvents(5, 'm'));
    await until(() => e.stats().deadLettered === 5, 'five dead letters', 5000);
    expect(store.dropped).toBe(3);
    r.clear();
    r.respond(null);
    expect(e.replayDeadLetters()).toBe(2);
    await r.waitFor(() => r.events({ acceptedOnly: true }).length === 2);
    expect(ids(r.events())).toEqual(['m-3', 'm-4']);
  });

  it('with the journal, dead letters outlive the process and replay after a reopen, in order', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'rn-dead-'));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const logger = pino({ level: 'silent' });
    const r = await receiver();
    r.respond(() => 500);
    const journal = Journal.open(dir, logger);
    const set = new EndpointSet({ backend: journal });
    set.apply('durable', budget(r.url));
    const events = makeEvents(3, 'kept');
    await set.write(events);
    await until(() => set.get('durable')?.stats().deadLettered === 3, 'three dead letters', 5000);
    expect(journal.counts()).toEqual({ events: 3, pending: 0, deadLetters: 3 });
    await set.close(AbortSignal.timeout(2000));
    journal.close();

    r.clear();
    r.respond(null);
    const reopened = Journal.open(dir, logger);
    cleanups.push(() => reopened.close());
    const after = new EndpointSet({ backend: reopened });
    cleanups.push(() => after.close(AbortSignal.abort()));
    after.apply('durable', budget(r.url));
    expect(after.get('durable')!.pending, 'dead letters are not pending').toBe(0);
    expect(after.replay('durable')).toBe(3);
    expect(after.replay('unknown')).toBeUndefined();
    await r.waitFor(() => r.events({ acceptedOnly: true }).length === 3);
    await until(() => after.get('durable')!.pending === 0, 'replay delivered', 5000);
    expect(ids(r.events())).toEqual(ids(events));
    expect(reopened.counts(), 'delivered replays leave nothing behind').toEqual({ events: 0, pending: 0, deadLetters: 0 });
  });
});

describe('POST /endpoints/replay on the admin server', () => {
  const TOKEN = 'replay-token-7c1e';

  async function admin(token: string | undefined, replay = (name: string): number | undefined => (name === 'ns/known' ? 3 : undefined)): Promise<AdminServer> {
    const server = await startAdminServer({
      host: '127.0.0.1', port: 0, metrics: new Metrics(), ready: () => true, endpoints: () => [], replay,
      ...(token !== undefined && { token }),
    });
    cleanups.push(() => server.close());
    return server;
  }

  const call = (server: AdminServer, query: string, init: RequestInit = {}): Promise<Response> =>
    fetch(`${server.url}/endpoints/replay${query}`, { method: 'POST', signal: AbortSignal.timeout(5000), ...init });

  it('answers 200 with the count for the right token, and replays nothing otherwise', async () => {
    const replayed: string[] = [];
    const server = await admin(TOKEN, (name) => (replayed.push(name), name === 'ns/known' ? 3 : undefined));
    const ok = await call(server, '?endpoint=ns%2Fknown', { headers: { authorization: `Bearer ${TOKEN}` } });
    expect(ok.status).toBe(200);
    expect(await ok.json()).toEqual({ endpoint: 'ns/known', replayed: 3 });

    const missing = await call(server, '?endpoint=ns%2Fknown');
    expect(missing.status).toBe(401);
    expect(missing.headers.get('www-authenticate')).toMatch(/^Bearer /);
    const wrong = await call(server, '?endpoint=ns%2Fknown', { headers: { authorization: 'Bearer not-the-token' } });
    expect(wrong.status).toBe(401);
    expect(wrong.headers.get('www-authenticate')).toMatch(/^Bearer /);

    const unknown = await call(server, '?endpoint=ns%2Fgone', { headers: { authorization: `Bearer ${TOKEN}` } });
    expect(unknown.status).toBe(404);
    expect(((await unknown.json()) as { error: { message: string } }).error.message).toContain('ns/gone');

    const nameless = await call(server, '', { headers: { authorization: `Bearer ${TOKEN}` } });
    expect(nameless.status).toBe(400);
    const get = await call(server, '?endpoint=ns%2Fknown', { method: 'GET', headers: { authorization: `Bearer ${TOKEN}` } });
    expect(get.status).toBe(405);
    expect(get.headers.get('allow')).toBe('POST');
    expect(replayed, 'only the authenticated calls with a name reached the engine').toEqual(['ns/known', 'ns/gone']);
  });

  it('answers 403 when no token is configured, whatever the caller sends', async () => {
    let called = false;
    const server = await admin(undefined, () => ((called = true), 1));
    for (const headers of [{}, { authorization: 'Bearer anything' }]) {
      const res = await call(server, '?endpoint=ns%2Fknown', { headers });
      expect(res.status).toBe(403);
      expect(((await res.json()) as { error: { message: string } }).error.message).toContain('--ingest-token-file');
    }
    expect(called).toBe(false);
  });
});
