// End-to-end, the real chain: skopeo → the real Distribution registry (Debian docker-registry 2.8) → registry-notifier
// (`node src/main.ts serve`, a child process) → four loopback webhook receivers defined as NotificationEndpoint files.
//
// Between the registry and the ingest sits a transparent tap (a TestReceiver whose responder forwards each request
// and relays the answer): it records exactly what the registry emitted, in the registry's order, with the
// registry's own Authorization header. That recording is the ground truth every receiver is compared with.
import { readFileSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { buildOciLayout, OCI_MEDIA_TYPES, type OciLayout } from '../support/oci-image.ts';
import { type ReceivedEvent, type RecordedRequest, type ScriptedResponse, TestReceiver } from '../support/receiver.ts';
import { e2eToolsAvailable, REGISTRY_BIN, TestRegistry } from '../support/registry.ts';
import { until } from '../support/wait.ts';
import { allows, type FilterSpec, metric, summarize } from './expectations.ts';
import { NotifierProcess } from './notifier-process.ts';

const INGEST_TOKEN = 'e2e-ingest-s3cret';
const RECEIVER_SECRET = 'Bearer e2e-receiver-s3cret';
const EVENTS_TYPE = 'application/vnd.docker.distribution.events.v1+json';
const BLOB = 'application/octet-stream'; // 2.8 reports every blob with this media type
const VERSION = (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version;
const WAIT_MS = 10_000;

const available = e2eToolsAvailable();
if (!available && !process.env.CI) {
  console.warn(
    `\n!!! SKIPPING the registry → registry-notifier → webhooks e2e suite: ${REGISTRY_BIN} or skopeo is missing.\n` +
      '!!! Run `bash hack/install-e2e-deps.sh` (as root) to enable it. In CI this suite fails instead.\n',
  );
}

type Name = 'all' | 'pushes-to-demo' | 'tags-v' | 'batched';
/** The four endpoints: name → spec without `url` (added once the receivers listen). */
const SPECS: Record<Name, FilterSpec & Record<string, unknown>> = {
  all: {
    maxBatchEvents: 1,
    headers: [
      { name: 'X-Team', value: 'platform' },
      { name: 'Authorization', valueFrom: { secretKeyRef: { name: 'all-receiver', key: 'token' } } },
    ],
  },
  'pushes-to-demo': {
    ignore: { actions: ['pull'] },
    filter: { repositories: { include: ['demo/**'] } },
    ignoredMediaTypes: [BLOB],
  },
  'tags-v': { filter: { tags: { include: ['v*'] } } },
  // The first POST is held until more events are queued (see beforeAll), so a timeout above the hold.
  batched: { maxBatchEvents: 50, timeout: '10s' },
};
const NAMES = Object.keys(SPECS) as Name[];

describe.skipIf(!available && !process.env.CI)('registry → registry-notifier → webhooks (e2e)', { timeout: 30_000 }, () => {
  let work: string;
  let notifier: NotifierProcess;
  let registry: TestRegistry;
  let tap: TestReceiver;
  let app: OciLayout;
  let team: OciLayout;
  const receivers = {} as Record<Name, TestReceiver>;
  const timings: Record<string, number> = {};
  const others: TestRegistry[] = [];
  /** What the registry emitted and the ingest accepted (202), first sending of each id, in the registry's order. */
  let truth: ReceivedEvent[] = [];
  const expected = {} as Record<Name, ReceivedEvent[]>;

  const ids = (events: readonly ReceivedEvent[]): string[] => events.map((e) => e.id);
  const time = async <T>(name: string, fn: () => Promise<T>): Promise<T> => {
    const started = performance.now();
    try {
      return await fn();
    } finally {
      timings[name] = Math.round(performance.now() - started);
    }
  };
  const statuses = async (): Promise<Array<Record<string, unknown> & { name: string }>> => {
    const res = await notifier.admin('/endpoints');
    if (res.status !== 200) throw new Error(`GET /endpoints answered ${res.status}: ${res.text}`);
    return JSON.parse(res.text) as Array<Record<string, unknown> & { name: string }>;
  };
  const describeAll = async (): Promise<string> =>
    [
      `tap (registry → ingest):\n${tap?.describe()}`,
      ...NAMES.map((n) => `${n}:\n${receivers[n]?.describe()}`),
      `GET /endpoints: ${await statuses().then(JSON.stringify, String)}`,
      notifier?.describe(),
    ].join('\n');

  /** The tap's responder: forwards the registry's request to the ingest unchanged, relays status and body. */
  async function forward(req: RecordedRequest): Promise<ScriptedResponse> {
    const headers: Record<string, string> = {};
    for (const name of ['authorization', 'content-type', 'user-agent']) {
      const value = req.headers[name];
      if (typeof value === 'string') headers[name] = value;
    }
    const res = await fetch(notifier.ingestUrl, { method: req.method, headers, body: req.body, signal: AbortSignal.timeout(5_000) });
    return { status: res.status, body: await res.text(), headers: { 'content-type': res.headers.get('content-type') ?? 'text/plain' } };
  }

  beforeAll(async () => {
    if (!available) throw new Error(`${REGISTRY_BIN} or skopeo missing (CI=${process.env.CI}): run hack/install-e2e-deps.sh`);
    await time('start', async () => {
      work = await mkdtemp(join(tmpdir(), 'registry-notifier-e2e-chain-'));
      for (const name of NAMES) receivers[name] = await TestReceiver.start({ path: `/hooks/${name}` });
      // Hold `batched`'s first POST until the registry has sent 3 events, so the next POST carries several.
      let held = false;
      receivers.batched.respond(async () => {
        if (held) return 200;
        held = true;
        await tap.waitFor(() => tap.events({ acceptedOnly: true }).length >= 3, 5_000).catch(() => undefined); // < timeout 10s
        return 200;
      });
      const endpointsDir = join(work, 'endpoints');
      await mkdir(endpointsDir);
      for (const name of NAMES) {
        const doc = { apiVersion: 'registry-notifier.io/v1alpha1', kind: 'NotificationEndpoint', metadata: { name }, spec: { url: receivers[name].url, ...SPECS[name] } };
        await writeFile(join(endpointsDir, `${name}.yaml`), stringify(doc));
      }
      await mkdir(join(work, 'secrets', 'all-receiver'), { recursive: true });
      await writeFile(join(work, 'secrets', 'all-receiver', 'token'), `${RECEIVER_SECRET}\n`); // as `--from-file` writes it
      await writeFile(join(work, 'ingest-token'), `${INGEST_TOKEN}\n`);
      notifier = await NotifierProcess.start([
        '--listen', '127.0.0.1:0', '--metrics-listen', '127.0.0.1:0',
        '--endpoints', endpointsDir, '--secrets-dir', join(work, 'secrets'),
        '--ingest-token-file', join(work, 'ingest-token'),
        '--allow-endpoint-cidrs', '127.0.0.1/32', '--shutdown-grace', '5s', '--log-level', 'info',
      ]);
      expect(notifier.ingestUrl).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/events$/);
      expect(notifier.adminUrl).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
      tap = await TestReceiver.start();
      tap.respond(forward);
      [registry, app, team] = await Promise.all([
        TestRegistry.start({ notifyUrl: tap.url, token: INGEST_TOKEN, threshold: 3, backoff: '100ms' }),
        buildOciLayout(join(work, 'app'), { seed: 'e2e-app' }),
        buildOciLayout(join(work, 'team'), { seed: 'e2e-team' }),
      ]);
    });
  });

  afterAll(async () => {
    await Promise.allSettled([registry?.stop(), ...others.map((r) => r.stop()), notifier?.kill()]);
    await Promise.allSettled([tap?.close(), ...NAMES.map((n) => receivers[n]?.close())]);
    if (work && !process.env.E2E_KEEP_DIRS) await rm(work, { recursive: true, force: true });
    console.info(`registry-notifier e2e timings (ms): ${JSON.stringify(timings)}`);
  });

  it('is ready with all four endpoints configured', async () => {
    expect((await notifier.admin('/readyz')).status).toBe(200);
    const list = await statuses();
    expect(list.map((s) => s.name).sort()).toEqual([...NAMES].sort());
    for (const s of list) expect(s, s.name).toMatchObject({ ready: true, reason: 'Configured', pending: 0, delivered: 0 });
  });

  it('skopeo push, push, copy, push, pull, delete: the registry emits them all through the ingest', async () => {
    await time('operations', async () => {
      await registry.push(app.dir, 'demo/app', 'v1');
      await registry.push(app.dir, 'demo/app', 'latest');
      await registry.copy('demo/app:v1', 'demo/other:v1');
      await registry.push(team.dir, 'team/x', 'v2');
      await registry.pull('demo/app', 'v1', join(work, 'pulled'));
      await registry.deleteManifest('demo/app', app.manifestDigest);
    });
    // The registry sends from one queue in order: once the delete's events are through, everything is.
    const deleted = (e: ReceivedEvent, m: Partial<ReceivedEvent['target']>): boolean =>
      e.action === 'delete' && e.target.repository === 'demo/app' && Object.entries(m).every(([k, v]) => e.target[k] === v);
    // Answered, not merely received: a request still being forwarded has no status yet.
    await time('registry→ingest', () =>
      tap.waitFor(() => {
        const accepted = tap.events({ acceptedOnly: true });
        return [{ digest: app.manifestDigest }, { tag: 'v1' }, { tag: 'latest' }].every((m) => accepted.some((e) => deleted(e, m)));
      }, WAIT_MS),
    );
    for (const r of tap.requests) {
      expect(r.status, `tap #${r.seq}: ${r.text}`).toBe(202); // the registry's own Authorization was accepted by the ingest
      expect(r.headers.authorization).toBe(`Bearer ${INGEST_TOKEN}`);
      expect(r.headers['content-type']).toBe(EVENTS_TYPE);
    }
    const seen = new Set<string>();
    truth = tap.events({ acceptedOnly: true }).filter((e) => !seen.has(e.id) && seen.add(e.id));
    for (const name of NAMES) expected[name] = truth.filter((e) => allows(SPECS[name], e));
    // The scenario produced what it is meant to exercise.
    const instanceIds = new Set(truth.map((e) => e.source?.instanceID));
    expect(instanceIds.size).toBe(1);
    expect(truth.some((e) => e.action === 'mount' && e.target.repository === 'demo/other' && e.target.fromRepository === 'demo/app')).toBe(true);
    expect(truth.some((e) => e.action === 'pull' && e.target.repository === 'demo/app' && e.target.tag === 'v1')).toBe(true);
    expect(truth.some((e) => e.action === 'push' && e.target.repository === 'team/x' && e.target.tag === 'v2')).toBe(true);
    console.info(`registry emitted ${truth.length} events:\n${truth.map((e, i) => `  ${i + 1}. ${summarize(e)}`).join('\n')}`);
  });

  it('every receiver gets exactly what its filters allow, in the registry order, with no duplicates', async () => {
    await time('ingest→receivers', async () => {
      for (const name of NAMES) {
        await receivers[name].waitForEvents((got) => got.length >= expected[name].length, WAIT_MS).catch(async (err: Error) => {
          throw new Error(`${name}: ${err.message}\n${await describeAll()}`);
        });
      }
      // Delivered and nothing left queued anywhere: no late extra can arrive after this.
      await until(
        async () => (await statuses()).every((s) => s.pending === 0 && s.delivered === expected[s.name as Name].length),
        async () => `every queue empty and every count delivered\n${await describeAll()}`, WAIT_MS,
      );
    });
    for (const name of NAMES) {
      const got = receivers[name].events();
      expect(ids(got), `${name} ids (got vs allowed)`).toEqual(ids(expected[name]));
      expect(new Set(ids(got)).size, `${name} duplicates`).toBe(got.length);
      expect(receivers[name].requests.every((r) => r.status === 200 && r.method === 'POST')).toBe(true);
    }
    // The oracle agrees with what each filter is for (guards the oracle itself).
    const demoManifestsAndDeletes = (e: ReceivedEvent): boolean =>
      e.target.repository.startsWith('demo/') && ((e.action === 'push' && e.target.mediaType === OCI_MEDIA_TYPES.manifest) || e.action === 'delete');
    expect(expected['pushes-to-demo'].every(demoManifestsAndDeletes)).toBe(true);
    expect(expected['pushes-to-demo'].map(summarize)).toEqual(expect.arrayContaining([
      `push demo/app:v1 @${app.manifestDigest.slice(7, 19)} vnd.oci.image.manifest.v1+json`,
      `push demo/app:latest @${app.manifestDigest.slice(7, 19)} vnd.oci.image.manifest.v1+json`,
      `push demo/other:v1 @${app.manifestDigest.slice(7, 19)} vnd.oci.image.manifest.v1+json`,
      `delete demo/app @${app.manifestDigest.slice(7, 19)} no-mediaType`,
      'delete demo/app:v1 no-mediaType',
      'delete demo/app:latest no-mediaType',
    ]));
    expect(expected['tags-v'].every((e) => e.target.tag?.startsWith('v'))).toBe(true);
    expect(expected['tags-v'].map((e) => `${e.action} ${e.target.repository}:${e.target.tag}`)).toEqual(expect.arrayContaining([
      'push demo/app:v1', 'push demo/other:v1', 'push team/x:v2', 'pull demo/app:v1', 'delete demo/app:v1',
    ]));
    expect(expected.all).toHaveLength(truth.length);
    const report = NAMES.map((n) => `${n} (${expected[n].length} events, ${receivers[n].requests.length} POSTs):\n` +
      receivers[n].requests.map((r) => `  POST ${(r.json as { events: ReceivedEvent[] }).events.map(summarize).join(' | ')}`).join('\n'));
    console.info(report.join('\n'));
  });

  it('`all` got every registry event intact: ids, request, source, actor, mount origin; one per POST with its headers', () => {
    const got = receivers.all.events();
    for (const [i, event] of got.entries()) {
      // Field for field and in the registry's key order.
      expect(JSON.stringify(event), `event ${i}`).toBe(JSON.stringify(truth[i]));
      expect(event).toMatchObject({
        id: expect.stringMatching(/^[0-9a-f-]{36}$/),
        request: { useragent: expect.stringContaining('skopeo'), host: registry.host },
        source: { instanceID: truth[0]!.source!.instanceID },
        actor: expect.any(Object),
      });
    }
    const mount = got.find((e) => e.action === 'mount');
    expect(mount?.target).toMatchObject({ repository: 'demo/other', fromRepository: 'demo/app', digest: app.layerDigest });
    expect(receivers.all.requests).toHaveLength(got.length);
    for (const r of receivers.all.requests) {
      expect((r.json as { events: unknown[] }).events).toHaveLength(1);
      expect(r.headers['content-type']).toBe(EVENTS_TYPE);
      expect(r.headers['user-agent']).toBe(`registry-notifier/${VERSION}`);
      expect(r.headers['x-team']).toBe('platform');
      expect(r.headers.authorization).toBe(RECEIVER_SECRET); // from <secrets-dir>/all-receiver/token, newline stripped
    }
    for (const name of NAMES.filter((n) => n !== 'all')) {
      for (const r of receivers[name].requests) {
        expect(r.headers['content-type']).toBe(EVENTS_TYPE);
        expect(r.headers['user-agent']).toBe(`registry-notifier/${VERSION}`);
        expect(r.headers['x-team']).toBeUndefined();
        expect(r.headers.authorization).toBeUndefined(); // the registry's ingest token never travels on
      }
    }
  });

  it('`batched` envelopes hold several events (≤ 50), in queue order', () => {
    const sizes = receivers.batched.requests.map((r) => (r.json as { events: unknown[] }).events.length);
    expect(Math.max(...sizes), `batch sizes ${JSON.stringify(sizes)}`).toBeGreaterThan(1);
    expect(sizes.every((n) => n >= 1 && n <= 50)).toBe(true);
    expect(ids(receivers.batched.events())).toEqual(ids(truth));
  });

  it('GET /endpoints and /metrics count what the receivers got', async () => {
    const list = await statuses();
    for (const name of NAMES) {
      const s = list.find((x) => x.name === name);
      expect(s, name).toMatchObject({
        url: receivers[name].url, ready: true, pending: 0, delivered: expected[name].length, failures: 0, errors: 0, deadLettered: 0,
        delivering: { status: 'True', reason: 'Succeeded' },
        responses: [{ code: 200, count: receivers[name].requests.length }],
      });
    }
    const res = await notifier.admin('/metrics');
    expect(res.status).toBe(200);
    expect(res.text).toContain(`registry_notifications_events_total{type="Successes",endpoint="all"} ${truth.length}`);
    for (const name of NAMES) {
      expect(metric(res.text, 'registry_notifications_events_total', { type: 'Successes', endpoint: name }), name).toBe(expected[name].length);
      expect(metric(res.text, 'registry_notifications_events_total', { type: 'Events', endpoint: name }), name).toBe(expected[name].length);
    }
    expect(metric(res.text, 'registry_notifier_ingest_events_total', {})).toBe(truth.length);
    expect(metric(res.text, 'registry_notifier_ingest_requests_total', { code: '202' })).toBe(tap.requests.length);
  });

  it('a registry with the wrong token gets 401 (its log shows it) and nothing reaches any receiver', async () => {
    const before = NAMES.map((n) => receivers[n].requests.length);
    const intruder = await time('wrong-token', async () => {
      const r = await TestRegistry.start({ notifyUrl: notifier.ingestUrl, token: 'not-the-token', threshold: 1, backoff: '50ms' });
      others.push(r);
      await r.push(app.dir, 'demo/intruder', 'v9'); // would match every endpoint's filters
      await until(async () => /401 Unauthorized/.test(await r.logs()), async () => `a 401 in the registry's log\n${await r.logs()}`, WAIT_MS);
      await until(async () => {
        const n = metric((await notifier.admin('/metrics')).text, 'registry_notifier_ingest_requests_total', { code: '401' });
        return n !== undefined && n >= 1;
      }, async () => `a 401 counted by the ingest\n${await describeAll()}`, WAIT_MS);
      return r;
    });
    const line = (await intruder.logs()).split('\n').find((l) => l.includes('401 Unauthorized'));
    console.info(`intruder registry log: ${line}`);
    await intruder.stop();
    for (const s of await statuses()) expect(s, s.name).toMatchObject({ pending: 0, delivered: expected[s.name as Name].length });
    expect(NAMES.map((n) => receivers[n].requests.length)).toEqual(before);
    for (const name of NAMES) {
      expect(receivers[name].events().filter((e) => e.target.repository === 'demo/intruder' || e.source?.instanceID !== truth[0]!.source!.instanceID)).toEqual([]);
    }
  });

  it('SIGTERM drains and exits 0', async () => {
    const exit = await time('sigterm', () => notifier.stop('SIGTERM'));
    expect(exit, notifier.describe()).toEqual({ code: 0, signal: null });
    expect(notifier.logs.find((l) => l.msg === 'stopped'), notifier.describe()).toMatchObject({ undelivered: 0 });
    expect(notifier.logs.filter((l) => l.level === 'error' || l.level === 'fatal'), notifier.describe()).toEqual([]);
  });
});
