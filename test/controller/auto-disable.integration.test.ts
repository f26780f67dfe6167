// retry.clientErrors and retry.disableAfter against a real kube-apiserver (envtest style; KUBEBUILDER_ASSETS): the
// CRD defaults and validates the new fields, and `serve --kubernetes` writes Ready=False/AutoDisabled with a Warning
// Event for an endpoint whose receiver keeps failing, then Ready=True and the queue in order after a spec change, or
// after `kubectl annotate nep X registry-notifier.io/resume-requested-at=…` (once per value, across a restart).
import { PatchStrategy, setHeaderOptions } from '@kubernetes/client-node';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { fetch } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NOTIFICATION_ENDPOINT_RESOURCE as R, RESUME_REQUESTED_ANNOTATION as RESUME, type NotificationEndpointStatus } from '../../src/api/notification-endpoint.ts';
import { parseCommand, type ServeConfig } from '../../src/config.ts';
import { EVENTS_MEDIA_TYPE } from '../../src/notifications/event.ts';
import { startServer, type Running } from '../../src/serve.ts';
import { envtestAssets, REPO_CRDS, startCluster, type StartedCluster } from '../support/envtest.ts';
import { makeEvents } from '../support/events.ts';
import { TestReceiver } from '../support/receiver.ts';
import { eventually } from '../support/wait.ts';

const assets = envtestAssets();
const NS = 'team-r';

