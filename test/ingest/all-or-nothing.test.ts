// "202, or nothing": a request the ingest refuses leaves nothing behind, in memory or in the journal, so the
// registry's resend is delivered exactly once. The reproduction that found the bug: two endpoints, a journal
// whose write for the second endpoint fails inside the request's transaction.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { Journal } from '../../src/journal/journal.ts';
import { MemoryStore, type QueueBackend, type Route } from '../../src/notifications/queue-store.ts';
import { envelope, event, post, startIngest, type Harness } from './support.ts';
import { until } from '../support/wait.ts';

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  while (cleanups.length > 0) await Promise.resolve(cleanups.pop()!()).catch(() => {});
});

/** A real journal whose next commit fails while writing the second endpoint's rows (a real rollback). */
function journalFailingOnce(): { backend: QueueBackend; journal: Journal; failNext: () => void } {
  const dir = mkdtempSync(join(tmpdir(), 'rn-all-or-nothing-'));
  const journal = Journal.open(dir, pino({ level: 'silent' }));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  cleanups.push(() => journal.close());
  let fail = false;
  const backend: QueueBackend = {
    commit: (routes: readonly Route[]) => {
      if (!fail) return journal.commit(routes);
      fail = false;
      // The second route's endpoint cannot be bound: its INSERT throws after the first route's rows were written.
      return journal.commit(routes.map((route, i) => (i === 1 ? { ...route, endpoint: Symbol('unbindable') as unknown as string } : route)));
    },
    storeFor: (endpoint) => journal.storeFor(endpoint),
  };
  return { backend, journal, failNext: () => (fail = true) };
}

/** `inner` whose first commit waits until `release()` is called; `commits()` counts the commits begun. */
function firstCommitHeld(inner: QueueBackend): { backend: QueueBackend; commits: () => number; release: () => void } {
  let release: () => void = () => {};
  let commits = 0;
  const backend: QueueBackend = { ...inner, commit: async (routes) => {
    if (commits++ === 0) await new Promise<void>((resolve) => (release = resolve));
    return inner.commit(routes);
  } };
  return { backend, commits: () => commits, release: () => release() };
}

async function start(backend: QueueBackend): Promise<Harness> {
  const h = await startIngest({ endpoints: [{}, {}], backend });
  cleanups.push(() => h.close());
  return h;
}

