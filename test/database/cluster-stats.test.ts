// Cluster-wide counters on a real PostgreSQL (api.md §12): two `serve` replicas in this process share one database
// and one endpoint file. Each coalesces what it accepted; `coalesced` in `/endpoints` of either replica is the sum
// over both (each reports only what it counted since its last report), while `registry_notifier_coalesced_total`
// stays each replica's own. An endpoint deleted and made again under the same name is counted from zero.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { parseCommand, type ServeConfig } from '../../src/config.ts';
import { ClusterStats, type LocalEndpoint } from '../../src/database/cluster-stats.ts';
import { migrate } from '../../src/database/migrate.ts';
import { openPool } from '../../src/database/pool.ts';
import { createLogger } from '../../src/log.ts';
import type { Event } from '../../src/notifications/event.ts';
import type { StatsSnapshot } from '../../src/notifications/endpoint-stats.ts';
import { startServer, type Running } from '../../src/serve.ts';
import type { EndpointStatus } from '../../src/status/endpoint-status.ts';
import { endpointDoc, post } from '../journal/support.ts';
import { makeEvents } from '../support/events.ts';
import { postgresBinaries, queryOnce, startPostgres, type TestPostgres } from '../support/postgres.ts';
import { TestReceiver } from '../support/receiver.ts';
import { eventually } from '../support/wait.ts';

const bin = postgresBinaries();
const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()!().catch(() => {});
});

/** A logger for the replicas and ClusterStats under test whose lines (warnings and errors only) go nowhere. */
function quietLogger(): ReturnType<typeof createLogger> {
  return createLogger('warn', new Writable({ write: (_chunk, _encoding, done) => done() }));
}

/** `n` pulls of one repository and tag (one coalescing key), ids `<prefix>-<i>`. */
function pulls(n: number, prefix: string): Event[] {
  return makeEvents(n, prefix).map((event) => ({ ...event, action: 'pull' }));
}

/** One replica's view of an endpoint in `GET /endpoints`. */
async function listed(server: Running, name: string): Promise<EndpointStatus | undefined> {
  const res = await fetch(`${server.adminUrl}/endpoints`, { signal: AbortSignal.timeout(5_000) });
  return ((await res.json()) as EndpointStatus[]).find((e) => e.name === name);
}

/** One replica's `registry_notifier_coalesced_total` for `name`. */
async function coalescedMetric(server: Running, name: string): Promise<number | undefined> {
  const text = await (await fetch(`${server.adminUrl}/metrics`, { signal: AbortSignal.timeout(5_000) })).text();
  const line = text.split('\n').find((l) => l.startsWith(`registry_notifier_coalesced_total{endpoint="${name}"}`));
  return line === undefined ? undefined : Number(line.slice(line.lastIndexOf(' ') + 1));
}

