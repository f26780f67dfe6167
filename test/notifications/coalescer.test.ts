// Coalescing (api.md §11 `coalesce`), with times given by the test: the coalescer on its own (the key, the fixed
// window from the first event, the two-phase round, expiry and the cap on keys), then through an EndpointSet to a
// real loopback receiver (no added latency, nothing queued or committed for a coalesced event, refusals, updates).
import { describe, expect, it } from 'vitest';
import { Coalescer, coalesceKey } from '../../src/notifications/coalescer.ts';
import { endpointConfig, type EndpointConfig } from '../../src/notifications/endpoint.ts';
import { EndpointSet } from '../../src/notifications/endpoint-set.ts';
import { QueueFullError } from '../../src/notifications/errors.ts';
import type { Event } from '../../src/notifications/event.ts';
import { MemoryStore, type QueueBackend, type Route } from '../../src/notifications/queue-store.ts';
import { systemClock } from '../../src/notifications/retrying-sink.ts';
import { startReceiver, useCleanups } from '../support/cleanup.ts';
import { fixtureEvent } from '../support/events.ts';
import type { TestReceiver } from '../support/receiver.ts';
import { until } from '../support/wait.ts';

const pullTagged = fixtureEvent('pull-manifest-tagged.json'); // pull demo/app:v1
const pullBlob = fixtureEvent('pull-blob.json'); // pull demo/app@sha256:b027…, no tag
const pushTagged = fixtureEvent('push-manifest-tagged.json'); // push demo/app:v1
const with_ = (event: Event, target: Record<string, unknown>, id = `${event.id}-${JSON.stringify(target)}`): Event =>
  ({ ...event, id, target: { ...event.target, ...target } });

/** Decides `events` in one committed round at `at`; true where delivered. */
function decide(coalescer: Coalescer, at: number, ...events: Event[]): boolean[] {
  const round = coalescer.round(at);
  const out = events.map((event) => round.admit(event));
  round.commit();
  return out;
}

describe('coalesceKey', () => {
  it('is (action, repository, tag) for a tagged event and (action, repository, digest) otherwise', () => {
    expect(coalesceKey(pullTagged)).toBe(coalesceKey(with_(pullTagged, { digest: 'sha256:other' })));
    expect(coalesceKey(pullTagged)).not.toBe(coalesceKey(with_(pullTagged, { tag: 'v2' })));
    expect(coalesceKey(pullTagged)).not.toBe(coalesceKey(pushTagged));
    expect(coalesceKey(pullTagged)).not.toBe(coalesceKey(with_(pullTagged, { repository: 'demo/other' })));
    expect(coalesceKey(pullBlob)).toBe(coalesceKey(with_(pullBlob, { size: 1 })));
    expect(coalesceKey(with_(pullTagged, { tag: '' }))).toBe(coalesceKey(with_(pullTagged, { tag: undefined })));
    expect(coalesceKey(with_(pullTagged, { tag: '' }))).not.toBe(coalesceKey(pullTagged));
  });

  it('is undefined without a repository, or with neither a tag nor a digest (such events are never coalesced)', () => {
    expect(coalesceKey(with_(pullTagged, { repository: undefined }))).toBeUndefined();
    expect(coalesceKey(with_(pullTagged, { repository: '' }))).toBeUndefined();
    expect(coalesceKey(with_(pullTagged, { tag: '', digest: '' }))).toBeUndefined();
    const coalescer = new Coalescer({ actions: ['pull'], windowMs: 60_000 });
    const anonymous = with_(pullTagged, { tag: undefined, digest: undefined });
    expect(decide(coalescer, 0, anonymous, anonymous, anonymous)).toEqual([true, true, true]);
  });
});

