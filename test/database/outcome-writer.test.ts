// The replica-wide outcome writer against a real PostgreSQL: outcomes of many endpoints reached together go in one
// call, in order; each is fenced by its own lease; dead letters keep their reason; a call that fails is retried for
// the outcomes still current and gives the others up; and rn_record never deadlocks with a lease round.
import type pg from 'pg';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { migrate } from '../../src/database/migrate.ts';
import { type Outcome, OutcomeWriter } from '../../src/database/outcome-writer.ts';
import { openPool } from '../../src/database/pool.ts';
import { postgresBinaries, queryOnce, startPostgres, type TestPostgres } from '../support/postgres.ts';

const bin = postgresBinaries();
const logger = pino({ level: 'silent' });
const LEASE = { epoch: 1, validUntil: Number.POSITIVE_INFINITY };

describe.skipIf(!bin)('OutcomeWriter (a real PostgreSQL)', { timeout: 60_000 }, () => {
  let db: TestPostgres;
  beforeAll(async () => {
    db = await startPostgres({ fsync: false });
  }, 60_000);
  afterAll(() => db?.stop());

  /** A fresh database where `names` are owned by replica r1 at epoch 1 and each owes `owed` events (positions 1…owed). */
  async function seeded(names: readonly string[], owed: number): Promise<{ url: string; pool: pg.Pool }> {
    const url = await db.createDatabase();
    const pool = openPool(url, { applicationName: 'outcome-writer-test' });
    await migrate(pool);
    await pool.query(`INSERT INTO endpoints (name, owner, epoch, lease_until) SELECT x, 'r1', 1, now() + interval '1 hour' FROM unnest($1::text[]) AS t(x)`, [names]);
    await pool.query(`INSERT INTO queues (name, next_pos) SELECT x, $2::bigint + 1 FROM unnest($1::text[]) AS t(x)`, [names, owed]);
    await pool.query(`INSERT INTO events (id, json, accepted_at) SELECT 'e' || i, '{}', i FROM generate_series(1, $1::int) AS i`, [owed]);
    await pool.query(`INSERT INTO deliveries (endpoint, pos, seq) SELECT x, i, i FROM unnest($1::text[]) AS t(x), generate_series(1, $2::int) AS i`, [names, owed]);
    return { url, pool };
  }

  /** An outcome whose settlement is recorded in `settled`. */
  function outcome(endpoint: string, positions: number[], settled: Map<string, (boolean | undefined)[]>, extra: Partial<Outcome> = {}): Outcome {
    return {
      endpoint, lease: LEASE, positions, current: () => true,
      settle: (written) => settled.set(endpoint, [...(settled.get(endpoint) ?? []), written]),
      ...extra,
    };
  }

  it('writes the outcomes of many endpoints reached together in one call; events nobody owes any more are deleted', async () => {
    const names = Array.from({ length: 40 }, (_, i) => `team/hook-${i}`);
    const { url, pool } = await seeded(names, 3);
    try {
      const writer = new OutcomeWriter({ pool, replicaId: 'r1', logger });
      const calls = vi.spyOn(pool, 'query');
      const settled = new Map<string, (boolean | undefined)[]>();
      for (const name of names) writer.add(outcome(name, [1, 2], settled));
      for (const name of names) writer.add(outcome(name, [3], settled));
      await writer.drained();
      expect(calls).toHaveBeenCalledTimes(1);
      expect([...settled.values()].flat()).toEqual(Array.from({ length: 80 }, () => true));
      expect(await queryOnce(url, `SELECT (SELECT count(*) FROM deliveries)::int AS d, (SELECT count(*) FROM events)::int AS e,
        (SELECT min(done) FROM endpoints)::int AS lo, (SELECT max(done) FROM endpoints)::int AS hi`)).toEqual([{ d: 0, e: 0, lo: 3, hi: 3 }]);
    } finally {
      await pool.end();
    }
  });

  it('an outcome\'s positions, in any order and not contiguous, are each recorded and nothing between them; a long queue is read by key', async () => {
    const { url, pool } = await seeded(['long', 'short'], 400);
    try {
      const writer = new OutcomeWriter({ pool, replicaId: 'r1', logger });
      const settled = new Map<string, (boolean | undefined)[]>();
      writer.add(outcome('long', [300, 5, 120], settled));
      writer.add(outcome('short', [2], settled, { deadLetter: { reason: 'gone', at: 7 } }));
      await writer.drained();
      expect([...settled.values()].flat()).toEqual([true, true]);
      const left = await queryOnce<{ endpoint: string; n: number; missing: number[] }>(url, `SELECT endpoint, count(*)::int AS n,
        array(SELECT p FROM generate_series(1, 400) AS p EXCEPT SELECT pos FROM deliveries x WHERE x.endpoint = d.endpoint ORDER BY 1)::int[] AS missing
        FROM deliveries d GROUP BY endpoint ORDER BY endpoint`);
      expect(left).toEqual([{ endpoint: 'long', n: 397, missing: [5, 120, 300] }, { endpoint: 'short', n: 399, missing: [2] }]);
      expect(await queryOnce(url, 'SELECT name, done::int FROM endpoints ORDER BY name')).toEqual([{ name: 'long', done: 3 }, { name: 'short', done: 1 }]);
      expect(await queryOnce(url, 'SELECT endpoint, seq::int, reason FROM dead_letters')).toEqual([{ endpoint: 'short', seq: 2, reason: 'gone' }]);
    } finally {
      await pool.end();
    }
  });

  it('an outcome added in the continuation of the last call\'s settlement is written too', async () => {
    const { url, pool } = await seeded(['a'], 2);
    try {
      const writer = new OutcomeWriter({ pool, replicaId: 'r1', logger });
      const settled = new Map<string, (boolean | undefined)[]>();
      const second = new Promise<boolean | undefined>((resolve) => {
        writer.add(outcome('a', [1], settled, {
          // The next attempt's outcome comes from a promise continuation, before anything chained on the writer's run.
          settle: () => void Promise.resolve().then(() => writer.add(outcome('a', [2], settled, { settle: resolve }))),
        }));
      });
      const written = await Promise.race([second, new Promise<'stranded'>((resolve) => setTimeout(() => resolve('stranded'), 5_000).unref())]);
      expect(written).toBe(true);
      expect(await queryOnce(url, 'SELECT count(*)::int AS n FROM deliveries')).toEqual([{ n: 0 }]);
    } finally {
      await pool.end();
    }
  });

  it('fences each outcome by its own lease, and moves dead letters with their reason', async () => {
    const { url, pool } = await seeded(['a', 'b', 'c'], 2);
    try {
      await pool.query(`UPDATE endpoints SET owner = 'r2', epoch = 2 WHERE name = 'b'`); // taken over
      const writer = new OutcomeWriter({ pool, replicaId: 'r1', logger });
      const settled = new Map<string, (boolean | undefined)[]>();
      writer.add(outcome('a', [1], settled));
      writer.add(outcome('b', [1, 2], settled));
      writer.add(outcome('c', [1, 2], settled, { deadLetter: { reason: 'HTTP 500', at: 42 } }));
      await writer.drained();
      expect(Object.fromEntries(settled)).toEqual({ a: [true], b: [false], c: [true] });
      expect(await queryOnce(url, 'SELECT endpoint, pos::int FROM deliveries ORDER BY endpoint, pos')).toEqual([
        { endpoint: 'a', pos: 2 }, { endpoint: 'b', pos: 1 }, { endpoint: 'b', pos: 2 },
      ]);
      expect(await queryOnce(url, 'SELECT endpoint, seq::int, reason, at::int FROM dead_letters ORDER BY seq')).toEqual([
        { endpoint: 'c', seq: 1, reason: 'HTTP 500', at: 42 }, { endpoint: 'c', seq: 2, reason: 'HTTP 500', at: 42 },
      ]);
      expect(await queryOnce(url, 'SELECT name, done::int FROM endpoints ORDER BY name')).toEqual([
        { name: 'a', done: 1 }, { name: 'b', done: 0 }, { name: 'c', done: 2 },
      ]);
      // Both events are still owed by b (and kept as c's dead letters).
      expect(await queryOnce(url, 'SELECT count(*)::int AS n FROM events')).toEqual([{ n: 2 }]);
    } finally {
      await pool.end();
    }
  });

  it('a call that fails is retried for the outcomes still current, in order; the others are given up', async () => {
    const { url, pool } = await seeded(['a', 'b'], 2);
    try {
      const writer = new OutcomeWriter({ pool, replicaId: 'r1', logger, retryMs: 50 });
      const real = pool.query.bind(pool) as (...args: unknown[]) => Promise<unknown>;
      let failures = 2;
      let bCurrent = true;
      vi.spyOn(pool, 'query').mockImplementation(((...args: unknown[]) => {
        if (failures === 0) return real(...args);
        // b's lease moves on during the outage (the second failure): the next owner sends its event again
        if (--failures === 0) bCurrent = false;
        return Promise.reject(new Error('connection terminated'));
      }) as never);
      const settled = new Map<string, (boolean | undefined)[]>();
      writer.add(outcome('a', [1], settled));
      writer.add(outcome('b', [1], settled, { current: () => bCurrent }));
      writer.add(outcome('a', [2], settled));
      await writer.drained();
      expect(failures).toBe(0);
      expect(Object.fromEntries(settled)).toEqual({ a: [true, true], b: [undefined] });
      expect(await queryOnce(url, 'SELECT endpoint, pos::int FROM deliveries ORDER BY endpoint, pos')).toEqual([
        { endpoint: 'b', pos: 1 }, { endpoint: 'b', pos: 2 },
      ]);
    } finally {
      await pool.end();
    }
  });

  it('tells each outcome whether the failed call could not reach the database or was refused by it', async () => {
    const { pool } = await seeded(['a'], 2);
    try {
      const writer = new OutcomeWriter({ pool, replicaId: 'r1', logger, retryMs: 10 });
      const errors = [new Error('Connection terminated unexpectedly'), Object.assign(new Error('invalid byte sequence'), { code: '22021' })];
      vi.spyOn(pool, 'query').mockImplementation((() => Promise.reject(errors.shift())) as never);
      const told: boolean[] = [];
      const settled = new Map<string, (boolean | undefined)[]>();
      writer.add(outcome('a', [1], settled, { current: (unavailable: boolean) => (told.push(unavailable), unavailable) }));
      await writer.drained();
      expect(told).toEqual([true, false]); // retried while unreachable, given up once refused
      expect(Object.fromEntries(settled)).toEqual({ a: [undefined] });
    } finally {
      await pool.end();
    }
  });

  it('never deadlocks with a lease round renewing the same endpoints (both lock them in name order)', async () => {
    // Rows stored in the reverse of name order: a round renewing in scan order would lock them the other way round.
    const names = Array.from({ length: 200 }, (_, i) => `e-${String(199 - i).padStart(3, '0')}`);
    const { url, pool } = await seeded(names, 30);
    const rounds = openPool(url, { applicationName: 'outcome-writer-test-rounds', max: 1 });
    try {
      const failed: string[] = []; // the writer retries a deadlocked call: count what it says
      const writer = new OutcomeWriter({ pool, replicaId: 'r1', logger: pino({ level: 'debug' }, { write: (line: string) => failed.push(line) }), retryMs: 10 });
      const settled = new Map<string, (boolean | undefined)[]>();
      let stop = false;
      const renewing = (async () => {
        let n = 0;
        while (!stop) {
          await rounds.query('SELECT count(*) FROM rn_leases($1, $2, $3)', ['r1', names, 3_600_000]);
          n++;
        }
        return n;
      })();
      for (let pos = 1; pos <= 30; pos++) {
        for (const name of names) writer.add(outcome(name, [pos], settled));
        await writer.drained();
      }
      stop = true;
      expect(await renewing).toBeGreaterThan(0);
      expect(failed).toEqual([]);
      expect([...settled.values()].flat().every((written) => written === true)).toBe(true);
      expect(await queryOnce(url, 'SELECT count(*)::int AS n FROM deliveries')).toEqual([{ n: 0 }]);
    } finally {
      await rounds.end();
      await pool.end();
    }
  });
});
