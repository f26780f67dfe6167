// Counters over a restart with a shared database (api.md §12): a `serve --kubernetes --database-url` replica (in
// this process) against a real kube-apiserver and a real PostgreSQL counts, stops, and starts again. The database
// keeps the counters, so the restarted replica must not start its own from the stored status: they would be
// reported to the database as new work and the sums (status, /endpoints) would count them twice.
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NOTIFICATION_ENDPOINT_RESOURCE as R, type NotificationEndpointStatus } from '../../src/api/notification-endpoint.ts';
import { parseCommand, type ServeConfig } from '../../src/config.ts';
import type { Event } from '../../src/notifications/event.ts';
import { startServer, type Running } from '../../src/serve.ts';
import type { EndpointStatus } from '../../src/status/endpoint-status.ts';
import { post } from '../journal/support.ts';
import { envtestAssets, REPO_CRDS, startCluster, type StartedCluster } from '../support/envtest.ts';
import { makeEvents } from '../support/events.ts';
import { postgresBinaries, queryOnce, startPostgres, type TestPostgres } from '../support/postgres.ts';
import { TestReceiver } from '../support/receiver.ts';
import { eventually } from '../support/wait.ts';

const NS = 'registry';
const NAME = 'hook';
const KEY = `${NS}/${NAME}`;
const ready = Boolean(envtestAssets()) && Boolean(postgresBinaries());

/** `n` pulls of one repository and tag (one coalescing key), ids `<prefix>-<i>`. */
function pulls(n: number, prefix: string): Event[] {
  return makeEvents(n, prefix).map((event) => ({ ...event, action: 'pull' }));
}

describe.skipIf(!ready)('counters over a replica restart on PostgreSQL', { timeout: 180_000 }, () => {
  let env: StartedCluster;
  let pg: TestPostgres;
  let receiver: TestReceiver;
  let url: string;
  let server: Running | undefined;

  const start = async (): Promise<Running> => {
    const config = parseCommand(['serve', '--kubernetes', '--namespaces', NS, '--listen', '127.0.0.1:0', '--metrics-listen', '127.0.0.1:0', '--allow-endpoint-cidrs', '127.0.0.0/8',
      '--database-url', url, '--replica-id', 'replica-a', '--leader-election-lease', `${NS}/registry-notifier`, '--status-interval', '300ms', '--shutdown-grace', '2s'], {}) as ServeConfig;
    server = await startServer(config, pino({ level: 'warn' }, new Writable({ write: (_chunk, _encoding, done) => done() })), { kubeConfig: env.kc });
    return server;
  };

  beforeAll(async () => {
    [env, pg, receiver] = await Promise.all([startCluster({ crds: REPO_CRDS, namespaces: [NS] }), startPostgres({ fsync: false }), TestReceiver.start()]);
    await env.custom.createNamespacedCustomObject({
      group: R.group, version: R.version, namespace: NS, plural: R.plural,
      body: { apiVersion: R.apiVersion, kind: R.kind, metadata: { name: NAME, namespace: NS }, spec: { url: receiver.url, coalesce: { actions: ['pull'], window: '1h' } } },
    });
    url = await pg.createDatabase();
  }, 120_000);

  afterAll(() => env?.stop(() => server?.shutdown(), () => receiver?.close(), () => pg?.stop()));

  const status = async (): Promise<NotificationEndpointStatus | undefined> =>
    ((await env.custom.getNamespacedCustomObject({ group: R.group, version: R.version, namespace: NS, plural: R.plural, name: NAME })) as { status?: NotificationEndpointStatus }).status;
  const sums = async (): Promise<{ delivered: number; coalesced: number }[]> =>
    queryOnce(url, `SELECT delivered::int, coalesced::int FROM endpoint_stats WHERE endpoint = $1`, [KEY]);
  const running = async (s: Running): Promise<void> => {
    await eventually(async () => {
      const listed = (await (await fetch(`${s.adminUrl}/endpoints`, { signal: AbortSignal.timeout(5_000) })).json()) as EndpointStatus[];
      expect(listed.find((e) => e.name === KEY)).toMatchObject({ ready: true });
    }, 30_000);
  };

  it('a restarted replica adds only what it counts after the restart: status and the database sums stay exact', async () => {
    let s = await start();
    await running(s);
    for (const event of pulls(3, 'before')) expect(await post(s.ingestUrl, [event])).toBe(202);
    await eventually(async () => expect(await status()).toMatchObject({ delivered: 1, coalesced: 2 }), 30_000);
    await s.shutdown();

    s = await start();
    await running(s);
    // The restart forgot the windows: the first pull is sent again, the next coalesced.
    for (const event of pulls(2, 'after')) expect(await post(s.ingestUrl, [event])).toBe(202);
    await eventually(async () => expect(await status()).toMatchObject({ delivered: 2, coalesced: 3 }), 30_000);
    // A push delivered and written to status later shows later rounds ran and added nothing twice.
    expect(await post(s.ingestUrl, makeEvents(1, 'push'))).toBe(202);
    await eventually(async () => expect(await status()).toMatchObject({ delivered: 3, coalesced: 3 }), 30_000);
    expect(await sums()).toEqual([{ delivered: 3, coalesced: 3 }]);
  });
});