describe.skipIf(!assets)('retry settings against a real kube-apiserver', () => {
  let env: StartedCluster;
  let server: Running;
  let receiver: TestReceiver;
  let down = true;

  beforeAll(async () => {
    env = await startCluster({ crds: REPO_CRDS, namespaces: [NS] });
    receiver = await TestReceiver.start();
    receiver.respond(() => (down ? 503 : 202));
    server = await serve();
  }, 120_000);

  /** `serve --kubernetes` on the test cluster (a restart is a new one). */
  async function serve(): Promise<Running> {
    const config = parseCommand(['serve', '--kubernetes', '--allow-endpoint-cidrs', '127.0.0.0/8', '--listen', '127.0.0.1:0', '--metrics-listen', '127.0.0.1:0', '--status-interval', '300ms', '--shutdown-grace', '1s'], {}) as ServeConfig;
    return startServer(config, pino({ level: 'warn' }, new Writable({ write: (_c, _e, done) => done() })), { kubeConfig: env.kc });
  }

  afterAll(() => env?.stop(() => server?.shutdown(), () => receiver?.close()));

  const create = (name: string, spec: Record<string, unknown>): Promise<unknown> =>
    env.custom.createNamespacedCustomObject({ group: R.group, version: R.version, namespace: NS, plural: R.plural, body: { apiVersion: R.apiVersion, kind: R.kind, metadata: { name, namespace: NS }, spec } });
  const get = async (name: string): Promise<{ metadata: { generation: number }; spec: Record<string, unknown>; status?: NotificationEndpointStatus }> =>
    env.custom.getNamespacedCustomObject({ group: R.group, version: R.version, namespace: NS, plural: R.plural, name });
  const ready = (status: NotificationEndpointStatus | undefined) => status?.conditions?.find((c) => c.type === 'Ready');

  it('defaults clientErrors to Retry and disableAfter to 0s, and refuses values outside the schema', async () => {
    await create('defaults', { url: receiver.url, disabled: true }); // every endpoint takes every event: this one sends none
    expect((await get('defaults')).spec.retry).toMatchObject({ clientErrors: 'Retry', disableAfter: '0s' });
    for (const retry of [{ clientErrors: 'Drop' }, { disableAfter: '60' }]) {
      const error = await create('bad', { url: receiver.url, retry }).catch((e: unknown) => e);
      expect((error as { code?: number }).code, JSON.stringify(retry)).toBe(422);
    }
  });

  it('AutoDisabled after failing for disableAfter (Warning Event, queue kept); a spec change delivers the queue in order', async () => {
    await create('flaky', { url: receiver.url, threshold: 1, backoff: '200ms', retry: { disableAfter: '1s', clientErrors: 'DeadLetter' } });
    await eventually(() => expect(server.endpoints.get(`${NS}/flaky`)).toBeDefined(), 5000);
    const events = makeEvents(3, 'flaky');
    const response = await fetch(server.ingestUrl, { method: 'POST', headers: { 'content-type': EVENTS_MEDIA_TYPE }, body: JSON.stringify({ events }) });
    expect(response.status).toBe(202);
    const posted = performance.now();

    const stopped = await eventually(async () => {
      const status = (await get('flaky')).status;
      expect(ready(status)).toMatchObject({ status: 'False', reason: 'AutoDisabled' });
      return status;
    }, 15_000);
    console.log(`[measure] events posted -> Ready=False/AutoDisabled in status (disableAfter 1s): ${(performance.now() - posted).toFixed(0)} ms`);
    expect(ready(stopped)?.message).toContain('no successful delivery for 1s (retry.disableAfter)');
    expect(ready(stopped)?.message).toContain('503 Service Unavailable');
    await eventually(async () => expect((await get('flaky')).status?.pending).toBe(3), 5000);
    const warning = await eventually(async () => {
      const list = await env.core.listNamespacedEvent({ namespace: NS, fieldSelector: 'involvedObject.name=flaky,reason=AutoDisabled' });
      expect(list.items).toHaveLength(1);
      return list.items[0];
    });
    expect(warning).toMatchObject({ type: 'Warning', reason: 'AutoDisabled' });
    const sent = receiver.requests.length;

    down = false;
    const changed = performance.now();
    // Read-modify-write, retried on 409: the controller's status writes move the resourceVersion under us.
    const current = await eventually(async () => {
      const object = await get('flaky');
      await env.custom.replaceNamespacedCustomObject({ group: R.group, version: R.version, namespace: NS, plural: R.plural, name: 'flaky', body: { ...object, spec: { ...object.spec, timeout: '2s' } } });
      return object;
    }, 10_000);
    await eventually(async () => {
      const status = (await get('flaky')).status;
      expect(ready(status)).toMatchObject({ status: 'True', reason: 'Configured', observedGeneration: current.metadata.generation + 1 });
      expect(status?.pending).toBe(0);
    }, 15_000);
    console.log(`[measure] spec change -> Ready=True and the 3 kept events delivered, in status: ${(performance.now() - changed).toFixed(0)} ms`);
    expect(receiver.events({ acceptedOnly: true }).map((e) => e.id)).toEqual(events.map((e) => e.id));
    expect(receiver.requests.length).toBe(sent + 3);
  });

  it('kubectl annotate resume-requested-at lets an AutoDisabled endpoint send again: once per value, recorded, not again after a restart', async () => {
    down = true;
    await create('resumed', { url: receiver.url, threshold: 1, backoff: '200ms', retry: { disableAfter: '1s' } });
    await eventually(() => expect(server.endpoints.get(`${NS}/resumed`)).toBeDefined(), 5000);
    const events = makeEvents(2, 'resumed');
    const response = await fetch(server.ingestUrl, { method: 'POST', headers: { 'content-type': EVENTS_MEDIA_TYPE }, body: JSON.stringify({ events }) });
    expect(response.status).toBe(202);
    await eventually(async () => expect(ready((await get('resumed')).status)).toMatchObject({ status: 'False', reason: 'AutoDisabled' }), 15_000);
    const generation = (await get('resumed')).metadata.generation;

    down = false;
    // What `kubectl annotate nep resumed registry-notifier.io/resume-requested-at=… --overwrite` sends: a merge patch.
    const annotate = (value: string): Promise<unknown> =>
      env.custom.patchNamespacedCustomObject({ group: R.group, version: R.version, namespace: NS, plural: R.plural, name: 'resumed', body: { metadata: { annotations: { [RESUME]: value } } } }, setHeaderOptions('Content-Type', PatchStrategy.MergePatch));
    const started = performance.now();
    await annotate('1764633600');
    await eventually(async () => {
      const status = (await get('resumed')).status;
      expect(status).toMatchObject({ lastHandledResumeAt: '1764633600', pending: 0 });
      expect(ready(status)).toMatchObject({ status: 'True', reason: 'Configured', observedGeneration: generation });
    }, 15_000);
    console.log(`[measure] kubectl annotate resume-requested-at -> Ready=True and the kept events delivered, in status: ${(performance.now() - started).toFixed(0)} ms`);
    expect(receiver.events({ acceptedOnly: true }).filter((e) => e.id.startsWith('resumed')).map((e) => e.id)).toEqual(events.map((e) => e.id));
    const resumeEvents = async (): Promise<string[]> =>
      (await env.core.listNamespacedEvent({ namespace: NS, fieldSelector: 'involvedObject.name=resumed,reason=ResumeRequested' })).items.map((e) => e.message ?? '');
    await eventually(async () => expect(await resumeEvents()).toEqual([`the AutoDisabled endpoint sends again (${RESUME}: 1764633600)`]));

    // The same value applied again, then a restart of the controller: the value is handled already, nothing more.
    await annotate('1764633600');
    await server.shutdown();
    server = await serve();
    await eventually(() => expect(server.endpoints.get(`${NS}/resumed`)).toBeDefined(), 10_000);
    // A later request on another endpoint is handled by the restarted controller: by then this one's was looked at.
    await create('marker', { url: receiver.url, disabled: true });
    await patchMarker();
    expect(await resumeEvents()).toHaveLength(1);
    expect((await get('resumed')).status?.lastHandledResumeAt).toBe('1764633600');

    async function patchMarker(): Promise<void> {
      await env.custom.patchNamespacedCustomObject({ group: R.group, version: R.version, namespace: NS, plural: R.plural, name: 'marker', body: { metadata: { annotations: { [RESUME]: 'm1' } } } }, setHeaderOptions('Content-Type', PatchStrategy.MergePatch));
      await eventually(async () => expect((await get('marker')).status?.lastHandledResumeAt).toBe('m1'), 15_000);
    }
  });
});
