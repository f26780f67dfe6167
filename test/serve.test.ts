// startServer in-process: real endpoint files, real ingest and admin servers on 127.0.0.1, real receivers.
import { mkdir, mkdtemp, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import { parseCommand, type ServeConfig } from '../src/config.ts';
import { createLogger } from '../src/log.ts';
import type { EndpointStatus } from '../src/status/endpoint-status.ts';
import { EVENTS_MEDIA_TYPE, type Event } from '../src/notifications/event.ts';
import { startServer, type Running } from '../src/serve.ts';
import { makeEvents } from './support/events.ts';
import { ed25519KeyPair, verifiedV1a as verified } from './support/ed25519.ts';
import { TestReceiver, type RecordedRequest } from './support/receiver.ts';
import { until } from './support/wait.ts';

const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!().catch(() => {});
});

const TOKEN = 'ingest-token-5d1c0b7e';
const SECRET_HEADER = 'secret-header-value-93af';

function endpointDoc(name: string, spec: Record<string, unknown>): string {
  return `apiVersion: registry-notifier.io/v1alpha1\nkind: NotificationEndpoint\nmetadata:\n  name: ${name}\nspec: ${JSON.stringify(spec)}\n`;
}

async function receiver(): Promise<TestReceiver> {
  const r = await TestReceiver.start();
  cleanups.push(() => r.close());
  return r;
}

/** A URL nothing listens on: a receiver's, after it closed. */
async function deadUrl(): Promise<string> {
  const r = await TestReceiver.start();
  await r.close();
  return r.url;
}

interface Started {
  server: Running;
  /** The `--secrets-dir`. */
  secrets: string;
  /** Every JSON log line so far. */
  logs: Record<string, unknown>[];
  rawLogs: string[];
  post(events: Event[], token?: string): Promise<Response>;
  admin(path: string): Promise<Response>;
}

/** Writes `endpoints.yaml` (and secrets), then starts the server on 127.0.0.1 port 0 with `extra` flags. */
async function start(documents: string[], extra: string[] = [], secrets: Record<string, string> = {}): Promise<Started> {
  const dir = await mkdtemp(join(tmpdir(), 'rn-serve-'));
  cleanups.push(() => rm(dir, { recursive: true, force: true }));
  await writeFile(join(dir, 'endpoints.yaml'), documents.join('---\n'));
  await writeFile(join(dir, 'token'), `${TOKEN}\n`);
  for (const [path, value] of Object.entries(secrets)) {
    await mkdir(join(dir, 'secrets', path, '..'), { recursive: true });
    await writeFile(join(dir, 'secrets', path), value);
  }
  const config = parseCommand([
    'serve', '--listen', '127.0.0.1:0', '--metrics-listen', '127.0.0.1:0', '--endpoints', join(dir, 'endpoints.yaml'),
    '--secrets-dir', join(dir, 'secrets'), '--ingest-token-file', join(dir, 'token'), '--allow-endpoint-cidrs', '127.0.0.0/8', ...extra,
  ], {}) as ServeConfig;
  const rawLogs: string[] = [];
  const logs: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      for (const line of chunk.toString().split('\n').filter(Boolean)) {
        rawLogs.push(line);
        logs.push(JSON.parse(line) as Record<string, unknown>);
      }
      callback();
    },
  });
  const server = await startServer(config, createLogger('debug', sink));
  // shutdown is idempotent: a test that already shut down gets the same promise
  cleanups.push(() => server.shutdown());
  return {
    server,
    secrets: join(dir, 'secrets'),
    logs,
    rawLogs,
    post: (events, token = TOKEN) =>
      fetch(server.ingestUrl, {
        method: 'POST',
        headers: { 'content-type': EVENTS_MEDIA_TYPE, authorization: `Bearer ${token}` },
        body: JSON.stringify({ events }),
        signal: AbortSignal.timeout(5000),
      }),
    admin: (path) => fetch(`${server.adminUrl}${path}`, { signal: AbortSignal.timeout(5000) }),
  };
}

