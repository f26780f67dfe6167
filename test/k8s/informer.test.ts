// The informer against a fake API server (nock): KubeClusterApi's list and watch (the real client-node Watch and
// CustomObjectsApi) do the HTTP, the test scripts every list and watch answer and writes watch events into open
// streams. Waits go through an injected delay that records them, so no test sleeps. One case uses a real loopback
// server instead, because only a real socket can break in the middle of a response the way a network does.
import type { KubernetesObject } from '@kubernetes/client-node';
import nock from 'nock';
import { createServer, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { NOTIFICATION_ENDPOINT_RESOURCE as R } from '../../src/api/notification-endpoint.ts';
import type { ListWatch } from '../../src/k8s/cluster-api.ts';
import { Informer, keyOf } from '../../src/k8s/informer.ts';
import { KubeClusterApi } from '../../src/k8s/kube-cluster-api.ts';
import { until } from '../support/wait.ts';
import {
  captureLogs,
  fakeKubeConfig,
  FakeCollection,
  ManualDelay,
  statusBody,
  useFakeApiServer,
  type LogLine,
} from './support.ts';

type Obj = KubernetesObject & { spec?: { url: string } };

const PATH = `/apis/${R.group}/${R.version}/${R.plural}`;
const RANDOM = 0.25;
// What the informer asks the server for with random() = 0.25: 300 s plus up to a minute of jitter.
const TIMEOUT_SECONDS = 300 + Math.floor(RANDOM * 60);
const BACKOFF = { baseMs: 1000, maxMs: 8000 };

const obj = (name: string, resourceVersion: string, url = `http://127.0.0.1:9/${name}`): Obj => ({
  apiVersion: R.apiVersion,
  kind: R.kind,
  metadata: { name, namespace: 'ns', resourceVersion },
  spec: { url },
});

interface Harness {
  informer: Informer<Obj>;
  /** Every onEvent call as `TYPE namespace/name@resourceVersion`. */
  events: string[];
  objects: Obj[];
  delay: ManualDelay;
  logs: LogLine[];
  server: FakeCollection;
}

const cleanups = useFakeApiServer();

let port = 6443;

function harness(options: { free?: number; random?: () => number; server?: string } = {}): Harness {
  // Each test talks to its own address: client-node leaves connection pooling to undici's global dispatcher,
  // and a connection an earlier test aborted must not be able to disturb this one.
  const address = options.server ?? `https://127.0.0.1:${++port}`;
  const api = new KubeClusterApi(fakeKubeConfig(address));
  const events: string[] = [];
  const objects: Obj[] = [];
  const delay = new ManualDelay(options.free);
  const { logger, lines } = captureLogs();
  const informer = new Informer<Obj>({
    name: 'notificationendpoints',
    source: api.endpoints(undefined) as unknown as ListWatch<Obj>,
    onEvent: (type, object) => {
      events.push(`${type} ${keyOf(object)}@${object.metadata?.resourceVersion}`);
      objects.push(object);
    },
    logger,
    delay: delay.delay,
    random: options.random ?? (() => RANDOM),
    backoff: BACKOFF,
  });
  cleanups.push(() => informer.stop());
  return { informer, events, objects, delay, logs: lines, server: new FakeCollection(PATH, TIMEOUT_SECONDS, address) };
}

/** The keys and resourceVersions in the cache. */
const cached = (informer: Informer<Obj>): string[] =>
  informer.list().map((o) => `${keyOf(o)}@${o.metadata?.resourceVersion}`).sort();

describe('Informer: list, then watch', () => {
  it('lists, then watches from the list resourceVersion with bookmarks, as the service account', async () => {
    const h = harness();
    const list = h.server.list([obj('a', '1'), obj('b', '2')], '10');
    const watch = h.server.watch('10');
    h.informer.start();
    await h.informer.waitForSync();
    expect(h.informer.synced).toBe(true);
    expect(h.events).toEqual(['ADDED ns/a@1', 'ADDED ns/b@2']);
    const stream = await watch;
    expect(list.isDone()).toBe(true);
    expect(stream.search).toBe(`?watch=true&resourceVersion=10&allowWatchBookmarks=true&timeoutSeconds=${TIMEOUT_SECONDS}`);
    expect(stream.authorization).toBe('Bearer test-token-123');
    expect(cached(h.informer)).toEqual(['ns/a@1', 'ns/b@2']);
    expect(h.informer.get('ns/a')?.spec?.url).toBe('http://127.0.0.1:9/a');
    expect(h.delay.waits).toEqual([]);
  });

  it('ADDED, MODIFIED and DELETED events update the cache and reach onEvent in order', async () => {
    const h = harness();
    h.server.list([obj('a', '1')], '10');
    const first = h.server.watch('10');
    h.informer.start();
    const stream = await first;
    stream.send('ADDED', obj('c', '11'));
    stream.send('MODIFIED', obj('c', '12', 'http://127.0.0.1:9/c2'));
    stream.send('ADDED', obj('d', '13'));
    stream.send('DELETED', obj('a', '14'));
    await until(() => h.events.length === 5, "five events");
    expect(h.events).toEqual(['ADDED ns/a@1', 'ADDED ns/c@11', 'MODIFIED ns/c@12', 'ADDED ns/d@13', 'DELETED ns/a@14']);
    expect(cached(h.informer)).toEqual(['ns/c@12', 'ns/d@13']);
    expect(h.informer.get('ns/c')?.spec?.url).toBe('http://127.0.0.1:9/c2');
    expect(h.informer.get('ns/a')).toBeUndefined();
    // The server ends the watch (its timeout): the next one resumes from the last event, without a wait or a list.
    const second = h.server.watch('14');
    stream.end();
    await second;
    expect(h.delay.waits).toEqual([]);
  });

  it('caches objects without metadata.managedFields (listed or watched); everything else is kept', async () => {
    const h = harness();
    const managed = (o: Obj): Obj => ({ ...o, metadata: { ...o.metadata, labels: { team: 'a' }, managedFields: [{ manager: 'kubectl', operation: 'Apply', fieldsType: 'FieldsV1', fieldsV1: { 'f:spec': {} } }] } });
    h.server.list([managed(obj('a', '1'))], '10');
    const first = h.server.watch('10');
    h.informer.start();
    const stream = await first;
    stream.send('ADDED', managed(obj('b', '11')));
    await until(() => h.events.length === 2, 'two events');
    for (const key of ['ns/a', 'ns/b']) {
      expect(h.informer.get(key)?.metadata).not.toHaveProperty('managedFields');
      expect(h.informer.get(key)?.metadata?.labels).toEqual({ team: 'a' });
    }
    expect(h.objects.map((o) => o.metadata && 'managedFields' in o.metadata)).toEqual([false, false]);
  });

  it('a BOOKMARK advances the resourceVersion of the next watch without calling onEvent', async () => {
    const h = harness();
    h.server.list([obj('a', '1')], '10');
    const first = h.server.watch('10');
    h.informer.start();
    const stream = await first;
    stream.send('BOOKMARK', { apiVersion: R.apiVersion, kind: R.kind, metadata: { resourceVersion: '25', annotations: { 'k8s.io/initial-events-end': 'true' } } });
    const second = h.server.watch('25');
    stream.end();
    const next = await second;
    expect(next.search).toContain('resourceVersion=25&');
    expect(h.events).toEqual(['ADDED ns/a@1']);
    expect(cached(h.informer)).toEqual(['ns/a@1']);
    expect(h.delay.waits).toEqual([]);
  });
});

describe('Informer: 410 Gone makes it list again and report the difference', () => {
  it('a 410 answered on the watch request itself: relist at once (no backoff); DELETED for the gone, MODIFIED for the changed', async () => {
    const h = harness();
    h.server.list([obj('a', '1'), obj('b', '2'), obj('c', '3')], '10');
    h.server.watchFails('10', 410);
    h.server.list([obj('a', '1'), obj('b', '15', 'http://127.0.0.1:9/b2'), obj('d', '16')], '20');
    const watch = h.server.watch('20');
    h.informer.start();
    await watch;
    expect(h.events).toEqual([
      'ADDED ns/a@1', 'ADDED ns/b@2', 'ADDED ns/c@3',
      // the relist: a unchanged (nothing), b changed, d new, c gone
      'MODIFIED ns/b@15', 'ADDED ns/d@16', 'DELETED ns/c@3',
    ]);
    expect(cached(h.informer)).toEqual(['ns/a@1', 'ns/b@15', 'ns/d@16']);
    expect(h.informer.get('ns/b')?.spec?.url).toBe('http://127.0.0.1:9/b2');
    expect(h.delay.waits).toEqual([]);
    expect(h.logs.filter((l) => l.msg === 'watch expired (410 Gone); listing again')).toHaveLength(1);
    expect(h.logs.filter((l) => l.level === 'warn' || l.level === 'error')).toEqual([]);
  });

  it('410 after 410 without an event in between (a misbehaving proxy): the second relist backs off, so it never spins', async () => {
    const h = harness();
    h.server.list([obj('a', '1')], '10');
    h.server.watchFails('10', 410);
    h.server.list([obj('a', '1')], '20');
    h.server.watchFails('20', 410);
    h.server.list([obj('a', '1')], '30');
    const watch = h.server.watch('30');
    h.informer.start();
    const stream = await watch;
    expect(h.delay.waits).toHaveLength(1);
    expect(h.delay.waits[0]).toBeGreaterThanOrEqual(BACKOFF.baseMs / 2);
    expect(h.logs.filter((l) => l.msg === 'watch expired (410 Gone); listing again').map((l) => l.inARow)).toEqual([1, 2]);
    // An event resets the count: the next expiry relists at once again.
    stream.send('MODIFIED', obj('a', '31'));
    await until(() => h.events.length === 2, 'the MODIFIED event');
    h.server.list([obj('a', '31')], '40');
    const next = h.server.watch('40');
    stream.send('ERROR', statusBody(410, 'Expired', 'too old resource version'));
    await next;
    expect(h.delay.waits).toHaveLength(1);
  });

  it('a 410 delivered as an ERROR event inside a 200 stream: the informer closes that watch itself and relists', async () => {
    const h = harness();
    h.server.list([obj('a', '1'), obj('b', '2'), obj('c', '3')], '10');
    const first = h.server.watch('10');
    h.informer.start();
    const stream = await first;
    stream.send('MODIFIED', obj('a', '11', 'http://127.0.0.1:9/a2'));
    await until(() => h.events.length === 4, 'the MODIFIED event');
    h.server.list([obj('a', '11', 'http://127.0.0.1:9/a2'), obj('b', '17', 'http://127.0.0.1:9/b2'), obj('d', '18')], '20');
    const second = h.server.watch('20');
    // The API server sends this Status when the resourceVersion was compacted away; the stream is left open:
    // the informer must not wait for the server to close it.
    stream.send('ERROR', statusBody(410, 'Expired', 'too old resource version: 10 (15)'));
    const current = await second;
    expect(h.events).toEqual([
      'ADDED ns/a@1', 'ADDED ns/b@2', 'ADDED ns/c@3', 'MODIFIED ns/a@11',
      'MODIFIED ns/b@17', 'ADDED ns/d@18', 'DELETED ns/c@3',
    ]);
    expect(cached(h.informer)).toEqual(['ns/a@11', 'ns/b@17', 'ns/d@18']);
    expect(h.delay.waits).toEqual([]);
    expect(h.logs.some((l) => l.msg === 'watch expired (410 Gone); listing again')).toBe(true);
    // The abandoned stream is no longer read: an event written into the current watch after it (the marker)
    // arrives, and the late one, written first, did not.
    stream.send('ADDED', obj('late', '19'));
    stream.end();
    current.send('ADDED', obj('marker', '21'));
    await until(() => h.events.includes('ADDED ns/marker@21'), 'the marker on the current watch');
    expect(h.informer.get('ns/late')).toBeUndefined();
    expect(h.events.at(-1)).toBe('ADDED ns/marker@21');
  });
});

describe('Informer: failures back off with jittered exponential waits that reset on progress', () => {
  it('500 on list and on watch: waits grow (×2, jittered, capped) and start again from the base after progress', async () => {
    const h = harness();
    h.server.listFails(500, 3);
    h.server.list([obj('a', '1')], '10');
    h.server.watchFails('10', 500, 2);
    const progress = h.server.watch('10');
    h.informer.start();
    await h.informer.waitForSync();
    const stream = await progress;
    stream.send('ADDED', obj('x', '11'));
    await until(() => h.events.length === 2, 'the watch event');
    h.server.watchFails('11', 500, 1);
    const last = h.server.watch('11');
    stream.end();
    await last;
    // random() = 0.25 → floor + 0.25·(ceiling − floor), floor = base/2 = 500, ceiling = min(8000, 1000·2^(n−1)).
    expect(h.delay.waits).toEqual([
      625, 875, 1375, // list: n = 1, 2, 3
      625, 875, // watch after the list succeeded: the count starts again
      625, // after the watch delivered an event: again from the base
    ]);
    const failures = h.logs.filter((l) => l.msg === 'list/watch failed; retrying');
    expect(failures.map((l) => [l.level, l.failures, l.retryInMs, l.error])).toEqual([
      ['warn', 1, 625, 'HTTP 500'], ['warn', 2, 875, 'HTTP 500'], ['warn', 3, 1375, 'HTTP 500'],
      ['warn', 1, 625, 'HTTP 500'], ['warn', 2, 875, 'HTTP 500'],
      ['warn', 1, 625, 'HTTP 500'],
    ]);
  });

  it('each wait lies between base/2 and min(max, base·2^(n−1)): both ends of the jitter, up to the cap', async () => {
    const randoms = [0, 0.999_999, 0.999_999, 0.999_999, 0.999_999, 0];
    const h = harness({ random: () => randoms.shift() ?? 0.5 });
    h.server.listFails(503, 6);
    h.server.list([], '10');
    // random() was used up by the six failures; the watch draws 0.5.
    h.server = new FakeCollection(PATH, 300 + 30, h.server.server);
    const watch = h.server.watch('10');
    h.informer.start();
    await watch;
    expect(h.delay.waits).toEqual([500, 2000, 4000, 8000, 8000, 500]);
  });

  it('a watch that the server closes at once without any event counts as a failure (no hammering)', async () => {
    const h = harness();
    h.server.list([], '10');
    const empty = h.server.watch('10');
    h.informer.start();
    (await empty).end();
    const again = h.server.watch('10');
    await again;
    expect(h.delay.waits).toEqual([625]);
    expect(h.logs.find((l) => l.msg === 'list/watch failed; retrying')?.error).toBe('watch closed at once');
  });

  it('403 is logged at error level with the RBAC hint and retried, on the list and on the watch', async () => {
    const h = harness();
    h.server.listFails(403);
    h.server.list([obj('a', '1')], '10');
    h.server.watchFails('10', 403);
    const watch = h.server.watch('10');
    h.informer.start();
    await watch;
    expect(h.events).toEqual(['ADDED ns/a@1']);
    const failures = h.logs.filter((l) => l.msg === 'list/watch failed; retrying');
    expect(failures.map((l) => [l.level, l.resource, l.error])).toEqual([
      ['error', 'notificationendpoints', 'HTTP 403 (forbidden: check the RBAC rules of the service account)'],
      ['error', 'notificationendpoints', 'HTTP 403 (forbidden: check the RBAC rules of the service account)'],
    ]);
    expect(h.delay.waits).toEqual([625, 625]);
  });
});

describe('Informer: a broken watch resumes where it was', () => {
  it('a stream dropped mid-way (mock: reads as a close) resumes from the last resourceVersion seen, without a list', async () => {
    const h = harness();
    h.server.list([], '10');
    const first = h.server.watch('10');
    h.informer.start();
    const stream = await first;
    stream.send('ADDED', obj('a', '11'));
    stream.send('ADDED', obj('b', '12'));
    await until(() => h.events.length === 2, 'two events');
    const second = h.server.watch('12');
    stream.drop();
    const next = await second;
    next.send('MODIFIED', obj('a', '13'));
    await until(() => h.events.length === 3, 'the event on the new watch');
    expect(h.events).toEqual(['ADDED ns/a@11', 'ADDED ns/b@12', 'MODIFIED ns/a@13']);
    expect(h.delay.waits).toEqual([]);
  });

  describe('against a real loopback server whose socket is destroyed in the middle of a response', () => {
    let server: Server;
    const requests: string[] = [];
    let script: ((url: URL, response: ServerResponse) => void)[] = [];

    beforeEach(async () => {
      nock.enableNetConnect('127.0.0.1');
      server = createServer((request, response) => {
        const url = new URL(request.url ?? '/', 'http://127.0.0.1');
        requests.push(`${url.pathname}${url.search}`);
        const next = script.shift();
        if (next) next(url, response);
        else response.writeHead(500).end();
      });
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    });

    afterEach(async () => {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    });

    it('the client sees a network error, waits once (first backoff step) and resumes from the last resourceVersion', async () => {
      const { port } = server.address() as AddressInfo;
      const line = (type: string, o: object): string => `${JSON.stringify({ type, object: o })}\n`;
      let resumed: ServerResponse | undefined;
      script = [
        (_url, response) => response.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ metadata: { resourceVersion: '10' }, items: [] })),
        (_url, response) => {
          response.writeHead(200, { 'content-type': 'application/json' });
          response.write(line('ADDED', obj('a', '11')));
          // half an event, then the connection dies
          response.write(line('ADDED', obj('b', '12')).slice(0, 20), () => setImmediate(() => response.socket?.destroy()));
        },
        (_url, response) => {
          resumed = response;
          response.writeHead(200, { 'content-type': 'application/json' });
          response.write(line('ADDED', obj('c', '12')));
        },
      ];
      const h = harness({ server: `http://127.0.0.1:${port}` });
      h.informer.start();
      await until(() => h.events.length === 2, 'the event after the reconnect');
      expect(requests).toEqual([
        PATH,
        `${PATH}?watch=true&resourceVersion=10&allowWatchBookmarks=true&timeoutSeconds=${TIMEOUT_SECONDS}`,
        `${PATH}?watch=true&resourceVersion=11&allowWatchBookmarks=true&timeoutSeconds=${TIMEOUT_SECONDS}`,
      ]);
      expect(h.events).toEqual(['ADDED ns/a@11', 'ADDED ns/c@12']);
      expect(h.delay.waits).toEqual([625]);
      expect(resumed).toBeDefined();
      await h.informer.stop();
    });
  });
});