describe.skipIf(!bin)('cluster-wide counters (a real PostgreSQL)', { timeout: 60_000 }, () => {
  let db: TestPostgres;
  beforeAll(async () => {
    db = await startPostgres({ fsync: false });
  });
  afterAll(() => db?.stop());

  /** Two replicas of `serve --database-url` on a fresh database, with one endpoint `quiet` coalescing pulls for 1h. */
  async function twoReplicas(receiverUrl: string): Promise<{ url: string; a: Running; b: Running }> {
    const url = await db.createDatabase();
    const dir = await mkdtemp(join(tmpdir(), 'rn-cluster-stats-'));
    cleanups.push(() => rm(dir, { recursive: true, force: true }));
    const file = join(dir, 'endpoints.yaml');
    await writeFile(file, endpointDoc('quiet', { url: receiverUrl, coalesce: { actions: ['pull'], window: '1h' } }));
    const replica = async (id: string): Promise<Running> => {
      const config = parseCommand([
        'serve', '--listen', '127.0.0.1:0', '--metrics-listen', '127.0.0.1:0', '--endpoints', file, '--allow-endpoint-cidrs', '127.0.0.0/8',
        '--database-url', url, '--replica-id', id, '--shutdown-grace', '2s',
      ], {}) as ServeConfig;
      const server = await startServer(config, quietLogger());
      cleanups.push(() => server.shutdown());
      return server;
    };
    const [a, b] = await Promise.all([replica('replica-a'), replica('replica-b')]);
    return { url, a, b };
  }

  it('an endpoint deleted and made again under the same name: the new one is counted from zero, not against the old one\'s last report', async () => {
    const url = await db.createDatabase();
    const pool = openPool(url, { applicationName: 'cluster-stats-test' });
    cleanups.push(() => pool.end());
    await migrate(pool);
    await pool.query(`INSERT INTO endpoints (name) VALUES ('again')`);
    const counted = (delivered: number): StatsSnapshot => ({ delivered, failures: 0, errors: 0, deadLettered: 0, discarded: 0, coalesced: 0, responses: [{ code: 200, count: delivered }], consecutiveFailures: 0 });
    // Each object is one life of the endpoint, as EndpointSet makes a new Endpoint when a removed name comes back.
    const life = (delivered: number): LocalEndpoint => ({ name: 'again', stats: () => counted(delivered) });
    let local = [life(3)];
    const stats = new ClusterStats({ pool, replicaId: 'replica-a', local: () => local, owns: () => true, logger: quietLogger() });
    await stats.refresh();
    expect(stats.get('again')?.stats).toMatchObject({ delivered: 3, responses: [{ code: 200, count: 3 }] });
    // Deleted: its rows go (PostgresEndpointStore's drop), then it is applied again and delivers one event.
    await pool.query(`DELETE FROM endpoints WHERE name = 'again'`);
    local = [];
    await stats.refresh();
    expect(stats.get('again')).toBeUndefined();
    await pool.query(`INSERT INTO endpoints (name) VALUES ('again')`);
    local = [life(1)];
    await stats.refresh();
    expect(stats.get('again')?.stats).toMatchObject({ delivered: 1, responses: [{ code: 200, count: 1 }] });
  });

  it('coalesced is summed over replicas in /endpoints of either one; the metric stays per replica; later counts are added once', async () => {
    const receiver = await TestReceiver.start();
    cleanups.push(() => receiver.close());
    const { url, a, b } = await twoReplicas(receiver.url);

    // Each replica opens its own window for the key: its first pull is sent, the rest coalesced (3 on a, 2 on b).
    for (const event of pulls(4, 'a')) expect(await post(a.ingestUrl, [event])).toBe(202);
    for (const event of pulls(3, 'b')) expect(await post(b.ingestUrl, [event])).toBe(202);
    await receiver.waitFor(() => receiver.events({ acceptedOnly: true }).length === 2);
    expect(receiver.events().map((e) => e.id).sort()).toEqual(['a-0', 'b-0']);

    for (const server of [a, b]) {
      await eventually(async () => expect(await listed(server, 'quiet')).toMatchObject({ delivered: 2, coalesced: 5, pending: 0 }));
    }
    expect(await coalescedMetric(a, 'quiet')).toBe(3);
    expect(await coalescedMetric(b, 'quiet')).toBe(2);

    // More on one replica is added to the sum once: a's next reports carry only what it counted since the last.
    for (const event of pulls(2, 'a2')) expect(await post(a.ingestUrl, [event])).toBe(202);
    for (const server of [a, b]) await eventually(async () => expect(await listed(server, 'quiet')).toMatchObject({ coalesced: 7 }));
    // A push (not coalesced) delivered and reported after that shows later rounds ran, and added no coalesced twice.
    expect(await post(b.ingestUrl, makeEvents(1, 'push'))).toBe(202);
    for (const server of [a, b]) await eventually(async () => expect(await listed(server, 'quiet')).toMatchObject({ delivered: 3, coalesced: 7 }));
    expect(await queryOnce(url, `SELECT coalesced::int AS n FROM endpoint_stats WHERE endpoint = 'quiet'`)).toEqual([{ n: 7 }]);
    expect(await coalescedMetric(a, 'quiet')).toBe(5);
    expect(await coalescedMetric(b, 'quiet')).toBe(2);
  });

  it('a replica that stops reports what it coalesced last; the sum keeps it after it is gone', async () => {
    const receiver = await TestReceiver.start();
    cleanups.push(() => receiver.close());
    const { a, b } = await twoReplicas(receiver.url);
    // Shut down right after coalescing, mostly before b's next 1 s round: only the report made on stop carries the
    // count (it failed while the set had forgotten its closed endpoints before that report).
    for (const event of pulls(3, 'b')) expect(await post(b.ingestUrl, [event])).toBe(202);
    await b.shutdown();
    await eventually(async () => expect(await listed(a, 'quiet')).toMatchObject({ coalesced: 2 }));
    expect(await coalescedMetric(a, 'quiet')).toBe(0);
  });
});
