// The controller against a real kube-apiserver and etcd (envtest style; KUBEBUILDER_ASSETS). Covers the CRD's
// validation, create/update/delete of endpoints, Secret-sourced headers and rotation, status and Events, and
// survival of an apiserver restart and an etcd compaction (which forces 410 Gone on watches).
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { Agent, fetch } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NOTIFICATION_ENDPOINT_RESOURCE as R, type NotificationEndpointStatus } from '../../src/api/notification-endpoint.ts';
import { parseCommand, type ServeConfig } from '../../src/config.ts';
import { EVENTS_MEDIA_TYPE } from '../../src/notifications/event.ts';
import { startServer, type Running } from '../../src/serve.ts';
import { envtestAssets, REPO_CRDS, startCluster, type StartedCluster } from '../support/envtest.ts';
import { makeEvents } from '../support/events.ts';
import { ed25519KeyPair, verifiedV1a as verified } from '../support/ed25519.ts';
import { TestReceiver } from '../support/receiver.ts';
import { eventually } from '../support/wait.ts';

const assets = envtestAssets();
const NS = 'team-a';

describe.skipIf(!assets)('controller against a real kube-apiserver', () => {
  let env: StartedCluster;
  let server: Running;
  let receiver: TestReceiver;
  let other: TestReceiver;
  let postSeq = 0;
  const logs: string[] = [];

  beforeAll(async () => {
    env = await startCluster({ crds: REPO_CRDS, namespaces: [NS] });
    receiver = await TestReceiver.start();
    other = await TestReceiver.start();
    const config = parseCommand(['serve', '--kubernetes', '--allow-endpoint-cidrs', '127.0.0.0/8', '--listen', '127.0.0.1:0', '--metrics-listen', '127.0.0.1:0', '--status-interval', '300ms', '--shutdown-grace', '1s'], {}) as ServeConfig;
    const sink = new Writable({ write: (chunk: Buffer, _encoding, done) => (logs.push(chunk.toString()), done()) });
    server = await startServer(config, pino({ level: 'info' }, sink), { kubeConfig: env.kc });
  }, 120_000);

  afterAll(() => env?.stop(() => server?.shutdown(), () => receiver?.close(), () => other?.close()));

  const endpoint = (name: string, spec: Record<string, unknown>): object => ({
    apiVersion: R.apiVersion, kind: R.kind, metadata: { name, namespace: NS }, spec,
  });
  const create = (name: string, spec: Record<string, unknown>): Promise<unknown> =>
    env.custom.createNamespacedCustomObject({ group: R.group, version: R.version, namespace: NS, plural: R.plural, body: endpoint(name, spec) });
  const get = async (name: string): Promise<{ metadata: { generation: number }; status?: NotificationEndpointStatus }> =>
    env.custom.getNamespacedCustomObject({ group: R.group, version: R.version, namespace: NS, plural: R.plural, name });
  // Read-modify-write, retried on 409: the controller's status writes move the resourceVersion under us.
  const replaceSpec = (name: string, spec: Record<string, unknown>): Promise<unknown> =>
    eventually(async () => {
      const current = await get(name);
      return env.custom.replaceNamespacedCustomObject({ group: R.group, version: R.version, namespace: NS, plural: R.plural, name, body: { ...current, spec } });
    }, 10_000);
  const condition = (status: NotificationEndpointStatus | undefined, type: string) => status?.conditions?.find((c) => c.type === type);
  /** The namespace's endpoints as `kubectl get nep` shows them (the server renders the printer columns): row by name, cell by column. */
  const getTable = async (): Promise<Map<string, Record<string, unknown>>> => {
    const res = await fetch(`${env.cluster.server}/apis/${R.group}/${R.version}/namespaces/${NS}/${R.plural}`, {
      headers: { authorization: `Bearer ${env.cluster.adminToken}`, accept: 'application/json;as=Table;v=v1;g=meta.k8s.io' },
      dispatcher: new Agent({ connect: { ca: env.cluster.caPem } }),
    });
    expect(res.status).toBe(200);
    const table = (await res.json()) as { columnDefinitions: { name: string }[]; rows: { cells: unknown[] }[] };
    const names = table.columnDefinitions.map((c) => c.name);
    return new Map(table.rows.map((row) => [String(row.cells[0]), Object.fromEntries(names.map((name, i) => [name, row.cells[i]]))]));
  };
  const post = async (prefix = `p${postSeq++}`, n = 1): Promise<string[]> => {
    const events = makeEvents(n, prefix);
    const response = await fetch(server.ingestUrl, { method: 'POST', headers: { 'content-type': EVENTS_MEDIA_TYPE }, body: JSON.stringify({ events }) });
    expect(response.status).toBe(202);
    return events.map((e) => e.id);
  };

  it('rejects invalid objects at the API server (structural schema, no CEL on 1.20)', async () => {
    for (const spec of [
      { url: 'ftp://127.0.0.1/x' },
      { url: 'http://127.0.0.1/x', timeout: '500' },
      { url: 'http://127.0.0.1/x', retry: { strategy: 'Sometimes' } },
      { url: 'http://127.0.0.1/x', maxBatchEvents: 0 },
      { url: 'http://127.0.0.1/x', ignore: { actions: ['fetch'] } },
      { url: 'http://127.0.0.1/x', coalesce: { actions: ['fetch'], window: '1m' } },
      { url: 'http://127.0.0.1/x', coalesce: { actions: ['pull'] } },
      { url: 'http://127.0.0.1/x', coalesce: { actions: ['pull'], window: '60' } },
      { url: 'http://127.0.0.1/x', signing: { algorithm: 'RSA', secretKeyRef: { name: 's', key: 'k' } } },
      { timeout: '1s' },
    ]) {
      const error = await create('bad', spec).catch((e: unknown) => e);
      expect((error as { code?: number }).code, `${JSON.stringify(spec)}: ${String((error as Error).message).slice(0, 300)}`).toBe(422);
    }
  });

  it('create -> live within a second; Ready=True, defaults applied, events delivered and counted in status', async () => {
    const started = performance.now();
    await create('hook', { url: receiver.url });
    await eventually(() => expect(server.endpoints.get(`${NS}/hook`)).toBeDefined(), 5000);
    const ids = await post('first', 1);
    await receiver.waitFor(() => receiver.events().some((e) => e.id === ids[0]), 5000);
    const live = performance.now() - started;
    console.log(`[measure] CR create -> endpoint live and first event delivered: ${live.toFixed(0)} ms`);
    expect(live).toBeLessThan(5000);
    const object = await get('hook');
    expect((object as unknown as { spec: Record<string, unknown> }).spec).toMatchObject({ timeout: '1s', threshold: 10, backoff: '1s', maxBatchEvents: 1 });
    const statusStarted = performance.now();
    const status = await eventually(async () => {
      const s = (await get('hook')).status;
      expect(s?.delivered).toBeGreaterThanOrEqual(1);
      return s;
    }, 5000);
    console.log(`[measure] event delivered -> status.delivered updated: ${(performance.now() - statusStarted).toFixed(0)} ms (status-interval 300ms)`);
    expect(status?.observedGeneration).toBe(object.metadata.generation);
    expect(condition(status, 'Ready')).toMatchObject({ status: 'True', reason: 'Configured', observedGeneration: object.metadata.generation });
    expect(condition(status, 'Delivering')).toMatchObject({ status: 'True', reason: 'Succeeded' });
    expect(status?.responses).toEqual([{ code: 200, count: status?.delivered }]);
    expect(status?.pending).toBe(0);
  });

  it('update url, headers and filters take effect live; queued events follow the endpoint', async () => {
    await replaceSpec('hook', { url: other.url, headers: [{ name: 'X-Team', value: 'a' }], ignore: { actions: ['pull'] } });
    await eventually(async () => {
      const ids = await post();
      await other.waitFor(() => other.events().some((e) => e.id === ids[0]), 300);
    }, 10_000);
    const last = other.requests.at(-1);
    expect(last?.headers['x-team']).toBe('a');
    const status = await eventually(async () => {
      const s = (await get('hook')).status;
      expect(s?.observedGeneration).toBe((await get('hook')).metadata.generation);
      return s;
    });
    expect(condition(status, 'Ready')?.status).toBe('True');
  });

  it('Secret-sourced header: SecretNotFound until the Secret exists, then live; rotation reaches the receiver', async () => {
    await create('secret-hook', { url: receiver.url, headers: [{ name: 'Authorization', valueFrom: { secretKeyRef: { name: 'hook-token', key: 'token' } } }] });
    await eventually(async () => {
      const ready = condition((await get('secret-hook')).status, 'Ready');
      expect(ready).toMatchObject({ status: 'False', reason: 'SecretNotFound' });
      expect(ready?.message).toContain('hook-token');
    });
    await env.core.createNamespacedSecret({ namespace: NS, body: { metadata: { name: 'hook-token' }, stringData: { token: 'Bearer one\n' } } });
    await eventually(async () => expect(condition((await get('secret-hook')).status, 'Ready')?.status).toBe('True'), 10_000);
    receiver.clear();
    await post('s1');
    await receiver.waitFor((r) => r.some((q) => q.headers.authorization === 'Bearer one'));
    await env.core.replaceNamespacedSecret({ namespace: NS, name: 'hook-token', body: { metadata: { name: 'hook-token' }, stringData: { token: 'Bearer two' } } });
    await eventually(async () => {
      await post();
      await receiver.waitFor((r) => r.some((q) => q.headers.authorization === 'Bearer two'), 300);
    }, 10_000);
  });

  it('Ed25519: status.signingPublicKey verifies what the receiver gets; a replaced Secret signs with the new key and shows it', async () => {
    // The receiver's side (node:crypto alone) checks with the key it read from the resource's status.
    const [first, second] = [ed25519KeyPair(), ed25519KeyPair()];
    const mine = await TestReceiver.start();
    try {
      await env.core.createNamespacedSecret({ namespace: NS, body: { metadata: { name: 'ed-key' }, stringData: { key: `${first.whsk64}\n` } } });
      await create('ed-hook', { url: mine.url, signing: { algorithm: 'Ed25519', secretKeyRef: { name: 'ed-key', key: 'key' } } });
      const publicKey = async (): Promise<string | undefined> => (await get('ed-hook')).status?.signingPublicKey;
      await eventually(async () => expect(await publicKey()).toBe(first.whpk), 10_000);
      await post('ed1');
      await mine.waitFor((r) => r.length >= 1);
      expect(verified((await publicKey())!, mine.requests[0]!)).toBe(true);

      await env.core.replaceNamespacedSecret({ namespace: NS, name: 'ed-key', body: { metadata: { name: 'ed-key' }, stringData: { key: second.whsk64 } } });
      await eventually(async () => expect(await publicKey()).toBe(second.whpk), 10_000);
      mine.clear();
      await post('ed2');
      await mine.waitFor((r) => r.length >= 1);
      expect(verified(second.whpk, mine.requests[0]!)).toBe(true);
      expect(verified(first.whpk, mine.requests[0]!)).toBe(false);
    } finally {
      await env.custom.deleteNamespacedCustomObject({ group: R.group, version: R.version, namespace: NS, plural: R.plural, name: 'ed-hook' }).catch(() => {});
      await mine.close();
    }
  });

  it('a reserved header is InvalidSpec (the controller checks what the schema cannot), with a Warning Event', async () => {
    await create('reserved', { url: receiver.url, headers: [{ name: 'Content-Type', value: 'text/plain' }] });
    const ready = await eventually(async () => {
      const r = condition((await get('reserved')).status, 'Ready');
      expect(r?.reason).toBe('InvalidSpec');
      return r;
    });
    expect(ready?.status).toBe('False');
    expect(ready?.message).toMatch(/Content-Type/i);
    const events = await eventually(async () => {
      const list = await env.core.listNamespacedEvent({ namespace: NS, fieldSelector: 'involvedObject.name=reserved' });
      expect(list.items.length).toBeGreaterThan(0);
      return list.items;
    });
    expect(events[0]).toMatchObject({ type: 'Warning', reason: 'InvalidSpec', source: { component: 'registry-notifier' } });
  });

  it('CloudEvents: the API server defaults and checks the fields, Binary with batching is InvalidSpec, a valid one delivers', async () => {
    for (const spec of [
      { url: 'http://127.0.0.1/x', format: 'cloudevents' },
      { url: 'http://127.0.0.1/x', format: 'CloudEvents', cloudEvents: { mode: 'Batch' } },
      { url: 'http://127.0.0.1/x', format: 'CloudEvents', cloudEvents: { source: '' } },
      { url: 'http://127.0.0.1/x', format: 'CloudEvents', cloudEvents: { source: 'http://a/b c' } },
    ]) {
      const error = await create('bad-ce', spec).catch((e: unknown) => e);
      expect((error as { code?: number }).code, JSON.stringify(spec)).toBe(422);
    }
    await create('ce-batch', { url: receiver.url, format: 'CloudEvents', maxBatchEvents: 5 });
    const refused = await eventually(async () => {
      const r = condition((await get('ce-batch')).status, 'Ready');
      expect(r?.reason).toBe('InvalidSpec');
      return r;
    });
    expect(refused).toMatchObject({ status: 'False', message: expect.stringMatching(/^spec\.maxBatchEvents: must be 1 with format: CloudEvents in Binary mode/) });
    // RFC 3986's characters pass the CRD's pattern; whether they make a URI reference the controller asks the SDK.
    await create('ce-source', { url: receiver.url, format: 'CloudEvents', cloudEvents: { source: '//registry.example.com/[team]' } });
    await eventually(async () => expect(condition((await get('ce-source')).status, 'Ready')).toMatchObject({
      status: 'False', reason: 'InvalidSpec', message: 'spec.cloudEvents.source: "//registry.example.com/[team]" is not a URI reference (RFC 3986)',
    }));
    const own = await TestReceiver.start();
    try {
      await create('ce-binary', { url: own.url, format: 'CloudEvents', cloudEvents: { source: '//[::1]:5000/team-a' } });
      const stored = (await get('ce-binary')) as unknown as { spec: Record<string, unknown> };
      expect(stored.spec).toMatchObject({ format: 'CloudEvents', cloudEvents: { mode: 'Binary', source: '//[::1]:5000/team-a' } });
      await eventually(() => expect(server.endpoints.get(`${NS}/ce-binary`)).toBeDefined(), 5000);
      const [id] = await post();
      const [request] = await own.waitFor((q) => q.length > 0);
      expect(request?.headers).toMatchObject({ 'content-type': 'application/json', 'ce-id': id, 'ce-source': '//[::1]:5000/team-a', 'ce-specversion': '1.0' });
      expect(request?.json).toMatchObject({ id });
    } finally {
      for (const name of ['ce-batch', 'ce-source', 'ce-binary']) {
        await env.custom.deleteNamespacedCustomObject({ group: R.group, version: R.version, namespace: NS, plural: R.plural, name });
      }
      await eventually(() => expect(server.endpoints.get(`${NS}/ce-binary`)).toBeUndefined());
      await own.close();
    }
  });

  it('an endpoint aimed at the cloud metadata address is refused (EndpointRefused), nothing is dialled', async () => {
    await create('metadata', { url: 'http://169.254.169.254/latest/meta-data/' });
    const ready = await eventually(async () => {
      const r = condition((await get('metadata')).status, 'Ready');
      expect(r?.reason).toBe('EndpointRefused');
      return r;
    });
    expect(ready?.status).toBe('False');
    expect(ready?.message).toContain('169.254.169.254 is link-local');
    expect(server.endpoints.get(`${NS}/metadata`)).toBeUndefined();
    // Nothing runs, so nothing is known of the receiver: Unknown, not "True (Idle)".
    expect(condition((await get('metadata')).status, 'Delivering')).toMatchObject({ status: 'Unknown', reason: 'NotRunning' });
  });

  it('coalesce: the first pull is delivered, the others within the window are counted in status.coalesced; a 0s window is InvalidSpec', async () => {
    const quiet = await TestReceiver.start();
    try {
      await create('quiet', { url: quiet.url, coalesce: { actions: ['pull'], window: '1h' } });
      await eventually(async () => expect(condition((await get('quiet')).status, 'Ready')?.status).toBe('True'), 10_000);
      const pulls = makeEvents(5, 'coalesce').map((e) => ({ ...e, action: 'pull' })); // one repository and tag
      for (const event of pulls) {
        const response = await fetch(server.ingestUrl, { method: 'POST', headers: { 'content-type': EVENTS_MEDIA_TYPE }, body: JSON.stringify({ events: [event] }) });
        expect(response.status).toBe(202);
      }
      const status = await eventually(async () => {
        const s = (await get('quiet')).status;
        expect(s?.coalesced).toBe(4);
        expect(s?.delivered).toBe(1);
        return s;
      }, 10_000);
      expect(status?.pending).toBe(0);
      expect(quiet.events().map((e) => e.id)).toEqual(['coalesce-0']);
      await create('zero-window', { url: quiet.url, coalesce: { actions: ['pull'], window: '0s' } });
      const ready = await eventually(async () => {
        const r = condition((await get('zero-window')).status, 'Ready');
        expect(r?.reason).toBe('InvalidSpec');
        return r;
      });
      expect(ready?.message).toMatch(/spec\.coalesce\.window: must be longer than 0s/);
    } finally {
      await quiet.close();
    }
  });

  it('a failing receiver shows Delivering=False with a reason while Ready stays True', async () => {
    const failing = await TestReceiver.start();
    failing.respond(() => 503);
    try {
      await create('failing', { url: failing.url, threshold: 1, backoff: '10s' });
      await eventually(async () => expect(condition((await get('failing')).status, 'Ready')?.status).toBe('True'), 10_000);
      await post();
      const status = await eventually(async () => {
        const s = (await get('failing')).status;
        expect(condition(s, 'Delivering')?.status).toBe('False');
        return s;
      }, 10_000);
      expect(condition(status, 'Delivering')).toMatchObject({ reason: 'Failing' });
      expect(condition(status, 'Delivering')?.message).toContain('503 Service Unavailable');
      expect(condition(status, 'Ready')?.status).toBe('True');
      await eventually(async () => expect((await get('failing')).status?.pending).toBeGreaterThanOrEqual(1));
      const counted = (await get('failing')).status;
      expect(counted?.failures).toBeGreaterThanOrEqual(1);
      expect(counted?.failed).toBe((counted?.failures ?? 0) + (counted?.errors ?? 0));
    } finally {
      await failing.close();
    }
  });

  it('kubectl get nep (the server\'s Table): Failed counts refused connections, Delivering is Unknown where nothing runs', async () => {
    const closed = await TestReceiver.start();
    const url = closed.url;
    await closed.close(); // connections to it are refused: errors, not failures
    await create('refused', { url, threshold: 1, backoff: '10s' });
    await eventually(() => expect(server.endpoints.get(`${NS}/refused`)).toBeDefined(), 10_000);
    await post();
    await eventually(async () => expect((await get('refused')).status?.errors).toBeGreaterThanOrEqual(1), 10_000);
    const rows = await eventually(async () => {
      const table = await getTable();
      expect(table.get('refused')?.Failed).toBeGreaterThanOrEqual(1);
      return table;
    }, 10_000);
    const status = (await get('refused')).status;
    expect(rows.get('refused')).toMatchObject({ Ready: 'True', Delivering: 'False', Failed: status?.failed });
    expect(status).toMatchObject({ failures: 0, failed: status?.errors });
    expect(rows.get('metadata')).toMatchObject({ Ready: 'False', Delivering: 'Unknown' });
    expect(rows.get('hook')).toMatchObject({ Ready: 'True', Delivering: 'True', Failed: 0 });
    expect([...rows.values()][0] && Object.keys([...rows.values()][0]!)).toEqual(['Name', 'URL', 'Ready', 'Delivering', 'Pending', 'Delivered', 'Failed', 'Age']);
  });

  it('delete -> the endpoint is gone from the engine', async () => {
    expect(server.endpoints.get(`${NS}/failing`)).toBeDefined();
    await env.custom.deleteNamespacedCustomObject({ group: R.group, version: R.version, namespace: NS, plural: R.plural, name: 'failing' });
    await eventually(() => expect(server.endpoints.get(`${NS}/failing`)).toBeUndefined());
  });

  it('survives an apiserver restart and an etcd compaction (410 Gone), then sees new objects', { timeout: 90_000 }, async () => {
    const t0 = performance.now();
    await env.cluster.restartApiServer();
    console.log(`[measure] apiserver restarted in ${(performance.now() - t0).toFixed(0)} ms`);
    await create('after-restart', { url: receiver.url });
    await eventually(() => expect(server.endpoints.get(`${NS}/after-restart`)).toBeDefined(), 40_000);
    console.log(`[measure] after restart: new object live at ${(performance.now() - t0).toFixed(0)} ms`);
    // Make history, compact it away, then restart so the watches resume from a compacted resourceVersion.
    for (let i = 0; i < 3; i++) await replaceSpec('after-restart', { url: receiver.url, headers: [{ name: 'X-Rev', value: String(i) }] });
    await env.cluster.compactEtcd();
    await env.cluster.restartApiServer();
    await create('after-compaction', { url: other.url });
    await eventually(() => expect(server.endpoints.get(`${NS}/after-compaction`)).toBeDefined(), 40_000);
    console.log(`[measure] after compaction + restart: new object live at ${(performance.now() - t0).toFixed(0)} ms`);
    await eventually(() => expect(server.endpoints.get(`${NS}/after-restart`)?.config.headers).toEqual([['X-Rev', '2']]), 10_000);
    // The watches resumed from a compacted resourceVersion: the server answered 410 and the informers listed again.
    expect(logs.some((line) => line.includes('watch expired (410 Gone); listing again'))).toBe(true);
    expect(logs.join('')).not.toContain('Bearer');
  });
});