describe('Informer: stop()', () => {
  it('ends a held backoff wait, resolves waitForSync waiters and makes no further request', async () => {
    const h = harness({ free: 0 });
    h.server.listFails(500);
    h.informer.start();
    let synced = false;
    const waiting = h.informer.waitForSync().then(() => void (synced = true));
    await until(() => h.delay.held === 1, 'the backoff wait');
    expect(synced).toBe(false);
    await h.informer.stop();
    await waiting;
    expect(synced).toBe(true);
    expect(h.informer.synced).toBe(false);
    expect(h.delay.waits).toEqual([625]);
    expect(h.delay.held).toBe(0);
    await h.informer.waitForSync(); // after stop: at once
    await h.informer.stop(); // idempotent
  });

  it('closes an open watch: events written afterwards are not seen, and no new watch is opened', async () => {
    const h = harness();
    const other = harness(); // still watching: the marker
    h.server.list([obj('a', '1')], '10');
    other.server.list([], '10');
    const [watch, otherWatch] = [h.server.watch('10'), other.server.watch('10')];
    h.informer.start();
    other.informer.start();
    const [stream, marker] = await Promise.all([watch, otherWatch]);
    await h.informer.stop();
    stream.send('ADDED', obj('b', '11'));
    stream.end();
    // Written after, through the same client and mock: once it is seen, the event above would have been too.
    marker.send('ADDED', obj('marker', '11'));
    await until(() => other.events.length === 1, "the marker on the other informer's watch");
    expect(h.events).toEqual(['ADDED ns/a@1']);
    expect(h.informer.get('ns/b')).toBeUndefined();
    expect(h.delay.waits).toEqual([]);
  });

  it('does not wait for a watch request whose response has not started (client-node only gives up after 30 s)', async () => {
    const h = harness();
    h.server.list([], '10');
    let open!: () => void;
    const gate = new Promise<void>((resolve) => (open = resolve));
    const watch = h.server.watch('10', { gate });
    h.informer.start();
    await h.informer.waitForSync();
    await until(() => nock.pendingMocks().length === 0, 'the watch request');
    // A second informer whose watch answers through the same gate, after this one's: the marker.
    const other = harness();
    other.server.list([], '10');
    const otherWatch = other.server.watch('10', { gate });
    other.informer.start();
    await other.informer.waitForSync();
    await until(() => nock.pendingMocks().length === 0, "the other informer's watch request");
    const outcome = await Promise.race([
      h.informer.stop().then(() => 'stopped'),
      // a deadline for stop(), not a synchronisation: client-node would hold it for 30 s
      new Promise((resolve) => setTimeout(resolve, 3000, 'still waiting after 3 s').unref()),
    ]);
    expect(outcome).toBe('stopped');
    // The late answer is thrown away: the other informer's answer, which started after it and carries an event
    // written after its, is seen; the late one is not.
    open();
    const [stream, marker] = await Promise.all([watch, otherWatch]);
    stream.send('ADDED', obj('late', '11'));
    stream.end();
    marker.send('ADDED', obj('marker', '11'));
    await until(() => other.events.length === 1, "the marker on the other informer's watch");
    expect(h.events).toEqual([]);
  });
});