describe('the ingest never half-applies a request', () => {
  it('a commit failing on the second endpoint: 503, nothing delivered anywhere; the resend is delivered exactly once', async () => {
    const { backend, journal, failNext } = journalFailingOnce();
    const h = await start(backend);
    failNext();
    const refused = await post(h.ingest.url, envelope([event('e1')]));
    expect(refused.status).toBe(503);
    expect(refused.headers['retry-after']).toMatch(/^[1-9]/);
    expect(journal.counts(), 'no row of the refused request').toEqual({ events: 0, pending: 0, deadLetters: 0 });
    expect(h.endpoints.list().map((e) => e.pending)).toEqual([0, 0]);

    // The registry resends the same envelope, then sends the next one.
    expect((await post(h.ingest.url, envelope([event('e1')]))).text).toBe('{"accepted":1,"duplicates":0}');
    expect((await post(h.ingest.url, envelope([event('e2')]))).status).toBe(202);
    for (const receiver of h.receivers) {
      await receiver.waitForEvents((events) => events.some((e) => e.id === 'e2'));
      // Each endpoint sends in order: e2's arrival proves nothing else was queued before it.
      expect(receiver.events().map((e) => e.id)).toEqual(['e1', 'e2']);
    }
  });

  it('a refused request is not remembered as seen: its resend is no duplicate', async () => {
    const { backend, failNext } = journalFailingOnce();
    const h = await start(backend);
    failNext();
    expect((await post(h.ingest.url, envelope([event('r1'), event('r2')]))).status).toBe(503);
    expect((await post(h.ingest.url, envelope([event('r1'), event('r2')]))).text).toBe('{"accepted":2,"duplicates":0}');
    expect(h.heard.events).toEqual([2]);
    expect(h.heard.duplicates).toEqual([]);
  });

  it('holds when a step between the ingest and the queue is asynchronous: a commit that awaits', async () => {
    const { backend: inner, journal, failNext } = journalFailingOnce();
    // One await before the journal is written, as a network database would have.
    const backend: QueueBackend = { ...inner, commit: async (routes) => {
      await new Promise((resolve) => setTimeout(resolve, 5)); // a slow commit, not a synchronisation
      return inner.commit(routes);
    } };
    const h = await start(backend);
    failNext();
    expect((await post(h.ingest.url, envelope([event('a1')]))).status).toBe(503);
    expect(journal.counts()).toEqual({ events: 0, pending: 0, deadLetters: 0 });
    const [again, next] = await Promise.all([post(h.ingest.url, envelope([event('a1')])), post(h.ingest.url, envelope([event('a2')]))]);
    expect([again.status, next.status]).toEqual([202, 202]);
    for (const receiver of h.receivers) {
      await receiver.waitForEvents((events) => events.length === 2);
      expect(receiver.events().map((e) => e.id).sort()).toEqual(['a1', 'a2']);
    }
  });

  it('a resend that arrives while the first request is still being committed waits for that commit: when it fails, the resend is committed, not answered as a duplicate', async () => {
    const { backend: inner, journal, failNext } = journalFailingOnce();
    // The first commit is held (a database slower than the registry's timeout), then fails.
    const { backend, commits, release } = firstCommitHeld(inner);
    const h = await start(backend);
    failNext();
    const first = post(h.ingest.url, envelope([event('held'), event('h2')]));
    await until(() => commits() === 1, 'the first commit');
    // The registry timed out and resends the envelope (Distribution waits 1 s by default).
    let resendAnswered = false;
    const resend = post(h.ingest.url, envelope([event('held'), event('h2')])).finally(() => (resendAnswered = true));
    await new Promise((resolve) => setTimeout(resolve, 100)); // a window in which the resend must stay unanswered
    expect(resendAnswered).toBe(false);
    release();
    expect((await first).status).toBe(503);
    expect((await resend).text).toBe('{"accepted":2,"duplicates":0}');
    expect(journal.counts().events).toBe(2);
    for (const receiver of h.receivers) {
      await receiver.waitForEvents((events) => events.length === 2);
      expect(receiver.events().map((e) => e.id)).toEqual(['held', 'h2']);
    }
  });

  it('a resend that arrives while the first request is still being committed is a duplicate once that commit succeeded', async () => {
    const { backend, commits, release } = firstCommitHeld(journalFailingOnce().backend);
    const h = await start(backend);
    const first = post(h.ingest.url, envelope([event('slow')]));
    await until(() => commits() === 1, 'the first commit');
    const resend = post(h.ingest.url, envelope([event('slow'), event('next')]));
    await new Promise((resolve) => setTimeout(resolve, 100)); // the resend is waiting for the first commit meanwhile
    release();
    expect((await first).text).toBe('{"accepted":1,"duplicates":0}');
    expect((await resend).text).toBe('{"accepted":1,"duplicates":1}');
    for (const receiver of h.receivers) {
      await receiver.waitForEvents((events) => events.length === 2);
      expect(receiver.events().map((e) => e.id)).toEqual(['slow', 'next']);
    }
  });
});

describe('duplicates the backend knows of (a resend that reached another replica first)', () => {
  it('are answered as duplicates, counted as such and queued nowhere', async () => {
    const backend: QueueBackend = {
      commit: (routes) => {
        const seen = new Set(['elsewhere']);
        return {
          routes: routes.map((route) => ({ ...route, events: route.events.filter((e) => !seen.has(e.id)) })),
          duplicates: [...new Set(routes.flatMap((route) => route.events.map((e) => e.id)))].filter((id) => seen.has(id)),
        };
      },
      storeFor: () => new MemoryStore(),
    };
    const h = await start(backend);
    const answer = await post(h.ingest.url, envelope([event('elsewhere'), event('here')]));
    expect(answer.text).toBe('{"accepted":1,"duplicates":1}');
    expect(h.heard).toMatchObject({ events: [1], duplicates: [1] });
    for (const receiver of h.receivers) {
      await receiver.waitForEvents((events) => events.some((e) => e.id === 'here'));
      expect(receiver.events().map((e) => e.id)).toEqual(['here']);
    }
  });
});
