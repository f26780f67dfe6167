// Replay by annotation among replicas (api.md §11, §12): two `serve --kubernetes --database-url` replicas (in this
// process) against a real kube-apiserver and a real PostgreSQL. Both watch the endpoint and reconcile the annotation,
// but only the elected status writer replays (the dead letters live in the shared database, so a second replay
// would show as a second Event); a request made while no replica ran is handled by the next one once it is elected.
import { CoordinationV1Api, PatchStrategy, setHeaderOptions } from '@kubernetes/client-node';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NOTIFICATION_ENDPOINT_RESOURCE as R, REPLAY_REQUESTED_ANNOTATION as REPLAY, type NotificationEndpointStatus } from '../../src/api/notification-endpoint.ts';
import { parseCommand, type ServeConfig } from '../../src/config.ts';
import type { Controller } from '../../src/controller/controller.ts';
import { startServer, type Running } from '../../src/serve.ts';
import { post } from '../journal/support.ts';
import { envtestAssets, REPO_CRDS, startCluster, type StartedCluster } from '../support/envtest.ts';
import { makeEvents } from '../support/events.ts';
import { postgresBinaries, startPostgres, type TestPostgres } from '../support/postgres.ts';
import { TestReceiver } from '../support/receiver.ts';
import { eventually } from '../support/wait.ts';

const NS = 'registry';
const NAME = 'hook';
const KEY = `${NS}/${NAME}`;
const ready = Boolean(envtestAssets()) && Boolean(postgresBinaries());