describe('Coalescer', () => {
  it('delivers the first event, coalesces the same key within the window, delivers again once it has ended', () => {
    const coalescer = new Coalescer({ actions: ['pull'], windowMs: 60_000 });
    expect(decide(coalescer, 1_000, pullTagged)).toEqual([true]);
    expect(decide(coalescer, 1_001, pullTagged, pullTagged)).toEqual([false, false]);
    expect(decide(coalescer, 60_999, pullTagged)).toEqual([false]);
    expect(decide(coalescer, 61_000, pullTagged)).toEqual([true]); // the window is [1000, 61000)
    expect(decide(coalescer, 61_001, pullTagged)).toEqual([false]);
  });

  it('keeps a fixed window: duplicates do not extend it (one event per window under a steady stream)', () => {
    const coalescer = new Coalescer({ actions: ['pull'], windowMs: 10_000 });
    const delivered: number[] = [];
    for (let at = 0; at < 60_000; at += 1_000) if (decide(coalescer, at, pullTagged)[0]) delivered.push(at);
    expect(delivered).toEqual([0, 10_000, 20_000, 30_000, 40_000, 50_000]);
  });

  it('never coalesces different tags, digests, repositories or actions', () => {
    const coalescer = new Coalescer({ actions: ['pull', 'push'], windowMs: 60_000 });
    const events = [
      pullTagged,
      with_(pullTagged, { tag: 'v2' }),
      pullBlob,
      with_(pullBlob, { digest: 'sha256:0000000000000000000000000000000000000000000000000000000000000000' }),
      with_(pullTagged, { repository: 'demo/other' }),
      pushTagged,
    ];
    expect(decide(coalescer, 0, ...events)).toEqual(events.map(() => true));
    expect(decide(coalescer, 1, ...events)).toEqual(events.map(() => false));
  });

  it('never coalesces actions it does not list', () => {
    const coalescer = new Coalescer({ actions: ['pull'], windowMs: 60_000 });
    const mount = fixtureEvent('mount-blob.json');
    const deleted = fixtureEvent('delete-tag.json');
    expect(decide(coalescer, 0, pushTagged, pushTagged, mount, mount, deleted, deleted)).toEqual([true, true, true, true, true, true]);
    expect(coalescer.size).toBe(0);
  });

  it('coalesces within one round too, and counts what it coalesced when committed', () => {
    const coalescer = new Coalescer({ actions: ['pull'], windowMs: 60_000 });
    const counts: number[] = [];
    const round = coalescer.round(0, (n) => counts.push(n));
    expect([pullTagged, pullBlob, pullTagged, pullTagged].map((e) => round.admit(e))).toEqual([true, true, false, false]);
    expect(round.coalesced).toBe(2);
    expect(counts).toEqual([]);
    round.commit();
    round.commit(); // a second commit does nothing
    expect(counts).toEqual([2]);
    coalescer.round(1, (n) => counts.push(n)).commit(); // nothing coalesced: nothing reported
    expect(counts).toEqual([2]);
  });

  it('remembers nothing from a round that is never committed (a refused request opens no window)', () => {
    const coalescer = new Coalescer({ actions: ['pull'], windowMs: 60_000 });
    const refused = coalescer.round(0);
    expect(refused.admit(pullTagged)).toBe(true);
    expect(coalescer.size).toBe(0);
    expect(decide(coalescer, 1, pullTagged)).toEqual([true]); // the resend is delivered, not coalesced
  });

  it('keeps the window a concurrent round opened first', () => {
    const coalescer = new Coalescer({ actions: ['pull'], windowMs: 10_000 });
    const first = coalescer.round(0);
    const second = coalescer.round(5_000);
    expect(first.admit(pullTagged)).toBe(true);
    expect(second.admit(pullTagged)).toBe(true); // decided before the first committed: both go through
    first.commit();
    second.commit();
    expect(decide(coalescer, 9_999, pullTagged)).toEqual([false]);
    expect(decide(coalescer, 10_000, pullTagged)).toEqual([true]); // the first round's window, not one from 5000
  });

  it('forgets windows that ended, so memory follows the keys of one window', () => {
    const coalescer = new Coalescer({ actions: ['pull'], windowMs: 1_000 });
    for (let i = 0; i < 100; i++) decide(coalescer, i * 10, with_(pullTagged, { tag: `t${i}` }));
    expect(coalescer.size).toBe(100);
    decide(coalescer, 1_500, with_(pullTagged, { tag: 'late' }));
    expect(coalescer.size).toBe(50); // t51 (opened at 510, open until 1510) … t99 are still open, plus "late"
    expect(coalescer.forgotten).toBe(0);
  });

  it('at its cap ends the oldest window early: that key is delivered again rather than dropped', () => {
    const coalescer = new Coalescer({ actions: ['pull'], windowMs: 60_000 }, { maxKeys: 3 });
    const tag = (t: string): Event => with_(pullTagged, { tag: t });
    expect(decide(coalescer, 0, tag('a'), tag('b'), tag('c'))).toEqual([true, true, true]);
    expect(decide(coalescer, 1, tag('d'))).toEqual([true]);
    expect(coalescer.size).toBe(3);
    expect(coalescer.forgotten).toBe(1);
    expect(decide(coalescer, 2, tag('b'), tag('c'), tag('d'))).toEqual([false, false, false]);
    expect(decide(coalescer, 3, tag('a'))).toEqual([true]); // forgotten early: delivered, and b's window is now the oldest
    expect(decide(coalescer, 4, tag('b'))).toEqual([true]);
    expect(coalescer.forgotten).toBe(3);
  });
});

