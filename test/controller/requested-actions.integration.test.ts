// Day-2 replay with kubectl alone (api.md §11), against a real kube-apiserver and etcd (KUBEBUILDER_ASSETS): dead
// letters made by a receiver answering 500 with retry.maxAttempts, then `kubectl annotate nep replayed
// registry-notifier.io/replay-requested-at=<value> --overwrite` (the merge patch of metadata.annotations kubectl
// sends) replays them to the now healthy receiver; the same value again, a resync and controller restarts (a new
// `serve` on the same journal and apiserver) never replay twice; a value set while nothing ran is handled once.
import { PatchStrategy, setHeaderOptions } from '@kubernetes/client-node';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { fetch } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  NOTIFICATION_ENDPOINT_RESOURCE as R,
  REPLAY_REQUESTED_ANNOTATION as REPLAY,
  type NotificationEndpointStatus,
} from '../../src/api/notification-endpoint.ts';
import { parseCommand, type ServeConfig } from '../../src/config.ts';
import type { Controller } from '../../src/controller/controller.ts';
import { EVENTS_MEDIA_TYPE } from '../../src/notifications/event.ts';
import { startServer, type Running } from '../../src/serve.ts';
import { envtestAssets, REPO_CRDS, startCluster, type StartedCluster } from '../support/envtest.ts';
import { makeEvents } from '../support/events.ts';
import { TestReceiver } from '../support/receiver.ts';
import { eventually } from '../support/wait.ts';

const assets = envtestAssets();
const NS = 'day-two';
const NAME = 'replayed';
const KEY = `${NS}/${NAME}`;

