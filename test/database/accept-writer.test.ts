// The ingest's commit (AcceptWriter over rn_accept) against a real PostgreSQL: one event to one endpoint, one
// event to many, several requests committed together; endpoints whose rows do not exist yet; duplicates, from
// before and within a transaction; positions that follow commit order; the owners woken by one notification per
// transaction (more when its endpoints' names need them); two replicas committing to the same endpoints at once
// without a deadlock, a gap or an event queued twice.
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AcceptWriter, storedId } from '../../src/database/accept-writer.ts';
import { migrate } from '../../src/database/migrate.ts';
import { openPool } from '../../src/database/pool.ts';
import { WORK_CHANNEL } from '../../src/database/work-listener.ts';
import type { Route } from '../../src/notifications/queue-store.ts';
import type { QueuedEvent } from '../../src/notifications/sink.ts';
import { postgresBinaries, queryOnce, startPostgres, type TestPostgres } from '../support/postgres.ts';
import { eventually } from '../support/wait.ts';

const bin = postgresBinaries();

const event = (id: string): QueuedEvent => ({ id, json: JSON.stringify({ id, action: 'push' }), acceptedAt: 1_000 });
const routes = (events: QueuedEvent[], ...endpoints: string[]): Route[] => endpoints.map((endpoint) => ({ endpoint, events }));