describe('coalescing in an EndpointSet, delivered to a real loopback receiver', () => {
  const cleanups = useCleanups();
  const WINDOW = 60_000;
  /** A set whose acceptance time the test sets (`clock.at`); retries sleep for real. */
  function setup(options: { backend?: QueueBackend } = {}): { set: EndpointSet; clock: { at: number } } {
    const clock = { at: 1_000_000 };
    const set = new EndpointSet({ clock: { now: () => clock.at, sleep: systemClock.sleep }, ...options });
    cleanups.push(() => set.close(AbortSignal.abort()));
    return { set, clock };
  }
  const coalescing = (url: string, actions: string[] = ['pull'], windowMs = WINDOW): EndpointConfig =>
    endpointConfig({ url, coalesce: { actions, windowMs } });
  const ids = (r: TestReceiver): string[] => r.events({ acceptedOnly: true }).map((e) => e.id);
  const pull = (id: string, target: Record<string, unknown> = {}): Event => with_(pullTagged, target, id);
  /** Sends a push the endpoint never coalesces and waits for it: what was queued before it has arrived by then. */
  async function barrier(set: EndpointSet, r: TestReceiver, id: string): Promise<void> {
    await set.write([{ ...pushTagged, id }]);
    await r.waitFor(() => ids(r).includes(id));
  }

  it('delivers the first event at once, counts duplicates within the window without queueing them, delivers after it', async () => {
    const r = await startReceiver(cleanups);
    const { set, clock } = setup();
    set.apply('hook', coalescing(r.url));
    const started = performance.now();
    expect(await set.write([pull('first')])).toEqual({ routed: 1, duplicates: [] });
    // The clock stands still: the window cannot have ended, so the event did not wait for it.
    await r.waitFor(() => ids(r).includes('first'));
    expect(performance.now() - started).toBeLessThan(WINDOW / 10);
    await until(() => set.get('hook')?.pending === 0, 'the first event acknowledged');
    clock.at += 1_000;
    expect(await set.write([pull('dup-1'), pull('dup-2')])).toEqual({ routed: 0, duplicates: [] });
    clock.at += WINDOW - 1_001;
    expect(await set.write([pull('dup-3')])).toEqual({ routed: 0, duplicates: [] });
    expect(set.get('hook')?.pending, 'coalesced events are never queued').toBe(0);
    await barrier(set, r, 'barrier-1');
    clock.at += 1; // exactly one window after the first event
    await set.write([pull('next')]);
    await r.waitFor(() => ids(r).includes('next'));
    expect(ids(r)).toEqual(['first', 'barrier-1', 'next']);
    expect(set.get('hook')?.stats().coalesced).toBe(3);
  });

  it('passes different tags, digests, repositories and actions, and actions it does not list', async () => {
    const r = await startReceiver(cleanups);
    const { set, clock } = setup();
    set.apply('hook', coalescing(r.url, ['pull', 'mount']));
    const events = [
      pull('v1'), pull('v2', { tag: 'v2' }), { ...pullBlob, id: 'blob' }, pull('other-repo', { repository: 'demo/other' }),
      { ...fixtureEvent('mount-blob.json'), id: 'mount' }, { ...pushTagged, id: 'push' }, { ...fixtureEvent('delete-tag.json'), id: 'delete' },
    ];
    await set.write(events);
    clock.at += 1;
    const again = events.map((e) => ({ ...e, id: `${e.id}-again` }));
    await set.write(again);
    await barrier(set, r, 'barrier');
    expect(ids(r)).toEqual([...events.map((e) => e.id), 'push-again', 'delete-again', 'barrier']);
    expect(set.get('hook')?.stats().coalesced).toBe(5);
  });

  it('coalesces per endpoint: another endpoint without coalesce gets every event', async () => {
    const quiet = await startReceiver(cleanups);
    const all = await startReceiver(cleanups);
    const { set } = setup();
    set.apply('quiet', coalescing(quiet.url));
    set.apply('all', endpointConfig({ url: all.url }));
    expect(await set.write([pull('a'), pull('b'), pull('c')])).toEqual({ routed: 3, duplicates: [] });
    await all.waitFor(() => ids(all).length === 3);
    await barrier(set, quiet, 'barrier');
    expect(ids(quiet)).toEqual(['a', 'barrier']);
    expect([set.get('quiet')?.stats().coalesced, set.get('all')?.stats().coalesced]).toEqual([2, 0]);
  });

  it('commits only what goes through: coalesced events never reach the backend (not pending, not journaled)', async () => {
    const commits: (readonly Route[])[] = [];
    const backend: QueueBackend = {
      commit: (routes) => (commits.push(routes), { routes, duplicates: [] }),
      storeFor: () => new MemoryStore(),
    };
    const { set } = setup({ backend });
    set.apply('hook', { ...coalescing('http://127.0.0.1:9/'), disabled: true });
    await set.write([pull('a'), pull('b'), { ...pushTagged, id: 'push' }]);
    await set.write([pull('c')]); // only coalesced: nothing to commit at all
    expect(commits.map((routes) => routes.map((route) => route.events.map((e) => e.id)))).toEqual([[['a', 'push']]]);
    expect(set.get('hook')?.stats().coalesced).toBe(2);
  });

  it('a refused request opens no window and counts nothing: its resend is delivered', async () => {
    const r = await startReceiver(cleanups);
    let fail = true;
    const backend: QueueBackend = {
      commit: (routes) => {
        if (fail) throw new Error('COMMIT failed: disk full');
        return { routes, duplicates: [] };
      },
      storeFor: () => new MemoryStore(),
    };
    const { set } = setup({ backend });
    set.apply('hook', coalescing(r.url));
    await expect(set.write([pull('a'), pull('a-dup')])).rejects.toThrow(/disk full/);
    expect(set.get('hook')?.stats().coalesced).toBe(0);
    fail = false;
    await set.write([pull('a')]);
    await r.waitFor(() => ids(r).includes('a'));
    const refused = new EndpointSet({ limits: { perEndpoint: 0, total: 10 } });
    cleanups.push(() => refused.close(AbortSignal.abort()));
    refused.apply('hook', coalescing(r.url));
    await expect(refused.write([pull('b')])).rejects.toBeInstanceOf(QueueFullError);
    expect(refused.get('hook')?.stats().coalesced).toBe(0);
  });

  it('keeps its windows when the same configuration is applied again, starts over when coalesce changes', async () => {
    const r = await startReceiver(cleanups);
    const { set, clock } = setup();
    set.apply('hook', coalescing(r.url));
    await set.write([pull('first')]);
    set.apply('hook', { ...coalescing(r.url), headers: [['X-Team', 'a']] }); // a resync, a header change
    clock.at += 1;
    await set.write([pull('kept')]);
    set.apply('hook', coalescing(r.url, ['pull'], WINDOW * 2)); // a new window length: no window is open
    clock.at += 1;
    await set.write([pull('after-change'), pull('after-change-dup')]);
    set.apply('hook', endpointConfig({ url: r.url })); // coalesce removed: everything goes through
    await set.write([pull('plain')]);
    await r.waitFor(() => ids(r).includes('plain'));
    expect(ids(r)).toEqual(['first', 'after-change', 'plain']);
    expect(set.get('hook')?.stats().coalesced).toBe(2);
  });

  it('tells the listener how many it coalesced, once per request, after the commit', async () => {
    const counts: [string, number][] = [];
    const clock = { at: 0 };
    const set = new EndpointSet({
      clock: { now: () => clock.at, sleep: systemClock.sleep },
      listenerFor: (name) => ({ coalesced: (n) => counts.push([name, n]) }),
    });
    cleanups.push(() => set.close(AbortSignal.abort()));
    set.apply('hook', { ...coalescing('http://127.0.0.1:9/'), disabled: true });
    await set.write([pull('a'), pull('b'), pull('c')]);
    await set.write([pull('d')]);
    expect(counts).toEqual([['hook', 2], ['hook', 1]]);
  });
});