describe('startServer', () => {
  it('serves: ready, /endpoints with every endpoint (refused ones with their reason), ingest to receiver, metrics', async () => {
    const [ra, rb] = await Promise.all([receiver(), receiver()]);
    const s = await start([
      endpointDoc('a', { url: ra.url, headers: [{ name: 'X-Secret', valueFrom: { secretKeyRef: { name: 'hdr', key: 'value' } } }] }),
      endpointDoc('b', { url: rb.url.replace('http://', 'http://user:pa55word@'), filter: { repositories: { include: ['team/**'] } } }),
      endpointDoc('off', { url: rb.url, disabled: true }),
      endpointDoc('bad', { url: rb.url, timeout: 500 }),
      endpointDoc('nosecret', { url: rb.url, headers: [{ name: 'X-Token', valueFrom: { secretKeyRef: { name: 'missing', key: 'token' } } }] }),
    ], [], { 'hdr/value': `${SECRET_HEADER}\n` });
    expect(s.server.ingestUrl).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/events$/);
    expect(s.server.adminUrl).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    expect((await s.admin('/readyz')).status).toBe(200);
    expect((await s.admin('/healthz')).status).toBe(200);

    const listed = (await (await s.admin('/endpoints')).json()) as EndpointStatus[];
    const byName = new Map(listed.map((e) => [e.name, e]));
    expect([...byName.keys()].sort()).toEqual(['a', 'b', 'bad', 'nosecret', 'off']);
    expect(byName.get('a')).toMatchObject({ url: ra.url, ready: true, reason: 'Configured', pending: 0, delivering: { status: 'True', reason: 'Idle' } });
    expect(byName.get('b')).toMatchObject({ url: rb.url, ready: true }); // credentials removed
    expect(byName.get('off')).toMatchObject({ url: rb.url, ready: false, reason: 'Disabled' });
    expect(byName.get('bad')).toMatchObject({ url: '', ready: false, reason: 'InvalidSpec' });
    expect(byName.get('bad')?.message).toMatch(/^spec\.timeout: /);
    expect(byName.get('nosecret')).toMatchObject({ ready: false, reason: 'SecretNotFound', message: 'Secret missing not found' });

    expect((await s.post(makeEvents(1, 'x'), 'wrong')).status).toBe(401);
    const answer = await s.post([...makeEvents(2, 'ev'), ...makeEvents(1, 'team', { repository: 'team/app' })]);
    expect(answer.status).toBe(202);
    expect(await answer.json()).toEqual({ accepted: 3, duplicates: 0 });
    await ra.waitFor(() => ra.events({ acceptedOnly: true }).length === 3);
    expect(ra.events().map((e) => e.id)).toEqual(['ev-0', 'ev-1', 'team-0']);
    expect(ra.requests[0]!.headers['x-secret']).toBe(SECRET_HEADER);
    expect(ra.requests[0]!.headers['user-agent']).toMatch(/^registry-notifier\/\d+\.\d+\.\d+/);
    await rb.waitFor(() => rb.events({ acceptedOnly: true }).length === 1);
    expect(rb.events().map((e) => e.id)).toEqual(['team-0']); // filtered; the disabled endpoint sent nothing
    expect(rb.requests[0]!.headers.authorization).toBe(`Basic ${Buffer.from('user:pa55word').toString('base64')}`);

    await until(async () => ((await (await s.admin('/endpoints')).json()) as EndpointStatus[]).find((e) => e.name === 'a')?.delivered === 3, 'a to count 3 delivered');
    const metrics = await (await s.admin('/metrics')).text();
    expect(metrics).toContain('registry_notifications_events_total{type="Events",endpoint="a"} 3');
    expect(metrics).toContain('registry_notifications_events_total{type="Events",endpoint="b"} 1');
    expect(metrics).toContain('registry_notifications_events_total{type="Events",endpoint="off"} 3');
    expect(metrics).toContain('registry_notifications_events_total{type="Successes",endpoint="a"} 3');
    expect(metrics).toContain('registry_notifications_pending_total{endpoint="off"} 3');
    expect(metrics).not.toMatch(/registry_notifications_events_total\{[^}]*endpoint="bad"/); // never live

    const everything = [s.rawLogs.join('\n'), JSON.stringify(listed), metrics].join('\n');
    expect(everything).not.toContain(SECRET_HEADER);
    expect(everything).not.toContain(TOKEN);
    expect(everything).not.toContain('pa55word');
  });

  it('coalesce from an endpoint file: the first pull is sent, the others answered 202 and counted in /endpoints and /metrics', async () => {
    const r = await receiver();
    const s = await start([endpointDoc('quiet', { url: r.url, coalesce: { actions: ['pull'], window: '1h' } })]);
    const pulls = makeEvents(4, 'pull').map((e) => ({ ...e, action: 'pull' })); // one repository and tag: one key
    for (const pull of pulls) {
      const answer = await s.post([pull]);
      expect(answer.status).toBe(202);
      expect(await answer.json()).toEqual({ accepted: 1, duplicates: 0 }); // accepted, though not queued
    }
    expect((await s.post(makeEvents(1, 'push'))).status).toBe(202); // pushes are not listed: sent
    await r.waitFor(() => r.events({ acceptedOnly: true }).length === 2);
    expect(r.events().map((e) => e.id)).toEqual(['pull-0', 'push-0']);
    await until(async () => ((await (await s.admin('/endpoints')).json()) as EndpointStatus[])[0]?.delivered === 2, 'quiet to count 2 delivered');
    const [quiet] = (await (await s.admin('/endpoints')).json()) as EndpointStatus[];
    expect(quiet).toMatchObject({ name: 'quiet', ready: true, delivered: 2, coalesced: 3, pending: 0 });
    const metrics = await (await s.admin('/metrics')).text();
    expect(metrics).toContain('registry_notifier_coalesced_total{endpoint="quiet"} 3');
    expect(metrics).toContain('registry_notifications_events_total{type="Events",endpoint="quiet"} 2');
  });

  it('Ed25519: receivers verify with the public key /endpoints shows; a key rotated in its file signs the next attempt', async () => {
    const [first, second] = [ed25519KeyPair(), ed25519KeyPair()];
    const r = await receiver();
    const s = await start([
      endpointDoc('ed', { url: r.url, signing: { algorithm: 'Ed25519', secretKeyRef: { name: 'hook-key', key: 'key' } } }),
      endpointDoc('hmac', { url: r.url, signing: { secretKeyRef: { name: 'hmac', key: 'secret' } } }),
    ], [], { 'hook-key/key': `${first.whsk32}\n`, 'hmac/secret': 'whsec_c2VjcmV0LXNlY3JldC1zZWNyZXQ=' });
    const listed = async (name: string): Promise<EndpointStatus | undefined> =>
      ((await (await s.admin('/endpoints')).json()) as EndpointStatus[]).find((e) => e.name === name);
    expect(await listed('ed')).toMatchObject({ ready: true, signingPublicKey: first.whpk });
    expect(await listed('hmac')).not.toHaveProperty('signingPublicKey');

    expect((await s.post(makeEvents(2, 'ev'), TOKEN)).status).toBe(202);
    await r.waitFor((rs) => rs.filter((q) => q.headers['webhook-signature']?.includes('v1a,')).length === 2);
    const signed = (): RecordedRequest[] => r.requests.filter((q) => String(q.headers['webhook-signature']).startsWith('v1a,'));
    for (const request of signed()) {
      expect(verified(first.whpk, request)).toBe(true);
      expect(verified(first.whpk, request, Buffer.from(request.text.replace('"push"', '"delete"')))).toBe(false);
    }

    // Rotation as kubectl does it for a mounted Secret: the file is replaced (here by a rename over it).
    const keyFile = join(s.secrets, 'hook-key', 'key');
    await writeFile(`${keyFile}.new`, second.whsk64);
    await rename(`${keyFile}.new`, keyFile);
    await until(async () => (await listed('ed'))?.signingPublicKey === second.whpk, '/endpoints to show the new public key');
    r.clear();
    expect((await s.post(makeEvents(1, 'after'), TOKEN)).status).toBe(202);
    await r.waitFor(() => signed().length === 1);
    expect(verified(second.whpk, signed()[0]!)).toBe(true);
    expect(verified(first.whpk, signed()[0]!)).toBe(false);

    // A key that cannot be one: InvalidSpec, without the key; the last valid key keeps signing.
    await writeFile(`${keyFile}.new`, `whsk_${Buffer.from(second.whsk64.slice(5), 'base64').subarray(0, 40).toString('base64')}`);
    await rename(`${keyFile}.new`, keyFile);
    await until(async () => (await listed('ed'))?.reason === 'InvalidSpec', 'the bad key to be refused');
    const refused = await listed('ed');
    expect(refused?.message).toMatch(/^Secret hook-key key key is not an Ed25519 private key: it decodes to 40 bytes/);
    expect(refused?.signingPublicKey).toBe(second.whpk);
    const everything = [s.rawLogs.join('\n'), JSON.stringify(refused)].join('\n');
    for (const key of [first.whsk32, second.whsk64]) expect(everything).not.toContain(key.slice(5, 25));
  });

  it('shutdown: not ready, new events refused with 503 + Retry-After, queued events drain before it resolves', async () => {
    const slow = await receiver();
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    // slow but working: the first answer waits for the test, every later one takes 20 ms
    slow.respond(async (req) => {
      if (req.seq === 0) await gate;
      else await new Promise((resolve) => setTimeout(resolve, 20)); // a slow receiver, not a synchronisation
      return 202;
    });
    // the endpoint's timeout outlasts the hold: the held attempt is answered, not given up and resent
    const s = await start([endpointDoc('slow', { url: slow.url, timeout: '30s' })], ['--shutdown-grace', '10s']);
    expect((await s.post(makeEvents(6, 'ev'))).status).toBe(202);
    await slow.waitFor((rs) => rs.length === 1);

    let resolved = false;
    const stopping = s.server.shutdown();
    void stopping.finally(() => (resolved = true));
    expect(s.server.shutdown()).toBe(stopping); // a second call: the same shutdown
    expect((await s.admin('/readyz')).status).toBe(503);
    expect((await s.admin('/healthz')).status).toBe(200);
    const refused = await s.post(makeEvents(1, 'late'));
    expect(refused.status).toBe(503);
    expect(refused.headers.get('retry-after')).toBe('5');
    expect(await refused.json()).toMatchObject({ error: { code: 'ShuttingDown' } });
    expect(resolved).toBe(false);
    expect(slow.requests).toHaveLength(1); // the rest is still queued behind the held answer

    release();
    const left = await stopping;
    expect(left).toEqual(new Map([['slow', 0]]));
    expect(slow.events({ acceptedOnly: true }).map((e) => e.id)).toEqual(['ev-0', 'ev-1', 'ev-2', 'ev-3', 'ev-4', 'ev-5']);
    const stopped = s.logs.find((l) => l.msg === 'stopped');
    expect(stopped).toMatchObject({ level: 'info', undelivered: 0 });
    // both servers are closed once shutdown resolved
    await expect(s.admin('/readyz')).rejects.toThrow();
    await expect(s.post(makeEvents(1, 'after'))).rejects.toThrow();
  });

  it('shutdown with a dead receiver resolves after the grace period and reports what was left', async () => {
    const ok = await receiver();
    const s = await start([
      endpointDoc('dead', { url: await deadUrl(), threshold: 1, backoff: '1h' }),
      endpointDoc('ok', { url: ok.url }),
    ], ['--shutdown-grace', '400ms']);
    expect((await s.post(makeEvents(4, 'ev'))).status).toBe(202);
    await until(() => s.server.endpoints.get('dead')!.stats().errors === 1, 'the first failed attempt');
    await ok.waitFor(() => ok.events({ acceptedOnly: true }).length === 4);

    const t0 = performance.now();
    const left = await s.server.shutdown();
    const elapsed = performance.now() - t0;
    expect(elapsed).toBeGreaterThanOrEqual(380);
    expect(elapsed).toBeLessThan(2500);
    expect(left).toEqual(new Map([['dead', 4], ['ok', 0]]));
    const stopped = s.logs.find((l) => l.msg === 'stopped');
    expect(stopped).toMatchObject({ level: 'warn', undelivered: 4, byEndpoint: { dead: 4 } });
  });
});