describe.skipIf(!bin)('AcceptWriter (rn_accept on a real PostgreSQL)', { timeout: 60_000 }, () => {
  let db: TestPostgres;
  beforeAll(async () => {
    db = await startPostgres({ fsync: false });
  }, 60_000);
  afterAll(() => db?.stop());

  /** A fresh database with the schema, a pool on it and a writer over the pool. */
  async function fresh(): Promise<{ url: string; pool: pg.Pool; writer: AcceptWriter }> {
    const url = await db.createDatabase();
    const pool = openPool(url, { applicationName: 'accept-writer-test' });
    await migrate(pool);
    return { url, pool, writer: new AcceptWriter(pool) };
  }

  /** A connection LISTENing on the work channel, and the payloads it has heard so far, in order. */
  async function listen(url: string): Promise<{ woken: string[]; listener: pg.Client }> {
    const listener = new pg.Client(url);
    await listener.connect();
    const woken: string[] = [];
    listener.on('notification', (n) => woken.push(n.payload!));
    await listener.query(`LISTEN ${WORK_CHANNEL}`);
    return { woken, listener };
  }

  /** Each endpoint's queue: the event ids by position, and the position its next event takes. */
  async function queues(url: string): Promise<Record<string, { ids: string[]; next: number }>> {
    const rows = await queryOnce<{ endpoint: string; pos: string; id: string }>(url,
      'SELECT d.endpoint, d.pos, e.id FROM deliveries d JOIN events e ON e.seq = d.seq ORDER BY d.endpoint, d.pos');
    const next = await queryOnce<{ name: string; next_pos: string }>(url, 'SELECT name, next_pos FROM queues ORDER BY name');
    const out: Record<string, { ids: string[]; next: number }> = {};
    for (const q of next) out[q.name] = { ids: [], next: Number(q.next_pos) };
    for (const row of rows) {
      const queue = out[row.endpoint]!;
      expect(Number(row.pos)).toBe(queue.ids.length + 1); // positions 1, 2, 3… without a gap
      queue.ids.push(row.id);
    }
    return out;
  }

  it('one event to one endpoint: the rows of a new endpoint are made, positions follow the commits; a resend is a duplicate', async () => {
    const { url, pool, writer } = await fresh();
    try {
      expect(await writer.accept(routes([event('a1')], 'one'))).toEqual([]);
      expect(await writer.accept(routes([event('a2')], 'one'))).toEqual([]);
      expect(await writer.accept(routes([event('a1')], 'one'))).toEqual(['a1']);
      expect(await queues(url)).toEqual({ one: { ids: ['a1', 'a2'], next: 3 } });
      expect(await queryOnce(url, 'SELECT name FROM endpoints')).toEqual([{ name: 'one' }]);
      expect(await queryOnce(url, 'SELECT count(*)::int AS n FROM events')).toEqual([{ n: 2 }]); // the resend stored nothing
    } finally {
      await pool.end();
    }
  });

  it('an id the database could not keep as it is (a NUL character; longer than an index entry) is kept by its hash: the requests sharing its transaction are committed, a resend is a duplicate', async () => {
    const { url, pool, writer } = await fresh();
    try {
      const nul = 'nul\u0000id';
      const long = 'x'.repeat(3_000);
      // At once, as requests that arrive together share a transaction (the last two here): before, an id PostgreSQL
      // refused failed the requests beside it too.
      const results = await Promise.all([writer.accept(routes([event(nul)], 'one')), writer.accept(routes([event('plain')], 'one')), writer.accept(routes([event(long)], 'one'))]);
      expect(results).toEqual([[], [], []]);
      expect(await writer.accept(routes([event(nul), event(long), event('plain')], 'one'))).toEqual([nul, long, 'plain']);
      expect(await queues(url)).toEqual({ one: { ids: [storedId(nul), 'plain', storedId(long)], next: 4 } });
      expect([storedId(nul), storedId(long)]).toEqual([expect.stringMatching(/^sha256:[0-9a-f]{64}$/), expect.stringMatching(/^sha256:[0-9a-f]{64}$/)]);
      expect(storedId('x'.repeat(1_024))).toBe('x'.repeat(1_024));
      // Lone surrogates would reach PostgreSQL as U+FFFD, all alike: each of these is its own event.
      const lone = ['s\ud800', 's\udbff', 's\ufffd'];
      expect(await writer.accept(routes(lone.map((id) => event(id)), 'one'))).toEqual([]);
      expect((await queues(url)).one!.ids.slice(-3)).toEqual(lone.map(storedId));
      expect(new Set(lone.map(storedId)).size).toBe(3);
    } finally {
      await pool.end();
    }
  });

  it('one event to many endpoints, some new: stored once, a position in each queue, the owners woken by one notification', async () => {
    const { url, pool, writer } = await fresh();
    const { woken, listener } = await listen(url);
    try {
      await writer.accept(routes([event('b1')], 'm', 'k'));
      await writer.accept(routes([event('b2')], 'k', 'z', 'm', 'a'));
      await writer.accept(routes([event('b3')], 'a'));
      expect(await queues(url)).toEqual({
        a: { ids: ['b2', 'b3'], next: 3 },
        k: { ids: ['b1', 'b2'], next: 3 },
        m: { ids: ['b1', 'b2'], next: 3 },
        z: { ids: ['b2'], next: 2 },
      });
      expect(await queryOnce(url, 'SELECT count(*)::int AS n FROM events')).toEqual([{ n: 3 }]);
      // One notification per transaction, its endpoints' names separated by spaces (every replica reads each one).
      await eventually(() => expect(woken).toHaveLength(3));
      expect(woken.map((payload) => payload.split(' ').toSorted())).toEqual([['k', 'm'], ['a', 'k', 'm', 'z'], ['a']]);
      expect(await writer.accept(routes([event('b2')], 'k', 'z'))).toEqual(['b2']);
      expect((await queues(url)).z).toEqual({ ids: ['b2'], next: 2 });
    } finally {
      await listener.end();
      await pool.end();
    }
  });

  it('endpoints whose names together pass a notification\'s 8,000 bytes: as few notifications as fit, each name once', async () => {
    const { url, pool, writer } = await fresh();
    const { woken, listener } = await listen(url);
    // 60 names of 250 bytes: 15,059 with the spaces between them.
    const names = Array.from({ length: 60 }, (_, i) => `${String(i).padStart(3, '0')}-${'n'.repeat(246)}`);
    try {
      await writer.accept(routes([event('d1')], ...names)); // one event: rn_accept's single-event path
      await eventually(() => expect(woken.flatMap((payload) => payload.split(' ')).toSorted()).toEqual(names));
      expect(woken.map((payload) => Buffer.byteLength(payload))).toEqual([27 * 251 - 1, 28 * 251 - 1, 5 * 251 - 1]);
      woken.length = 0;
      // Two requests in one transaction: the general path.
      await Promise.all([writer.accept(routes([event('d2')], ...names)), writer.accept(routes([event('d3')], ...names.slice(0, 10)))]);
      await eventually(() => expect(woken.flatMap((payload) => payload.split(' ')).toSorted()).toEqual(names));
      expect(woken).toHaveLength(3);
      expect(Object.values(await queues(url)).map((queue) => queue.ids.length).toSorted((a, b) => a - b)).toEqual([...Array(50).fill(2), ...Array(10).fill(3)]);
    } finally {
      await listener.end();
      await pool.end();
    }
  });

  it('requests committed together: each endpoint takes its events in the order the requests came, new ids queued, old ones duplicates', async () => {
    const { url, pool, writer } = await fresh();
    try {
      await writer.accept(routes([event('c0')], 'x'));
      // Added in one turn of the event loop: one transaction (the general path of rn_accept).
      const answers = await Promise.all([
        writer.accept(routes([event('c1'), event('c2')], 'x', 'y')),
        writer.accept([...routes([event('c0'), event('c3')], 'x'), ...routes([event('c3')], 'new')]),
        writer.accept(routes([event('c4'), event('c2')], 'y', 'new')),
      ]);
      expect(answers).toEqual([[], ['c0'], ['c2']]);
      expect(await queues(url)).toEqual({
        new: { ids: ['c3', 'c4'], next: 3 },
        x: { ids: ['c0', 'c1', 'c2', 'c3'], next: 5 },
        y: { ids: ['c1', 'c2', 'c4'], next: 4 },
      });
      expect(await queryOnce(url, 'SELECT count(*)::int AS n FROM events')).toEqual([{ n: 5 }]);
      expect(await Promise.all([writer.accept(routes([event('c1'), event('c5')], 'y')), writer.accept(routes([event('c5')], 'x'))])).toEqual([['c1'], ['c5']]);
      expect((await queues(url)).y).toEqual({ ids: ['c1', 'c2', 'c4', 'c5'], next: 5 });
    } finally {
      await pool.end();
    }
  });

  it('two replicas committing to the same endpoints at once: no deadlock, no gap, each event once in each queue', async () => {
    const { url, pool, writer } = await fresh();
    const otherPool = openPool(url, { applicationName: 'accept-writer-test-2' });
    const other = new AcceptWriter(otherPool);
    const names = ['p', 'q', 'r', 's'];
    try {
      // Each replica posts 60 requests, four at a time (committed together), routed to a rotating set of endpoints
      // given in a different order on each: one event to one, one event to several, several events to several.
      const post = async (w: AcceptWriter, prefix: string): Promise<void> => {
        for (let i = 0; i < 60; i += 4) {
          await Promise.all([0, 1, 2, 3].map((j) => {
            const n = i + j;
            const targets = names.filter((_, k) => (n + k) % 3 !== 0);
            const order = prefix === 'L' ? targets : targets.toReversed();
            const events = n % 5 === 0 ? [event(`${prefix}${n}a`), event(`${prefix}${n}b`)] : [event(`${prefix}${n}`)];
            return w.accept(routes(events, ...(n % 7 === 0 ? order.slice(0, 1) : order)));
          }));
        }
      };
      await Promise.all([post(writer, 'L'), post(other, 'R')]);
      const result = await queues(url); // checks every queue is gapless
      for (const name of names) {
        const ids = result[name]!.ids;
        expect(new Set(ids).size).toBe(ids.length);
        expect(result[name]!.next).toBe(ids.length + 1);
        // Each replica's events keep their posting order within the queue.
        for (const prefix of ['L', 'R']) {
          const mine = ids.filter((id) => id.startsWith(prefix)).map((id) => Number.parseInt(id.slice(1), 10));
          expect(mine).toEqual(mine.toSorted((a, b) => a - b));
        }
      }
      const total = Object.values(result).reduce((sum, q) => sum + q.ids.length, 0);
      expect(total).toBeGreaterThan(150);
    } finally {
      await otherPool.end();
      await pool.end();
    }
  });
});
