// The listening connection against a real PostgreSQL: a notification on the work channel wakes each endpoint its
// payload names (rn_accept joins the names of a transaction's endpoints with spaces), one on the released channel
// names the replica that let its leases go, and nothing reaches the callbacks once it is stopped.
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RELEASED_CHANNEL } from '../../src/database/lease-keeper.ts';
import { WORK_CHANNEL, WorkListener } from '../../src/database/work-listener.ts';
import { postgresBinaries, queryOnce, startPostgres, type TestPostgres } from '../support/postgres.ts';
import { eventually } from '../support/wait.ts';

const bin = postgresBinaries();

describe.skipIf(!bin)('WorkListener (LISTEN on a real PostgreSQL)', { timeout: 60_000 }, () => {
  let db: TestPostgres;
  beforeAll(async () => {
    db = await startPostgres({ fsync: false });
  }, 60_000);
  afterAll(() => db?.stop());

  it('wakes every endpoint a work payload names, passes on released replicas, and stops hearing once stopped', async () => {
    const url = await db.createDatabase();
    const woken: string[] = [];
    const released: string[] = [];
    let connected = 0;
    const listener = new WorkListener({
      url,
      applicationName: 'work-listener-test',
      logger: pino({ level: 'silent' }),
      onWork: (endpoint) => woken.push(endpoint),
      onReleased: (replica) => released.push(replica),
      reconnected: () => connected++,
    });
    await listener.start();
    try {
      expect(connected).toBe(1);
      await queryOnce(url, `SELECT pg_notify($1, 'team-a/one'), pg_notify($1, 'team-a/two team-b/three'), pg_notify($2, 'replica-1')`, [WORK_CHANNEL, RELEASED_CHANNEL]);
      await eventually(() => expect(woken).toEqual(['team-a/one', 'team-a/two', 'team-b/three']));
      expect(released).toEqual(['replica-1']);
    } finally {
      await listener.stop();
    }
    await queryOnce(url, `SELECT pg_notify($1, 'team-a/four')`, [WORK_CHANNEL]);
    await queryOnce(url, 'SELECT 1'); // a round trip later, a listener still connected would have had it
    expect(woken).toEqual(['team-a/one', 'team-a/two', 'team-b/three']);
  });
});