describe.skipIf(!assets)('replay by annotation against a real kube-apiserver', () => {
  let env: StartedCluster;
  let receiver: TestReceiver;
  let queueDir: string;
  let server: Running | undefined;
  const logs: string[] = [];

  const start = async (): Promise<Running> => {
    const config = parseCommand(['serve', '--kubernetes', '--allow-endpoint-cidrs', '127.0.0.0/8', '--listen', '127.0.0.1:0', '--metrics-listen', '127.0.0.1:0', '--status-interval', '300ms', '--shutdown-grace', '2s', '--queue-dir', queueDir], {}) as ServeConfig;
    const sink = new Writable({ write: (chunk: Buffer, _encoding, done) => (logs.push(chunk.toString()), done()) });
    return (server = await startServer(config, pino({ level: 'info' }, sink), { kubeConfig: env.kc }));
  };
  const stop = async (): Promise<void> => {
    await server?.shutdown();
    server = undefined;
  };

  beforeAll(async () => {
    env = await startCluster({ crds: REPO_CRDS, namespaces: [NS] });
    receiver = await TestReceiver.start();
    queueDir = await mkdtemp(join(tmpdir(), 'rn-replay-'));
    await start();
  }, 120_000);

  afterAll(async () => {
    await env?.stop(stop, () => receiver?.close());
    if (queueDir) await rm(queueDir, { recursive: true, force: true });
  });

  const get = async (): Promise<{ metadata: { annotations?: Record<string, string> }; status?: NotificationEndpointStatus }> =>
    env.custom.getNamespacedCustomObject({ group: R.group, version: R.version, namespace: NS, plural: R.plural, name: NAME });
  /** What `kubectl annotate nep replayed K=V --overwrite` sends for a custom resource: a JSON merge patch. */
  const annotate = (annotations: Record<string, string>): Promise<unknown> =>
    env.custom.patchNamespacedCustomObject({ group: R.group, version: R.version, namespace: NS, plural: R.plural, name: NAME, body: { metadata: { annotations } } }, setHeaderOptions('Content-Type', PatchStrategy.MergePatch));
  /** The ReplayRequested Events of the endpoint, by the request's value (Event times have whole seconds; the values here grow). */
  const replayEvents = async (): Promise<string[]> => {
    const list = await env.core.listNamespacedEvent({ namespace: NS, fieldSelector: `involvedObject.name=${NAME}` });
    const value = (message: string): string => message.slice(message.lastIndexOf(': '));
    return list.items
      .filter((e) => e.reason === 'ReplayRequested')
      .map((e) => `${e.type}: ${e.message}`)
      .sort((a, b) => value(a).localeCompare(value(b)));
  };
  /** How many times the receiver accepted (2xx) each event id. */
  const accepted = (): Map<string, number> => {
    const counts = new Map<string, number>();
    for (const event of receiver.events({ acceptedOnly: true })) counts.set(event.id, (counts.get(event.id) ?? 0) + 1);
    return counts;
  };
  /** Posts events while the receiver answers 500: with retry.maxAttempts 1 each is dead-lettered after one attempt. */
  const deadLetter = async (prefix: string, n: number): Promise<string[]> => {
    const running = server!;
    const before = running.endpoints.get(KEY)!.stats().deadLettered;
    receiver.respond(() => 500);
    const events = makeEvents(n, prefix);
    const response = await fetch(running.ingestUrl, { method: 'POST', headers: { 'content-type': EVENTS_MEDIA_TYPE }, body: JSON.stringify({ events }) });
    expect(response.status).toBe(202);
    await eventually(() => expect(running.endpoints.get(KEY)!.stats().deadLettered).toBe(before + n), 10_000);
    receiver.respond(null); // healthy from now on
    return events.map((e) => e.id);
  };
  const reconciles = (): number => logs.filter((line) => line.includes(`"endpoint":"${KEY}"`) && /"msg":"endpoint (created|updated)"/.test(line)).length;
  /**
   * Reconciles the endpoint twice in a row (a full resync each) and resolves once the second has started: one key is
   * reconciled at a time, so the first, requests included, has finished by then.
   */
  const reconciledFully = async (): Promise<void> => {
    const before = reconciles();
    for (const n of [1, 2]) {
      (server!.source as Controller).resync();
      await eventually(() => expect(reconciles()).toBeGreaterThanOrEqual(before + n), 10_000);
    }
  };

  const ids: string[] = [];

  it('dead letters, then an annotation: delivered once to the healthy receiver, status.lastHandledReplayAt = the value, a Normal Event with the count', async () => {
    await env.custom.createNamespacedCustomObject({
      group: R.group, version: R.version, namespace: NS, plural: R.plural,
      body: { apiVersion: R.apiVersion, kind: R.kind, metadata: { name: NAME }, spec: { url: receiver.url, retry: { maxAttempts: 1 } } },
    });
    await eventually(() => expect(server!.endpoints.get(KEY)).toBeDefined(), 10_000);
    ids.push(...(await deadLetter('first', 2)));
    expect(accepted().size).toBe(0);
    const started = performance.now();
    await annotate({ [REPLAY]: '1764633600' });
    await receiver.waitFor(() => ids.every((id) => accepted().has(id)), 10_000);
    console.log(`[measure] kubectl annotate -> 2 dead letters delivered: ${(performance.now() - started).toFixed(0)} ms`);
    await eventually(async () => expect((await get()).status?.lastHandledReplayAt).toBe('1764633600'), 10_000);
    // The Event follows the status write (action, status, then Event): waited for, not assumed.
    await eventually(async () => expect(await replayEvents()).toEqual([`Normal: 2 dead letters back in the queue (${REPLAY}: 1764633600)`]));
    expect([...accepted().values()]).toEqual([1, 1]);
  });

  it('the same value applied again, another annotation changed and a full resync: no second replay; a new value replays once', async () => {
    const late = await deadLetter('second', 1);
    await annotate({ [REPLAY]: '1764633600', 'example.com/note': 'unrelated' });
    await reconciledFully();
    expect(await replayEvents()).toHaveLength(1);
    expect(accepted().has(late[0]!)).toBe(false);
    expect((await get()).status?.lastHandledReplayAt).toBe('1764633600');
    await annotate({ [REPLAY]: '1764633700' });
    await receiver.waitFor(() => accepted().has(late[0]!), 10_000);
    ids.push(...late);
    await eventually(async () => expect((await get()).status?.lastHandledReplayAt).toBe('1764633700'), 10_000);
    // The one dead letter made after the first replay is what the second one found: nothing was replayed in between.
    await eventually(async () => expect((await replayEvents()).at(-1)).toBe(`Normal: 1 dead letter back in the queue (${REPLAY}: 1764633700)`));
    expect(await replayEvents()).toHaveLength(2);
    expect(ids.map((id) => accepted().get(id))).toEqual([1, 1, 1]);
  });

  it('controller restarts: a handled value is not replayed by the next controller; a value set while none ran is handled once after start', { timeout: 60_000 }, async () => {
    const kept = await deadLetter('third', 1); // stays dead: the annotation's value is handled already
    await stop();
    await start(); // resolves once every listed endpoint was reconciled (and its requests handled)
    expect(server!.endpoints.get(KEY)).toBeDefined();
    expect(await replayEvents()).toHaveLength(2);
    await stop();
    expect(accepted().has(kept[0]!)).toBe(false);
    await annotate({ [REPLAY]: '1764633800' }); // while no controller runs
    const started = performance.now();
    await start();
    await receiver.waitFor(() => accepted().has(kept[0]!), 10_000);
    console.log(`[measure] controller start -> the dead letter of a request made while down delivered: ${(performance.now() - started).toFixed(0)} ms`);
    ids.push(...kept);
    await eventually(async () => expect((await get()).status?.lastHandledReplayAt).toBe('1764633800'), 10_000);
    await eventually(async () => expect(await replayEvents()).toEqual([
      `Normal: 2 dead letters back in the queue (${REPLAY}: 1764633600)`,
      `Normal: 1 dead letter back in the queue (${REPLAY}: 1764633700)`,
      `Normal: 1 dead letter back in the queue (${REPLAY}: 1764633800)`,
    ]));
    // More reconciles of the same value after the restart: still handled once.
    await reconciledFully();
    expect(await replayEvents()).toHaveLength(3);
    expect(ids.map((id) => accepted().get(id))).toEqual([1, 1, 1, 1]);
  });
});
