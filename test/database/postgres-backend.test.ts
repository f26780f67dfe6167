// The PostgreSQL backend in one process, against a real PostgreSQL: what a commit stores and what it refuses,
// duplicates across replicas, delivery by lease in order, fair shares, failover after the lease duration, the
// fence that keeps a replica which lost its lease from committing an outcome, and a clean handover on close.
import postgres from 'pg';
import { pino } from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { PostgresBackend } from '../../src/database/postgres-backend.ts';
import { endpointConfig } from '../../src/notifications/endpoint.ts';
import { EndpointSet } from '../../src/notifications/endpoint-set.ts';
import { makeEvents } from '../support/events.ts';
import { postgresBinaries, queryOnce, startPostgres, type TestPostgres } from '../support/postgres.ts';
import { TestReceiver } from '../support/receiver.ts';
import { eventually, until } from '../support/wait.ts';

const bin = postgresBinaries();
const logger = pino({ level: 'silent' });
const LEASE_MS = 3_000;

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  while (cleanups.length > 0) await Promise.resolve(cleanups.pop()!()).catch(() => {});
});

describe.skipIf(!bin)('PostgresBackend', { timeout: 60_000 }, () => {
  let pg: TestPostgres;
  beforeAll(async () => {
    pg = await startPostgres({ fsync: false });
  }, 60_000);
  afterAll(() => pg?.stop());

  /** A replica: a backend on `url` and an endpoint set over it, closed at cleanup (leases released). */
  async function replica(url: string, id: string, options: { lease?: number } = {}): Promise<{ backend: PostgresBackend; set: EndpointSet }> {
    const backend = await PostgresBackend.open({ url, replicaId: id, leaseDurationMs: options.lease ?? LEASE_MS, logger });
    const set = new EndpointSet({ backend });
    cleanups.push(async () => {
      await set.close(AbortSignal.timeout(2000));
      await backend.close();
    });
    return { backend, set };
  }

  async function receiver(): Promise<TestReceiver> {
    const r = await TestReceiver.start();
    cleanups.push(() => r.close());
    return r;
  }

  /** A receiver that answers 200, but holds its answer to the first request until `release()` is called. */
  async function heldReceiver(): Promise<{ r: TestReceiver; release: () => void }> {
    const r = await receiver();
    let release: () => void = () => {};
    const held = new Promise<void>((resolve) => (release = resolve));
    r.respond(async (req) => {
      if (req.seq === 0) await held;
      return 200;
    });
    return { r, release };
  }

  const fast = (url: string, extra = {}): ReturnType<typeof endpointConfig> => endpointConfig({ url, threshold: 3, backoffMs: 20, timeoutMs: 500, ...extra });
  const ids = (r: TestReceiver): string[] => r.events({ acceptedOnly: true }).map((e) => e.id);

  it('delivers in commit order, one copy per event; the database keeps only what is owed', async () => {
    const url = await pg.createDatabase();
    const { set } = await replica(url, 'r1');
    const r = await receiver();
    set.apply('a', fast(r.url, { maxBatchEvents: 7 }));
    const events = makeEvents(250, 'ord');
    for (let i = 0; i < events.length; i += 10) expect(await set.write(events.slice(i, i + 10))).toEqual({ routed: 10, duplicates: [] });
    await r.waitFor(() => ids(r).length >= 250, 20_000);
    expect(ids(r)).toEqual(events.map((e) => e.id));
    await eventually(async () => expect(await queryOnce(url, 'SELECT (SELECT count(*) FROM deliveries)::int AS d, (SELECT count(*) FROM events)::int AS e')).toEqual([{ d: 0, e: 0 }]));
    const [row] = await queryOnce<{ next_pos: string; done: string }>(url, 'SELECT q.next_pos, e.done FROM endpoints e JOIN queues q USING (name) WHERE name = $1', ['a']);
    expect([Number(row!.next_pos), Number(row!.done)]).toEqual([251, 250]);
  });

  it('an id committed on one replica is a duplicate on another, and stored once', async () => {
    const url = await pg.createDatabase();
    const one = await replica(url, 'r1');
    const two = await replica(url, 'r2');
    const r = await receiver();
    one.set.apply('a', fast(r.url));
    two.set.apply('a', fast(r.url));
    const [event] = makeEvents(1, 'twice');
    const results = await Promise.all([one.set.write([event!]), two.set.write([event!])]);
    expect(results.map((x) => x.duplicates.length).sort()).toEqual([0, 1]);
    await r.waitFor(() => ids(r).length >= 1);
    await eventually(async () => expect(await queryOnce(url, 'SELECT count(*)::int AS n FROM recent_ids')).toEqual([{ n: 1 }]));
    // One more through the other replica proves nothing else was queued before it.
    await one.set.write(makeEvents(1, 'marker'));
    await r.waitFor(() => ids(r).includes('marker-0'));
    expect(ids(r)).toEqual(['twice-0', 'marker-0']);
  });

  it('one request routed to many endpoints is paged in by one query and its outcomes recorded by few transactions', async () => {
    const url = await pg.createDatabase();
    const { backend, set } = await replica(url, 'r1');
    const r = await receiver();
    const names = Array.from({ length: 30 }, (_, i) => `many-${i}`);
    for (const name of names) set.apply(name, fast(r.url));
    await eventually(async () => expect(await queryOnce(url, `SELECT count(*)::int AS n FROM endpoints WHERE owner = 'r1'`)).toEqual([{ n: 30 }]));
    const queries = vi.spyOn(backend.pool, 'query');
    const named = (name: string): number => queries.mock.calls.filter(([q]) => typeof q === 'object' && (q as { name?: string }).name === name).length;
    // The first outcome's transaction is held up (it locks the endpoints' rows, this one among them) until every
    // endpoint has its event: the outcomes reached meanwhile must share the next transaction, not take one each.
    const locker = new postgres.Client({ connectionString: url });
    await locker.connect();
    cleanups.push(() => locker.end());
    await locker.query(`BEGIN; SELECT 1 FROM endpoints WHERE name = 'many-0' FOR NO KEY UPDATE`);
    await set.write(makeEvents(1, 'fan'));
    await r.waitFor(() => r.events({ acceptedOnly: true }).length >= 30, 10_000);
    await eventually(async () => expect(await queryOnce(url, "SELECT count(*)::int AS n FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE '%rn_record%'")).toEqual([{ n: 1 }]));
    await locker.query('COMMIT');
    await eventually(async () => expect(await queryOnce(url, 'SELECT count(*)::int AS n FROM deliveries')).toEqual([{ n: 0 }]));
    expect(named('rn-pages')).toBe(1);
    expect(named('rn-record')).toBeLessThanOrEqual(3);
    console.log(`[measure] one event to 30 endpoints: ${named('rn-pages')} page query, ${named('rn-record')} outcome transactions`);
  });

  it('a trickle (one event per request, each waited for, as one registry posts) is delivered in batches: far fewer page reads and outcome transactions than events', async () => {
    const url = await pg.createDatabase();
    const { backend, set } = await replica(url, 'r1');
    const r = await receiver();
    set.apply('trickle', fast(r.url, { maxBatchEvents: 100 }));
    await eventually(async () => expect(await queryOnce(url, `SELECT count(*)::int AS n FROM endpoints WHERE owner = 'r1'`)).toEqual([{ n: 1 }]));
    const queries = vi.spyOn(backend.pool, 'query');
    const named = (name: string): number => queries.mock.calls.filter(([q]) => typeof q === 'object' && (q as { name?: string }).name === name).length;
    const events = makeEvents(200, 'drip');
    for (const event of events) expect(await set.write([event])).toEqual({ routed: 1, duplicates: [] });
    await r.waitFor(() => ids(r).length >= events.length, 20_000);
    expect(ids(r)).toEqual(events.map((e) => e.id));
    await eventually(async () => expect(await queryOnce(url, 'SELECT count(*)::int AS n FROM deliveries')).toEqual([{ n: 0 }]));
    // Without the 5 ms spacing each event took its own page read and outcome transaction (here 117-122 of each against 37 with it).
    console.log(`[measure] 200 events one at a time: ${named('rn-pages')} page queries, ${named('rn-record')} outcome transactions, ${r.requests.length} deliveries`);
    expect(named('rn-pages')).toBeLessThan(80);
    expect(named('rn-record')).toBeLessThan(80);
  });

  it('requests arriving together are committed together (group commit); an id two of them carry is queued once, a duplicate for the later one', async () => {
    const url = await pg.createDatabase();
    const { backend, set } = await replica(url, 'r1');
    const r = await receiver();
    set.apply('group', fast(r.url, { maxBatchEvents: 100 }));
    const queries = vi.spyOn(backend.pool, 'query');
    const accepts = (): number => queries.mock.calls.filter(([q]) => typeof q === 'object' && (q as { name?: string }).name === 'rn-accept').length;
    const events = makeEvents(8, 'together');
    const results = await Promise.all(events.map((event) => set.write([event])));
    expect(results).toEqual(events.map(() => ({ routed: 1, duplicates: [] })));
    expect(accepts(), 'eight requests in one transaction').toBe(1);
    // The same id in two requests of one transaction: the first queues it, the second hears it was a duplicate.
    const [shared] = makeEvents(1, 'shared');
    const both = await Promise.all([set.write([shared!]), set.write([shared!])]);
    expect(accepts()).toBe(2);
    expect(both).toEqual([{ routed: 1, duplicates: [] }, { routed: 0, duplicates: ['shared-0'] }]);
    await r.waitFor(() => ids(r).length >= 9, 10_000);
    await eventually(async () => expect(await queryOnce(url, 'SELECT count(*)::int AS n FROM deliveries')).toEqual([{ n: 0 }]));
    expect(ids(r)).toEqual([...events.map((e) => e.id), 'shared-0']);
  });

  it('two replicas share the endpoints (fair shares), each delivers its own in order', async () => {
    const url = await pg.createDatabase();
    const one = await replica(url, 'r1');
    const two = await replica(url, 'r2');
    const receivers = await Promise.all([0, 1, 2, 3].map(() => receiver()));
    for (const set of [one.set, two.set]) receivers.forEach((r, i) => set.apply(`ep${i}`, fast(r.url)));
    await eventually(async () => {
      const owners = await queryOnce<{ owner: string; n: number }>(url, 'SELECT owner, count(*)::int AS n FROM endpoints GROUP BY owner ORDER BY owner');
      expect(owners).toEqual([{ owner: 'r1', n: 2 }, { owner: 'r2', n: 2 }]);
    }, 10_000);
    const events = makeEvents(40, 'shared');
    for (let i = 0; i < 40; i += 4) await (i % 8 === 0 ? one : two).set.write(events.slice(i, i + 4));
    for (const r of receivers) {
      await r.waitFor(() => ids(r).length >= 40, 10_000);
      expect(ids(r)).toEqual(events.map((e) => e.id));
    }
  });

  it('a replica joining takes over its share only once the owner is idle: never two requests in flight for one endpoint, nothing sent twice', async () => {
    const url = await pg.createDatabase();
    const names = ['a', 'b'];
    const inFlight = new Map(names.map((name) => [name, 0]));
    const most = new Map(names.map((name) => [name, 0]));
    const receivers = await Promise.all(names.map(async (name) => {
      const r = await receiver();
      r.respond(async () => {
        inFlight.set(name, inFlight.get(name)! + 1);
        most.set(name, Math.max(most.get(name)!, inFlight.get(name)!));
        await new Promise((resolve) => setTimeout(resolve, 1_500)); // a slow receiver: an attempt spans lease rounds
        inFlight.set(name, inFlight.get(name)! - 1);
        return 200;
      });
      return r;
    }));
    const config = (i: number): ReturnType<typeof fast> => fast(receivers[i]!.url, { timeoutMs: 3_000 });
    const one = await replica(url, 'r1');
    names.forEach((name, i) => one.set.apply(name, config(i)));
    await eventually(async () => expect(await queryOnce(url, "SELECT count(*)::int AS n FROM endpoints WHERE owner = 'r1'")).toEqual([{ n: 2 }]));
    const events = makeEvents(4, 'scale');
    await one.set.write(events);
    await Promise.all(receivers.map((r) => r.waitFor((requests) => requests.length === 1)));
    // r2 joins while r1 has an attempt in flight on both: r1 is over its share (1) by one endpoint.
    const two = await replica(url, 'r2');
    names.forEach((name, i) => two.set.apply(name, config(i)));
    await eventually(async () => expect(await queryOnce(url, 'SELECT owner, count(*)::int AS n FROM endpoints GROUP BY owner ORDER BY owner')).toEqual([{ owner: 'r1', n: 1 }, { owner: 'r2', n: 1 }]), 10_000);
    for (const r of receivers) {
      await r.waitFor(() => ids(r).length >= 4, 20_000);
      expect(ids(r)).toEqual(events.map((e) => e.id)); // each once, in order: r2 began where r1's outcomes ended
    }
    expect(Object.fromEntries(most)).toEqual({ a: 1, b: 1 });
    await eventually(async () => expect(await queryOnce(url, 'SELECT count(*)::int AS n FROM deliveries')).toEqual([{ n: 0 }]));
  });

  it('outcomes reached under a lease that was taken over are fenced off: nothing of them is committed', async () => {
    const url = await pg.createDatabase();
    const { r, release } = await heldReceiver();
    const one = await replica(url, 'r1');
    one.set.apply('a', fast(r.url, { timeoutMs: 1_000 }));
    await eventually(async () => expect(await queryOnce(url, 'SELECT owner FROM endpoints')).toEqual([{ owner: 'r1' }]));
    await one.set.write(makeEvents(3, 'fo'));
    await r.waitFor((requests) => requests.length === 1); // r1 is sending fo-0 and waits for the answer
    // The lease moves on under r1 (a new epoch, another owner), as a takeover after r1 was cut off would.
    await queryOnce(url, "UPDATE endpoints SET owner = 'r2', epoch = epoch + 1, lease_until = now() + interval '1 hour'");
    release(); // r1's answer arrives now; whatever r1 records from here on carries the old epoch
    const two = await replica(url, 'r2');
    two.set.apply('a', fast(r.url));
    // r2 owns the endpoint and starts from what the database holds: every event, since none of r1's outcomes
    // could be committed (had one been, r2 would not send that event again).
    // What r1 sent before it learnt it was fenced off (how far it got is a race) comes first; then r2's, all three.
    const fromTwo = ['fo-0', 'fo-1', 'fo-2'];
    await r.waitFor(() => ids(r).length > 3 && ids(r).slice(-3).join() === fromTwo.join(), 10_000);
    expect(ids(r).slice(0, -3).every((id, i) => id === fromTwo[i]), `r1 sent a prefix: ${ids(r).join()}`).toBe(true);
    await eventually(async () => expect(await queryOnce(url, 'SELECT count(*)::int AS n FROM deliveries')).toEqual([{ n: 0 }]));
  });

  it('an outcome reached after the lease ran out in the database, but before anyone claimed it, is recorded: nothing is sent twice', async () => {
    const url = await pg.createDatabase();
    const { r, release } = await heldReceiver();
    const one = await replica(url, 'r1', { lease: 60_000 });
    one.set.apply('a', fast(r.url, { timeoutMs: 5_000 }));
    await eventually(async () => expect(await queryOnce(url, 'SELECT owner FROM endpoints')).toEqual([{ owner: 'r1' }]));
    await one.set.write(makeEvents(3, 'late'));
    await r.waitFor((requests) => requests.length === 1);
    // r1's renewal is late (a busy process): its lease ran out in the database, nobody claimed the endpoint.
    await queryOnce(url, "UPDATE endpoints SET lease_until = now() - interval '1 second'");
    release();
    await r.waitFor(() => ids(r).length >= 3, 10_000);
    await eventually(async () => expect(await queryOnce(url, 'SELECT count(*)::int AS n FROM deliveries')).toEqual([{ n: 0 }]));
    expect(ids(r)).toEqual(['late-0', 'late-1', 'late-2']);
    expect(await queryOnce(url, 'SELECT owner, epoch::int FROM endpoints')).toEqual([{ owner: 'r1', epoch: 1 }]);
  });

  it('outcomes that could not be written while the database was down longer than the lease are written once it is back: nothing stays owed behind newer events', async () => {
    const url = await pg.createDatabase();
    const r = await receiver();
    let killed: Promise<void> | undefined;
    r.respond(async (req) => {
      // The database goes down while the first event is being delivered: its outcome cannot be written.
      if (req.seq === 0) await (killed = pg.kill('SIGKILL'));
      return 200;
    });
    const one = await replica(url, 'r1');
    one.set.apply('a', fast(r.url));
    await eventually(async () => expect(await queryOnce(url, 'SELECT owner FROM endpoints')).toEqual([{ owner: 'r1' }]));
    await one.set.write(makeEvents(1, 'down'));
    await r.waitFor(() => ids(r).length === 1, 10_000);
    await killed;
    // Down for longer than the lease (3 s): the replica's own lease ran out here while the outcome waited.
    await new Promise((resolve) => setTimeout(resolve, LEASE_MS + 1_000));
    await pg.restart();
    // Nobody else claimed the endpoint: r1 renews it at the same epoch and goes on with newer events.
    await eventually(async () => expect(await one.set.write(makeEvents(1, 'up'))).toEqual({ routed: 1, duplicates: [] }), 10_000);
    await r.waitFor(() => ids(r).includes('up-0'), 10_000);
    await eventually(async () => expect(await queryOnce(url, 'SELECT count(*)::int AS n FROM deliveries')).toEqual([{ n: 0 }]), 10_000);
    expect(ids(r)).toEqual(['down-0', 'up-0']);
    expect(await queryOnce(url, 'SELECT owner, epoch::int FROM endpoints')).toEqual([{ owner: 'r1', epoch: 1 }]);
  });

  it('a replica that dies holding leases: another takes them within the lease duration and sends what is owed', async () => {
    const url = await pg.createDatabase();
    const r = await receiver();
    r.respond(() => 503);
    const one = await replica(url, 'r1');
    one.set.apply('a', fast(r.url, { backoffMs: 60_000 }));
    await one.set.write(makeEvents(5, 'dead'));
    await r.waitFor((requests) => requests.length >= 1);
    // r1 "dies": its rounds stop, nothing is released (no close), its connections stay idle.
    await queryOnce(url, "UPDATE endpoints SET lease_until = now() + make_interval(secs => $1 / 1000.0) WHERE owner = 'r1'", [LEASE_MS]);
    const started = performance.now();
    r.respond(null);
    const two = await replica(url, 'r2');
    two.set.apply('a', fast(r.url));
    // r1 keeps renewing here (it is alive in this process), so the takeover needs r1 gone: close its rounds.
    await one.backend.close();
    await r.waitFor(() => ids(r).length >= 5, 10_000);
    expect(ids(r)).toEqual(makeEvents(5, 'dead').map((e) => e.id));
    expect(performance.now() - started).toBeLessThan(LEASE_MS + 5_000);
  });

  it('an endpoint added while a lease round runs is claimed by a round right after it, not a period later', async () => {
    const url = await pg.createDatabase();
    await (await PostgresBackend.open({ url, replicaId: 'schema', leaseDurationMs: 60_000, logger })).close();
    const r = await receiver();
    // The replica's first round waits on this lock (it marks the replica alive first), so the endpoint is added
    // while that round runs: the round read no endpoint, and the next regular one is 20 s away.
    const lock = new postgres.Client({ connectionString: url });
    await lock.connect();
    cleanups.push(() => lock.end());
    await lock.query('BEGIN; LOCK TABLE replicas IN EXCLUSIVE MODE');
    const { set } = await replica(url, 'r1', { lease: 60_000 });
    await eventually(async () => expect(await queryOnce(url, "SELECT count(*)::int AS n FROM pg_locks WHERE NOT granted AND relation = 'replicas'::regclass")).toEqual([{ n: 1 }]));
    set.apply('a', fast(r.url));
    await lock.query('COMMIT');
    const started = performance.now();
    await set.write(makeEvents(1, 'added'));
    await r.waitFor(() => ids(r).includes('added-0'), 5_000);
    expect(performance.now() - started).toBeLessThan(3_000);
  });

  it('close releases the leases: another replica takes over at once', async () => {
    const url = await pg.createDatabase();
    const r = await receiver();
    const one = await replica(url, 'r1', { lease: 60_000 });
    one.set.apply('a', fast(r.url));
    await eventually(async () => expect(await queryOnce(url, 'SELECT owner FROM endpoints')).toEqual([{ owner: 'r1' }]));
    const two = await replica(url, 'r2', { lease: 60_000 });
    two.set.apply('a', fast(r.url));
    await one.set.close(AbortSignal.timeout(1000));
    await one.backend.close();
    await eventually(async () => expect(await queryOnce(url, 'SELECT owner FROM endpoints')).toEqual([{ owner: 'r2' }]), 5_000);
    await two.set.write(makeEvents(1, 'after'));
    await r.waitFor(() => ids(r).includes('after-0'));
  });

  it('outcomes lag delivery by a few batches at most, and a clean stop writes them before handing over: nothing is sent twice', async () => {
    const url = await pg.createDatabase();
    const r = await receiver();
    const one = await replica(url, 'r1', { lease: 10_000 });
    one.set.apply('a', fast(r.url));
    const events = makeEvents(400, 'lag');
    await one.set.write(events);
    await r.waitFor(() => ids(r).length >= 20, 10_000);
    // Recording stalls (the deliveries table is locked against deletes): delivery may run ahead only a little.
    const locker = new postgres.Client({ connectionString: url });
    await locker.connect();
    cleanups.push(() => locker.end());
    await locker.query('BEGIN; LOCK TABLE deliveries IN EXCLUSIVE MODE');
    const before = ids(r).length;
    await eventually(async () => expect(await queryOnce(url, "SELECT count(*)::int AS n FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE '%rn_record%'")).toEqual([{ n: 1 }]));
    await new Promise((resolve) => setTimeout(resolve, 1_000)); // the window in which delivery could run ahead
    const ahead = ids(r).length - before;
    console.log(`[measure] delivered while recording stalled for 1 s: ${ahead}`);
    expect(ahead).toBeLessThanOrEqual(2 * 16 + 2);
    // r1 stops while its outcomes cannot be written yet; r2 is waiting for the lease.
    const two = await replica(url, 'r2', { lease: 10_000 });
    two.set.apply('a', fast(r.url));
    const stopping = (async () => {
      await one.set.close(AbortSignal.timeout(5_000));
      await one.backend.close();
    })();
    await new Promise((resolve) => setTimeout(resolve, 200));
    await locker.query('COMMIT');
    await stopping;
    await r.waitFor(() => new Set(ids(r)).size >= 400, 10_000);
    expect(ids(r)).toEqual(events.map((e) => e.id)); // each once, in order: r2 started where r1's outcomes ended
    await eventually(async () => expect(await queryOnce(url, 'SELECT owner FROM endpoints')).toEqual([{ owner: 'r2' }]));
  });

  it('dead letters and replay keep their meaning; replay works from any replica', async () => {
    const url = await pg.createDatabase();
    const r = await receiver();
    r.respond(() => 500);
    const one = await replica(url, 'r1');
    one.set.apply('a', fast(r.url, { retry: { strategy: 'Breaker', maxBackoffMs: 100, maxAttempts: 2, maxAgeMs: 0 } }));
    await one.set.write(makeEvents(3, 'dl'));
    await eventually(async () => expect(await queryOnce(url, 'SELECT count(*)::int AS n FROM dead_letters')).toEqual([{ n: 3 }]), 10_000);
    r.respond(null);
    r.clear();
    const two = await replica(url, 'r2');
    two.set.apply('a', fast(r.url));
    expect(await two.set.replay('a')).toBe(3);
    await r.waitFor(() => ids(r).length >= 3, 10_000);
    expect(ids(r)).toEqual(makeEvents(3, 'dl').map((e) => e.id));
  });

  it('an endpoint removed and created again on one replica: the removal\'s delete is done before the new endpoint takes an event', async () => {
    const url = await pg.createDatabase();
    const { set } = await replica(url, 'r1');
    const config = fast('http://127.0.0.1:9/', { disabled: true }); // what is accepted stays owed, for the test to read
    set.apply('k', config);
    await set.write(makeEvents(1, 'old'));
    // The delete is held up (the row is locked against it, not against new deliveries), as on a busy database.
    const locker = new postgres.Client({ connectionString: url });
    await locker.connect();
    cleanups.push(() => locker.end());
    await locker.query("BEGIN; SELECT 1 FROM endpoints WHERE name = 'k' FOR NO KEY UPDATE");
    const removing = set.remove('k');
    await eventually(async () => expect(await queryOnce(url, "SELECT count(*)::int AS n FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE 'DELETE FROM endpoints%'")).toEqual([{ n: 1 }]));
    let created = false;
    const recreated = (async () => {
      await removing;
      set.apply('k', config);
      await set.write(makeEvents(1, 'new'));
      created = true;
    })();
    await until(() => created, 'the new endpoint', 1_000).catch(() => {}); // had removal not waited for the delete, the event is in by now
    await locker.query('COMMIT');
    await recreated;
    expect((await queryOnce<{ id: string }>(url, "SELECT e.id FROM deliveries d JOIN events e USING (seq) WHERE d.endpoint = 'k'")).map((r) => r.id)).toEqual(['new-0']);
  });

  it('housekeeping keeps each endpoint\'s newest dead letters (100,000, the journal\'s bound), a bounded batch per statement, and forgets the events of the others', async () => {
    const url = await pg.createDatabase();
    await (await PostgresBackend.open({ url, replicaId: 'schema', leaseDurationMs: 60_000, logger })).close();
    await queryOnce(url, "INSERT INTO endpoints (name) VALUES ('a'), ('b')");
    await queryOnce(url, "INSERT INTO events (id, json, accepted_at) SELECT 'e' || i, '{}', i FROM generate_series(1, 100) AS i");
    await queryOnce(url, "INSERT INTO dead_letters (endpoint, seq, reason, at) SELECT 'a', seq, 'refused', 0 FROM events");
    await queryOnce(url, "INSERT INTO dead_letters (endpoint, seq, reason, at) SELECT 'b', seq, 'refused', 0 FROM events WHERE seq <= 3");
    const trim = async (): Promise<number> => (await queryOnce<{ n: number }>(url, 'SELECT rn_trim_dead_letters(10, 60) AS n'))[0]!.n;
    // Keep 10 each: a has 90 too many, taken 60 (the batch) at a time, the oldest first.
    expect(await trim()).toBe(60);
    expect(await queryOnce(url, "SELECT count(*)::int AS n, min(seq)::int AS oldest FROM dead_letters WHERE endpoint = 'a'")).toEqual([{ n: 40, oldest: 61 }]);
    expect(await trim()).toBe(30);
    expect(await trim()).toBe(0);
    expect(await queryOnce(url, 'SELECT endpoint, count(*)::int AS n, min(seq)::int AS oldest FROM dead_letters GROUP BY endpoint ORDER BY endpoint'))
      .toEqual([{ endpoint: 'a', n: 10, oldest: 91 }, { endpoint: 'b', n: 3, oldest: 1 }]);
    // Events 4 to 90 were a's alone; 1 to 3 are still b's, 91 to 100 a's.
    expect(await queryOnce(url, 'SELECT count(*)::int AS n FROM events')).toEqual([{ n: 13 }]);
  });

  it('a commit the database refuses leaves nothing; the error says unavailable, without the password', async () => {
    const url = await pg.createDatabase();
    const { set } = await replica(url, 'r1');
    set.apply('a', fast('http://127.0.0.1:9/', { disabled: true }));
    await queryOnce(pg.adminUrl, `ALTER DATABASE "${new URL(url).pathname.slice(1)}" SET default_transaction_read_only = on`);
    // New connections see it; drop the pool's idle ones so the next commit opens one.
    await queryOnce(pg.adminUrl, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()`, [new URL(url).pathname.slice(1)]);
    const error = await set.write(makeEvents(1, 'ro')).then(() => undefined, (e: unknown) => e as Error & { code?: string });
    expect(error).toMatchObject({ code: 'ERR_DATABASE_UNAVAILABLE' });
    expect(error!.message).not.toContain(pg.password);
    await queryOnce(pg.adminUrl, `ALTER DATABASE "${new URL(url).pathname.slice(1)}" RESET default_transaction_read_only`);
    expect(await queryOnce(url, 'SELECT count(*)::int AS n FROM events')).toEqual([{ n: 0 }]);
  });
});