describe.skipIf(!ready)('replay by annotation among replicas on PostgreSQL', { timeout: 180_000 }, () => {
  let env: StartedCluster;
  let pg: TestPostgres;
  let receiver: TestReceiver;
  let url: string;
  const replicas = new Map<string, { server: Running; logs: string[] }>();

  const start = async (id: string): Promise<void> => {
    const config = parseCommand(['serve', '--kubernetes', '--namespaces', NS, '--listen', '127.0.0.1:0', '--metrics-listen', '127.0.0.1:0', '--allow-endpoint-cidrs', '127.0.0.0/8',
      '--database-url', url, '--replica-id', id, '--leader-election-lease', `${NS}/registry-notifier`, '--status-interval', '300ms', '--shutdown-grace', '2s'], {}) as ServeConfig;
    const logs: string[] = [];
    const sink = new Writable({ write: (chunk: Buffer, _encoding, done) => (logs.push(chunk.toString()), done()) });
    replicas.set(id, { server: await startServer(config, pino({ level: 'info' }, sink), { kubeConfig: env.kc }), logs });
  };
  const stop = async (id: string): Promise<void> => {
    await replicas.get(id)?.server.shutdown();
    replicas.delete(id);
  };

  beforeAll(async () => {
    [env, pg, receiver] = await Promise.all([startCluster({ crds: REPO_CRDS, namespaces: [NS] }), startPostgres({ fsync: false }), TestReceiver.start()]);
    await env.custom.createNamespacedCustomObject({
      group: R.group, version: R.version, namespace: NS, plural: R.plural,
      body: { apiVersion: R.apiVersion, kind: R.kind, metadata: { name: NAME, namespace: NS }, spec: { url: receiver.url, retry: { maxAttempts: 1 } } },
    });
    url = await pg.createDatabase();
  }, 120_000);

  afterAll(() => env?.stop(...[...replicas.keys()].map((id) => () => stop(id)), () => receiver?.close(), () => pg?.stop()));

  const status = async (): Promise<NotificationEndpointStatus | undefined> =>
    ((await env.custom.getNamespacedCustomObject({ group: R.group, version: R.version, namespace: NS, plural: R.plural, name: NAME })) as { status?: NotificationEndpointStatus }).status;
  const annotate = (value: string): Promise<unknown> =>
    env.custom.patchNamespacedCustomObject({ group: R.group, version: R.version, namespace: NS, plural: R.plural, name: NAME, body: { metadata: { annotations: { [REPLAY]: value } } } }, setHeaderOptions('Content-Type', PatchStrategy.MergePatch));
  const replayEvents = async (): Promise<string[]> =>
    (await env.core.listNamespacedEvent({ namespace: NS, fieldSelector: `involvedObject.name=${NAME}` })).items
      .filter((e) => e.reason === 'ReplayRequested').map((e) => e.message ?? '').sort();
  const accepted = (id: string): number => receiver.events({ acceptedOnly: true }).filter((e) => e.id === id).length;
  const reconciles = (id: string): number =>
    replicas.get(id)!.logs.filter((line) => line.includes(`"endpoint":"${KEY}"`) && /"msg":"endpoint (created|updated)"/.test(line)).length;
  /** Reconciles the endpoint twice in a row on replica `id`; resolves once the first has finished, requests included. */
  const reconciledFully = async (id: string): Promise<void> => {
    const before = reconciles(id);
    for (const n of [1, 2]) {
      (replicas.get(id)!.server.source as Controller).resync();
      await eventually(() => expect(reconciles(id)).toBeGreaterThanOrEqual(before + n), 10_000);
    }
  };
  /** Posts `n` events through `id` while the receiver answers 500: each is dead-lettered (in the database) after one attempt. */
  const deadLetter = async (id: string, prefix: string, n: number): Promise<string[]> => {
    const before = (await status())?.deadLettered ?? 0;
    receiver.respond(() => 500);
    const events = makeEvents(n, prefix);
    expect(await post(replicas.get(id)!.server.ingestUrl, events)).toBe(202);
    await eventually(async () => expect((await status())?.deadLettered).toBe(before + n), 30_000);
    receiver.respond(null);
    return events.map((e) => e.id);
  };

  it('both replicas reconcile the annotation, only the elected one replays; a request made while none ran is handled once by the next one elected', async () => {
    await Promise.all(['replica-a', 'replica-b'].map(start));
    const leases = env.kc.makeApiClient(CoordinationV1Api);
    await eventually(async () => expect((await leases.readNamespacedLease({ namespace: NS, name: 'registry-notifier' })).spec?.holderIdentity).toMatch(/^replica-[ab]$/), 30_000);
    const first = await deadLetter('replica-a', 'first', 2);
    await annotate('1764633600');
    await receiver.waitFor(() => first.every((id) => accepted(id) >= 1), 30_000);
    await eventually(async () => expect((await status())?.lastHandledReplayAt).toBe('1764633600'), 10_000);
    // Both replicas reconcile the new value (and again); a second replay would find nothing and say so in a second Event.
    await Promise.all(['replica-a', 'replica-b'].map(reconciledFully));
    expect(await replayEvents()).toEqual([`2 dead letters back in the queue (${REPLAY}: 1764633600)`]);
    expect(first.map(accepted)).toEqual([1, 1]);

    // A dead letter, then every replica stops; the request comes while none runs. The next replica's first reconcile
    // comes before it is elected (it leaves the request alone); once elected it looks for requests left.
    const second = await deadLetter('replica-b', 'second', 1);
    await stop('replica-a');
    await stop('replica-b');
    await annotate('1764633700');
    const started = performance.now();
    await start('replica-b');
    await receiver.waitFor(() => accepted(second[0]!) >= 1, 30_000);
    console.log(`[measure] replica start -> the dead letter of a request made while none ran delivered: ${(performance.now() - started).toFixed(0)} ms`);
    await eventually(async () => expect((await status())?.lastHandledReplayAt).toBe('1764633700'), 10_000);
    // The Event follows the status write (action, status, then Event): waited for, not assumed.
    await eventually(async () => expect(await replayEvents()).toEqual([
      `1 dead letter back in the queue (${REPLAY}: 1764633700)`,
      `2 dead letters back in the queue (${REPLAY}: 1764633600)`,
    ]));
    expect([...first, ...second].map(accepted)).toEqual([1, 1, 1]);
    expect(replicas.get('replica-b')!.logs.some((line) => line.includes('leader election: leading'))).toBe(true);
  });
});
