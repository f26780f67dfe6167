// FileSource end to end: real files in a temp directory, a real EndpointSet and real loopback receivers.
// Every change goes through the file watcher (no manual reload), so what is measured is what a user gets.
import { randomBytes } from 'node:crypto';
import type { TLSSocket } from 'node:tls';
import { mkdir, mkdtemp, rename, rm, symlink, unlink, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { Writable } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import { createLogger } from '../../src/log.ts';
import type { EndpointConfig } from '../../src/notifications/endpoint.ts';
import { EndpointSet } from '../../src/notifications/endpoint-set.ts';
import type { QueueBackend } from '../../src/notifications/queue-store.ts';
import { verifyWebhook } from '../../src/notifications/signing.ts';
import { FileSource } from '../../src/sources/file-source.ts';
import type { ReadyState } from '../../src/sources/source.ts';
import { makeEvents } from '../support/events.ts';
import { TestReceiver } from '../support/receiver.ts';
import { testPki } from '../support/tls.ts';
import { until } from '../support/wait.ts';
import { permitRecordingBackend } from '../notifications/test-sinks.ts';

const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!().catch(() => {});
});

/** One NotificationEndpoint document (JSON is YAML, so the spec is written inline). */
function endpointDoc(name: string, spec: Record<string, unknown>): string {
  return `apiVersion: registry-notifier.io/v1alpha1\nkind: NotificationEndpoint\nmetadata:\n  name: ${name}\nspec: ${JSON.stringify(spec)}\n`;
}
const stream = (...documents: string[]): string => documents.join('---\n');

async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'rn-file-source-'));
  cleanups.push(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

/** Writes as kubectl and most editors do: a temporary file (ignored: it starts with a dot) renamed over the target. */
async function put(file: string, text: string): Promise<void> {
  await mkdir(dirname(file), { recursive: true });
  const tmp = join(dirname(file), `.tmp-${randomBytes(4).toString('hex')}`);
  await writeFile(tmp, text);
  await rename(tmp, file);
}

async function receiver(): Promise<TestReceiver> {
  const r = await TestReceiver.start();
  cleanups.push(() => r.close());
  return r;
}

/** A receiver that fails every request with 503 (with `threshold: 1, backoff: 1h`, the endpoint then holds its queue). */
async function failingReceiver(): Promise<TestReceiver> {
  return (await receiver()).respond(() => 503);
}

const ids = (events: { id: string }[]): string[] => events.map((e) => e.id);
const seq = (prefix: string, n: number): string[] => Array.from({ length: n }, (_, i) => `${prefix}-${i}`);
// An endpoint whose receiver fails keeps its queue for an hour: long enough that only a change can move it.
const HOLD = { threshold: 1, backoff: '1h' };

interface Harness {
  dir: string;
  secrets: string;
  source: FileSource;
  endpoints: EndpointSet;
  /** `onRemoved` calls, in order. */
  removed: [string, number][];
  /** Names passed to `EndpointSet.apply`, in order. */
  applied: string[];
  /** Every log line written so far. */
  logs: string[];
  state(name: string): ReadyState | undefined;
}

/** Starts a FileSource over `paths` (default: the temp directory) after writing `files` (relative to it). */
async function start(options: { files?: Record<string, string>; secretFiles?: Record<string, string>; paths?: (dir: string) => string[]; backend?: QueueBackend } = {}): Promise<Harness> {
  const dir = await tempDir();
  const secrets = join(dir, 'secrets');
  await mkdir(secrets);
  for (const [name, text] of Object.entries(options.files ?? {})) await put(join(dir, 'endpoints', name), text);
  for (const [name, text] of Object.entries(options.secretFiles ?? {})) await put(join(secrets, name), text);
  await mkdir(join(dir, 'endpoints'), { recursive: true });
  const logs: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      logs.push(chunk.toString());
      callback();
    },
  });
  const endpoints = new EndpointSet({ userAgent: 'registry-notifier/test', ...(options.backend && { backend: options.backend }) });
  const applied: string[] = [];
  const apply = endpoints.apply.bind(endpoints);
  endpoints.apply = (name: string, config: EndpointConfig) => {
    applied.push(name);
    return apply(name, config);
  };
  const removed: [string, number][] = [];
  const source = new FileSource({
    paths: options.paths?.(dir) ?? [join(dir, 'endpoints')],
    secretsDir: secrets,
    endpoints,
    logger: createLogger('debug', sink),
    onRemoved: (name, discarded) => removed.push([name, discarded]),
  });
  cleanups.push(() => endpoints.close(AbortSignal.abort()));
  cleanups.push(() => source.close());
  await source.start();
  return { dir, secrets, source, endpoints, removed, applied, logs, state: (name) => source.states().get(name) };
}

/** Writes events to the set and waits until `r` accepted the `n` (by id prefix) in order. */
async function deliveredInOrder(r: TestReceiver, prefix: string, n: number): Promise<void> {
  const mine = (): string[] => ids(r.events({ acceptedOnly: true })).filter((id) => id.startsWith(`${prefix}-`));
  await r.waitFor(() => mine().length >= n);
  expect(mine()).toEqual(seq(prefix, n));
}

describe('FileSource initial load', () => {
  it('loads every YAML file of a directory and every document of a multi-document file; skips the rest', async () => {
    const [ra, rb1, rb2, rf] = await Promise.all([receiver(), receiver(), receiver(), receiver()]);
    const h = await start({
      files: {
        'a.yaml': endpointDoc('a', { url: ra.url }),
        // several documents, an empty one, and someone else's kind (skipped, not an error)
        'b.yml': stream(endpointDoc('b1', { url: rb1.url }), '', endpointDoc('b2', { url: rb2.url }), 'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: other}\n'),
        'ignored.txt': endpointDoc('not-yaml', { url: ra.url }),
        '.hidden.yaml': endpointDoc('hidden', { url: ra.url }),
      },
      // a directory and a single file outside it
      paths: (dir) => [join(dir, 'endpoints'), join(dir, 'single.yaml')],
    });
    // the single file is missing at start: reported, and picked up once it appears (below)
    expect(h.source.ready).toBe(true);
    expect(h.endpoints.list().map((e) => e.name).sort()).toEqual(['a', 'b1', 'b2']);
    for (const name of ['a', 'b1', 'b2']) expect(h.state(name)).toMatchObject({ ready: true, reason: 'Configured' });
    expect(h.state('b2')?.origin).toBe(join(h.dir, 'endpoints', 'b.yml'));
    expect([...h.source.states().keys()].filter((k) => !k.startsWith('path:')).sort()).toEqual(['a', 'b1', 'b2']);
    expect(h.state(`path:${join(h.dir, 'single.yaml')}`)).toMatchObject({ ready: false, reason: 'InvalidSpec', message: 'cannot read: ENOENT' });

    await put(join(h.dir, 'single.yaml'), endpointDoc('f', { url: rf.url }));
    await until(() => h.endpoints.get('f') !== undefined, 'the single file to be picked up');
    await h.endpoints.write(makeEvents(3, 'ev'));
    await Promise.all([ra, rb1, rb2, rf].map((r) => deliveredInOrder(r, 'ev', 3)));
  });
});

describe('FileSource follows changes', () => {
  it('a new file makes its endpoint live within a second', async () => {
    const [ra, rn] = await Promise.all([receiver(), receiver()]);
    const h = await start({ files: { 'a.yaml': endpointDoc('a', { url: ra.url }) } });
    const t0 = Date.now();
    await put(join(h.dir, 'endpoints', 'new.yaml'), endpointDoc('new', { url: rn.url }));
    await until(() => h.endpoints.get('new') !== undefined, 'the new endpoint', 2000);
    const elapsed = Date.now() - t0;
    expect(elapsed).toBeLessThan(1000);
    expect(h.state('new')).toMatchObject({ ready: true, reason: 'Configured' });
    await h.endpoints.write(makeEvents(2, 'ev'));
    await deliveredInOrder(rn, 'ev', 2);
    await deliveredInOrder(ra, 'ev', 2);
  });

  it('a changed url, header and filter take effect live; the queued events follow in order, none lost', async () => {
    const [down, up] = await Promise.all([failingReceiver(), receiver()]);
    const file = join('endpoints', 'x.yaml');
    const h = await start({ files: { 'x.yaml': endpointDoc('x', { url: down.url, headers: [{ name: 'X-Version', value: 'one' }], ...HOLD }) } });
    const endpoint = h.endpoints.get('x')!;
    await h.endpoints.write(makeEvents(20, 'q'));
    await down.waitFor((rs) => rs.length === 1 && rs[0]!.status === 503);
    expect(endpoint.pending).toBe(20);
    expect(down.requests[0]!.headers['x-version']).toBe('one');

    const t0 = Date.now();
    await put(join(h.dir, file), endpointDoc('x', {
      url: up.url, headers: [{ name: 'X-Version', value: 'two' }], filter: { repositories: { include: ['only/**'] } }, ...HOLD,
    }));
    await up.waitFor((rs) => rs.length > 0, 2000);
    expect(Date.now() - t0).toBeLessThan(1000); // the first queued event reached the new URL within a second
    // queued before the change: delivered to the new URL with the new header, though outside the new filter
    await deliveredInOrder(up, 'q', 20);
    expect(up.requests.every((r) => r.headers['x-version'] === 'two')).toBe(true);
    expect(down.requests).toHaveLength(1);
    expect(h.endpoints.get('x')).toBe(endpoint); // updated in place
    await until(() => endpoint.pending === 0, 'the queue to empty');

    // the new filter applies to what is written from now on
    await h.endpoints.write([...makeEvents(2, 'other', { repository: 'other/app' }), ...makeEvents(2, 'only', { repository: 'only/app' })]);
    await deliveredInOrder(up, 'only', 2);
    expect(ids(up.events()).filter((id) => id.startsWith('other-'))).toEqual([]);
    await until(() => endpoint.stats().delivered === 22, '22 delivered');
  });

  it('a change to one endpoint leaves another endpoint of the same file and its queue alone', async () => {
    const [rx, rx2, ry] = await Promise.all([receiver(), receiver(), receiver()]);
    let release!: () => void;
    const held = new Promise<number>((resolve) => (release = () => resolve(200)));
    ry.respond((req) => (req.seq === 0 ? held : 200));
    // y's timeout outlasts the hold, so its attempt is never cut and resent by the client itself
    const y30s = { url: ry.url, timeout: '30s' };
    const h = await start({ files: { 'xy.yaml': stream(endpointDoc('x', { url: rx.url }), endpointDoc('y', y30s)) } });
    const y = h.endpoints.get('y')!;
    const yConfig = y.config;
    h.applied.length = 0;
    await h.endpoints.write(makeEvents(5, 'ev'));
    await ry.waitFor((rs) => rs.length === 1); // y's first attempt is in flight and held
    expect(y.pending).toBe(5);

    await put(join(h.dir, 'endpoints', 'xy.yaml'), stream(endpointDoc('x', { url: rx2.url }), endpointDoc('y', y30s)));
    await until(() => h.endpoints.get('x')?.config.url === rx2.url, 'x to move to its new URL');
    expect(h.applied).toEqual(['x']);
    expect(h.endpoints.get('y')).toBe(y);
    expect(y.config).toBe(yConfig);
    expect(y.pending).toBe(5);
    expect(ry.requests).toHaveLength(1);

    release();
    await deliveredInOrder(ry, 'ev', 5);
    expect(ids(ry.events())).toEqual(seq('ev', 5)); // exactly once: the attempt in flight was not cut and resent
    await deliveredInOrder(rx, 'ev', 5);
  });

  it('a removed document takes its endpoint out and reports the discarded events; a removed file too', async () => {
    const [down, ry, rz] = await Promise.all([failingReceiver(), receiver(), receiver()]);
    const h = await start({
      files: { 'xy.yaml': stream(endpointDoc('x', { url: down.url, ...HOLD }), endpointDoc('y', { url: ry.url })), 'z.yaml': endpointDoc('z', { url: rz.url }) },
    });
    await h.endpoints.write(makeEvents(7, 'ev'));
    await down.waitFor((rs) => rs.length === 1 && rs[0]!.status === 503);
    expect(h.endpoints.get('x')?.pending).toBe(7);
    await deliveredInOrder(ry, 'ev', 7);

    await put(join(h.dir, 'endpoints', 'xy.yaml'), endpointDoc('y', { url: ry.url }));
    await until(() => h.endpoints.get('x') === undefined, 'x to be removed');
    await until(() => h.removed.length === 1, 'onRemoved');
    expect(h.removed).toEqual([['x', 7]]);
    expect(h.source.states().has('x')).toBe(false);
    expect(h.endpoints.list().map((e) => e.name)).toEqual(['y', 'z']);

    await unlink(join(h.dir, 'endpoints', 'z.yaml'));
    await until(() => h.endpoints.get('z') === undefined, 'z to be removed with its file');
    await until(() => h.removed.length === 2, 'onRemoved for z');
    expect(h.removed[1]).toEqual(['z', 0]);
    await h.endpoints.write(makeEvents(2, 'after'));
    await deliveredInOrder(ry, 'after', 2);
  });
});

describe('FileSource refuses what is invalid and keeps the rest working', () => {
  it('reports each invalid document as InvalidSpec with a message; the valid one in the same file works', async () => {
    const good = await receiver();
    const h = await start({
      files: {
        'mixed.yaml': stream(
          endpointDoc('bad-url', { url: 'ftp://example.com/hook' }),
          endpointDoc('reserved-header', { url: good.url, headers: [{ name: 'Content-Type', value: 'text/plain' }] }),
          endpointDoc('good', { url: good.url }),
          endpointDoc('unknown-field', { url: good.url, retries: 3 }),
          endpointDoc('bare-duration', { url: good.url, timeout: 500 }),
        ),
      },
    });
    const expected: Record<string, RegExp> = {
      'bad-url': /^spec\.url: /,
      'reserved-header': /^spec\.headers\[0\]\.name: "Content-Type" is reserved/,
      'unknown-field': /^spec\.retries: unknown field/,
      'bare-duration': /^spec\.timeout: .*500/,
    };
    for (const [name, message] of Object.entries(expected)) {
      const state = h.state(name);
      expect(state, name).toMatchObject({ ready: false, reason: 'InvalidSpec' });
      expect(state?.message, name).toMatch(message);
      expect(state?.message, name).not.toMatch(/^(spec\.[\w.[\]]+): \1:/); // the path is not said twice
      expect(state?.origin, name).toMatch(/mixed\.yaml document \d$/);
    }
    expect(h.state('good')).toMatchObject({ ready: true, reason: 'Configured' });
    expect(h.endpoints.list().map((e) => e.name)).toEqual(['good']);
    await h.endpoints.write(makeEvents(3, 'ev'));
    await deliveredInOrder(good, 'ev', 3);
  });

  it('an edit that makes a running endpoint invalid keeps its last good configuration running', async () => {
    const r = await receiver();
    const h = await start({ files: { 'x.yaml': endpointDoc('x', { url: r.url, headers: [{ name: 'X-Good', value: '1' }] }) } });
    const endpoint = h.endpoints.get('x')!;
    await put(join(h.dir, 'endpoints', 'x.yaml'), endpointDoc('x', { url: r.url, timeout: '500', headers: [{ name: 'X-Good', value: '2' }] }));
    await until(() => h.state('x')?.reason === 'InvalidSpec', 'x to be reported invalid');
    expect(h.state('x')?.message).toMatch(/^spec\.timeout: /);
    expect(h.endpoints.get('x')).toBe(endpoint);
    expect(h.removed).toEqual([]);
    await h.endpoints.write(makeEvents(3, 'ev'));
    await deliveredInOrder(r, 'ev', 3);
    expect(r.requests.every((req) => req.headers['x-good'] === '1')).toBe(true); // the last good configuration

    await put(join(h.dir, 'endpoints', 'x.yaml'), endpointDoc('x', { url: r.url, timeout: '500ms', headers: [{ name: 'X-Good', value: '2' }] }));
    await until(() => h.state('x')?.reason === 'Configured', 'x to be valid again');
    await h.endpoints.write(makeEvents(1, 'fixed'));
    await deliveredInOrder(r, 'fixed', 1);
    expect(r.requests.at(-1)?.headers['x-good']).toBe('2');
  });

  it('a YAML syntax error in one file removes no endpoint: not those of other files, not its own', async () => {
    const [ra, down] = await Promise.all([receiver(), failingReceiver()]);
    const h = await start({ files: { 'a.yaml': endpointDoc('a', { url: ra.url }), 'b.yaml': endpointDoc('b', { url: down.url, ...HOLD }) } });
    await h.endpoints.write(makeEvents(4, 'ev'));
    await down.waitFor((rs) => rs.length === 1);

    await put(join(h.dir, 'endpoints', 'b.yaml'), 'apiVersion: registry-notifier.io/v1alpha1\nkind: NotificationEndpoint\nmetadata: {name: b\nspec: [\n');
    const key = `${join(h.dir, 'endpoints', 'b.yaml')}#0`;
    await until(() => h.state(key) !== undefined, 'the syntax error to be reported');
    expect(h.state(key)).toMatchObject({ ready: false, reason: 'InvalidSpec' });
    expect(h.state(key)?.message).toMatch(/^invalid YAML/);
    expect(h.endpoints.list().map((e) => e.name)).toEqual(['a', 'b']);
    expect(h.state('a')).toMatchObject({ ready: true, reason: 'Configured' });
    // b could not be read: it keeps running (and queueing) as it was, and says so
    expect(h.state('b')).toMatchObject({ ready: false, reason: 'InvalidSpec' });
    expect(h.state('b')?.message).toMatch(/cannot be read or parsed/);
    expect(h.removed).toEqual([]);
    expect(h.endpoints.get('b')?.pending).toBe(4);
    await deliveredInOrder(ra, 'ev', 4);
  });

  it('a name defined twice: the first definition is used, the second reported', async () => {
    const [first, second] = await Promise.all([receiver(), receiver()]);
    const h = await start({
      files: {
        'a.yaml': endpointDoc('dup', { url: first.url }),
        'b.yaml': endpointDoc('dup', { url: second.url }),
        'c.yaml': stream(endpointDoc('twin', { url: first.url }), endpointDoc('twin', { url: second.url })),
      },
    });
    expect(h.endpoints.list().map((e) => e.name)).toEqual(['dup', 'twin']);
    expect(h.endpoints.get('dup')?.config.url).toBe(first.url);
    expect(h.endpoints.get('twin')?.config.url).toBe(first.url);
    expect(h.state('dup')).toMatchObject({ ready: true, reason: 'Configured', origin: join(h.dir, 'endpoints', 'a.yaml') });
    expect(h.state('twin')).toMatchObject({ ready: true, reason: 'Configured' });
    const others = [...h.source.states()].filter(([key]) => key !== 'dup' && key !== 'twin');
    expect(others).toHaveLength(2);
    const [dup, twin] = [others.find(([k]) => k.startsWith('dup@'))?.[1], others.find(([k]) => k.startsWith('twin@'))?.[1]];
    expect(dup).toMatchObject({ ready: false, reason: 'InvalidSpec', origin: join(h.dir, 'endpoints', 'b.yaml') });
    expect(dup?.message).toMatch(/duplicate endpoint name dup/);
    expect(twin).toMatchObject({ ready: false, reason: 'InvalidSpec' });
    expect(twin?.message).toMatch(/already defined by document 0/);
    await h.endpoints.write(makeEvents(2, 'ev'));
    await first.waitFor(() => first.events().length === 4);
    expect(second.requests).toEqual([]);
  });
});

describe('FileSource CloudEvents output', () => {
  it('Binary with maxBatchEvents > 1 is InvalidSpec with a message saying what to set; a valid CloudEvents endpoint delivers', async () => {
    const r = await receiver();
    const h = await start({
      files: {
        'ce.yaml': stream(
          endpointDoc('binary-batch', { url: r.url, format: 'CloudEvents', maxBatchEvents: 10 }),
          endpointDoc('ce-header', { url: r.url, format: 'CloudEvents', cloudEvents: { mode: 'Structured' }, headers: [{ name: 'ce-id', value: 'x' }] }),
          endpointDoc('bad-mode', { url: r.url, format: 'CloudEvents', cloudEvents: { mode: 'binary' } }),
          endpointDoc('structured', { url: r.url, format: 'CloudEvents', cloudEvents: { mode: 'Structured', source: 'urn:registry:test' } }),
        ),
      },
    });
    expect(h.state('binary-batch')).toMatchObject({ ready: false, reason: 'InvalidSpec' });
    expect(h.state('binary-batch')?.message).toMatch(/^spec\.maxBatchEvents: must be 1 with format: CloudEvents in Binary mode .*cloudEvents\.mode: Structured to batch$/);
    expect(h.state('ce-header')).toMatchObject({ reason: 'InvalidSpec', message: expect.stringMatching(/^spec\.headers\[0\]\.name: "ce-id" is reserved/) });
    expect(h.state('bad-mode')).toMatchObject({ reason: 'InvalidSpec', message: expect.stringMatching(/^spec\.cloudEvents\.mode: must be one of Binary, Structured/) });
    expect(h.state('structured')).toMatchObject({ ready: true, reason: 'Configured' });
    expect(h.endpoints.list().map((e) => e.name)).toEqual(['structured']);
    await h.endpoints.write(makeEvents(2, 'ev'));
    await r.waitFor((q) => q.length === 2);
    for (const [i, request] of r.requests.entries()) {
      expect(request.headers['content-type']).toBe('application/cloudevents+json');
      expect(request.json).toMatchObject({ specversion: '1.0', id: `ev-${i}`, source: 'urn:registry:test', data: { id: `ev-${i}` } });
    }
  });
});

describe('FileSource secrets', () => {
  it('a secretKeyRef header is read from <secrets-dir>/<name>/<key>, trailing newline trimmed, and never logged', async () => {
    const r = await receiver();
    const value = `Bearer ${randomBytes(12).toString('hex')}`;
    const h = await start({
      files: { 'x.yaml': endpointDoc('x', { url: r.url, headers: [{ name: 'Authorization', valueFrom: { secretKeyRef: { name: 'receiver-token', key: 'token' } } }] }) },
      secretFiles: { 'receiver-token/token': `${value}\n` },
    });
    expect(h.state('x')).toMatchObject({ ready: true, reason: 'Configured' });
    expect(h.endpoints.get('x')?.config.headers).toEqual([['Authorization', value]]);
    await h.endpoints.write(makeEvents(1, 'ev'));
    await r.waitFor((rs) => rs.length === 1);
    expect(r.requests[0]!.headers.authorization).toBe(value);
    expect(h.logs.join('')).not.toContain(value.slice(7));
  });

  it('a missing secret is SecretNotFound; creating it (directory, then key) makes the endpoint ready live', async () => {
    const r = await receiver();
    const ref = { name: 'late', key: 'token' };
    const h = await start({ files: { 'x.yaml': endpointDoc('x', { url: r.url, headers: [{ name: 'X-Token', valueFrom: { secretKeyRef: ref } }] }) } });
    expect(h.state('x')).toMatchObject({ ready: false, reason: 'SecretNotFound', message: 'Secret late not found', url: r.url });
    expect(h.endpoints.get('x')).toBeUndefined();

    // a new directory under the watched secrets dir, then a key in it: both must be seen
    await mkdir(join(h.secrets, 'late'));
    await until(() => h.state('x')?.message === 'Secret late has no key token', 'the empty secret to be seen');
    const t0 = Date.now();
    await writeFile(join(h.secrets, 'late', 'token'), 'tok-123\n');
    await until(() => h.state('x')?.ready === true, 'x to become ready', 2000);
    expect(Date.now() - t0).toBeLessThan(1000);
    await h.endpoints.write(makeEvents(2, 'ev'));
    await deliveredInOrder(r, 'ev', 2);
    expect(r.requests[0]!.headers['x-token']).toBe('tok-123');
  });

  it('reads the Kubernetes `..data` layout, and follows a rotation done the Kubernetes way', async () => {
    const r = await receiver();
    const h = await start({ files: { 'x.yaml': endpointDoc('x', { url: r.url, headers: [{ name: 'X-Token', valueFrom: { secretKeyRef: { name: 'mounted', key: 'token' } } }] }) } });
    const secret = join(h.secrets, 'mounted');
    // what the kubelet writes: a timestamped directory, `..data` pointing at it, each key a symlink through `..data`
    const writeVersion = async (version: string, value: string): Promise<void> => {
      await mkdir(join(secret, version), { recursive: true });
      await writeFile(join(secret, version, 'token'), value);
      await symlink(version, join(secret, '..data_tmp'));
      await rename(join(secret, '..data_tmp'), join(secret, '..data'));
    };
    await mkdir(secret);
    await writeVersion('..2026_01_01_00_00_00.000000001', 'first');
    await symlink(join('..data', 'token'), join(secret, 'token'));
    await until(() => h.state('x')?.ready === true, 'x to become ready');
    await h.endpoints.write(makeEvents(1, 'a'));
    await r.waitFor((rs) => rs.length === 1);
    expect(r.requests[0]!.headers['x-token']).toBe('first');

    await writeVersion('..2026_01_02_00_00_00.000000002', 'second');
    await rm(join(secret, '..2026_01_01_00_00_00.000000001'), { recursive: true });
    await until(() => h.endpoints.get('x')?.config.headers[0]?.[1] === 'second', 'the rotated value to be applied');
    await h.endpoints.write(makeEvents(1, 'b'));
    await r.waitFor((rs) => rs.length === 2);
    expect(r.requests[1]!.headers['x-token']).toBe('second');
    expect([...h.source.states().keys()]).toEqual(['x']); // `..data` and the versions are bookkeeping, not keys
  });

  it('follows an endpoints file mounted from a ConfigMap (a symlink through `..data`)', async () => {
    const [first, second] = await Promise.all([receiver(), receiver()]);
    const dir = await tempDir();
    const mount = join(dir, 'config');
    const writeVersion = async (version: string, text: string): Promise<void> => {
      await mkdir(join(mount, version), { recursive: true });
      await writeFile(join(mount, version, 'endpoints.yaml'), text);
      await symlink(version, join(mount, '..data_tmp'));
      await rename(join(mount, '..data_tmp'), join(mount, '..data'));
    };
    await writeVersion('..v1', endpointDoc('x', { url: first.url }));
    await symlink(join('..data', 'endpoints.yaml'), join(mount, 'endpoints.yaml'));
    const h = await start({ paths: () => [join(mount, 'endpoints.yaml')] });
    expect(h.endpoints.get('x')?.config.url).toBe(first.url);
    await writeVersion('..v2', endpointDoc('x', { url: second.url }));
    await until(() => h.endpoints.get('x')?.config.url === second.url, 'the new ConfigMap version to be applied', 2000);
  });

  it('signs with the secret of signing.secretKeyRef (Standard Webhooks)', async () => {
    const r = await receiver();
    const secret = `whsec_${randomBytes(24).toString('base64')}`;
    const h = await start({ files: { 'x.yaml': endpointDoc('x', { url: r.url, signing: { secretKeyRef: { name: 'signing', key: 'secret' } } }) } });
    expect(h.state('x')).toMatchObject({ reason: 'SecretNotFound' });
    await put(join(h.secrets, 'signing', 'secret'), `${secret}\n`);
    await until(() => h.state('x')?.ready === true, 'x to become ready');
    await h.endpoints.write(makeEvents(2, 'ev'));
    await deliveredInOrder(r, 'ev', 2);
    for (const [i, req] of r.requests.entries()) {
      expect(verifyWebhook(secret, req.headers, req.body)).toBe(`ev-${i}`);
      expect(() => verifyWebhook(`whsec_${randomBytes(24).toString('base64')}`, req.headers, req.body)).toThrow(/no webhook-signature matches/);
    }
    expect(h.logs.join('')).not.toContain(secret.slice(6));
  });

  it('tls.certSecretRef: ca.crt makes an HTTPS receiver trusted, tls.crt + tls.key add a client certificate', async () => {
    const pki = testPki();
    const seen: { path: string; client: string | undefined }[] = [];
    const server: Server = createServer({ cert: pki.serverCert, key: pki.serverKey, ca: pki.ca, requestCert: true, rejectUnauthorized: false }, (req, res) => {
      const peer = (req.socket as TLSSocket).getPeerCertificate();
      seen.push({ path: req.url ?? '', client: (req.socket as TLSSocket).authorized ? String(peer.subject?.CN) : undefined });
      req.resume();
      req.on('end', () => res.writeHead(200).end());
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    cleanups.push(() => new Promise((resolve) => (server.closeAllConnections(), server.close(resolve))));
    const base = `https://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const h = await start({
      files: {
        'tls.yaml': stream(
          endpointDoc('untrusted', { url: `${base}/untrusted`, ...HOLD }),
          endpointDoc('ca-only', { url: `${base}/ca-only`, tls: { certSecretRef: { name: 'receiver-ca' } } }),
          endpointDoc('mutual', { url: `${base}/mutual`, tls: { certSecretRef: { name: 'client-tls' } } }),
        ),
      },
    });
    await put(join(h.secrets, 'receiver-ca', 'ca.crt'), pki.ca);
    await put(join(h.secrets, 'client-tls', 'tls.key'), pki.clientKey);
    await put(join(h.secrets, 'client-tls', 'tls.crt'), pki.clientCert);
    await put(join(h.secrets, 'client-tls', 'ca.crt'), pki.ca);
    await until(() => h.state('ca-only')?.ready === true && h.state('mutual')?.ready === true, 'both TLS endpoints to become ready');
    await h.endpoints.write(makeEvents(1, 'ev'));
    await until(() => seen.length === 2, 'two HTTPS deliveries');
    expect(seen.sort((a, b) => a.path.localeCompare(b.path))).toEqual([
      { path: '/ca-only', client: undefined },
      { path: '/mutual', client: 'client' },
    ]);
    // without the CA, the server's certificate is refused: an error, nothing delivered
    const untrusted = h.endpoints.get('untrusted')!;
    await until(() => untrusted.stats().errors === 1, 'the untrusted attempt to fail');
    expect(untrusted.stats().delivered).toBe(0);
    expect(untrusted.stats().lastError).toMatch(/certificate/i);
    expect(h.logs.join('')).not.toContain('PRIVATE KEY');
  });

  it('half a client key pair is InvalidSpec, not SecretNotFound', async () => {
    const h = await start({ files: { 'x.yaml': endpointDoc('x', { url: 'https://127.0.0.1:1/', tls: { certSecretRef: { name: 'half' } } }) } });
    await put(join(h.secrets, 'half', 'tls.crt'), testPki().clientCert);
    await until(() => h.state('x')?.reason === 'InvalidSpec', 'x to be refused');
    expect(h.state('x')?.message).toMatch(/both tls\.crt and tls\.key/);
    expect(h.endpoints.get('x')).toBeUndefined();
  });
});

describe('FileSource disabled endpoints', () => {
  it('disabled: true is reported as Disabled; events queue and are sent, in order, only once enabled', async () => {
    const [r, rm] = [await receiver(), await receiver()];
    const backend = permitRecordingBackend();
    const h = await start({ files: { 'd.yaml': endpointDoc('d', { url: r.url, disabled: true }) }, backend });
    expect(h.state('d')).toMatchObject({ ready: false, reason: 'Disabled' });
    const endpoint = h.endpoints.get('d')!;
    // An enabled endpoint added after d gets the same events in the same fan-out: once it delivered them, a
    // disabled d that sends anyway would have asked for its permit to send before it did.
    await put(join(h.dir, 'endpoints', 'm.yaml'), endpointDoc('m', { url: rm.url }));
    await until(() => h.endpoints.get('m') !== undefined, 'the marker endpoint');
    await h.endpoints.write(makeEvents(4, 'ev'));
    await deliveredInOrder(rm, 'ev', 4);
    expect(backend.asked.filter((name) => name === 'd')).toEqual([]);
    expect(r.requests).toEqual([]);
    expect(endpoint.pending).toBe(4);

    await put(join(h.dir, 'endpoints', 'd.yaml'), endpointDoc('d', { url: r.url }));
    await deliveredInOrder(r, 'ev', 4);
    expect(h.state('d')).toMatchObject({ ready: true, reason: 'Configured' });
    expect(h.endpoints.get('d')).toBe(endpoint);
  });
});

describe('FileSource under load', () => {
  it('deleting 100 of 200 endpoint files while events flow takes all 100 out of routing within a second; none queues anything afterwards', { timeout: 30_000 }, async () => {
    // Slow receivers: every answer takes 300 to 800 ms, so each endpoint always has an attempt in flight.
    const slow = (await receiver()).respond(async (request) => {
      await new Promise((resolve) => setTimeout(resolve, 300 + ((request.seq * 137) % 500))); // a slow receiver, not a synchronisation
      return 200;
    });
    const dir = join(await tempDir(), 'endpoints');
    await mkdir(dir);
    const names = Array.from({ length: 200 }, (_, i) => `ep-${String(i).padStart(3, '0')}`);
    await Promise.all(names.map((name) => writeFile(join(dir, `${name}.yaml`), endpointDoc(name, { url: `${slow.url}/${name}` }))));
    // What each endpoint queued, through the engine's own listener (what the metrics see).
    const queued = new Map<string, number>();
    const endpoints = new EndpointSet({ userAgent: 'registry-notifier/test', listenerFor: (name) => ({ queued: (count) => void queued.set(name, (queued.get(name) ?? 0) + count) }) });
    const logs: string[] = [];
    const removed: [string, number][] = [];
    const source = new FileSource({
      paths: [dir],
      secretsDir: undefined,
      endpoints,
      logger: createLogger('info', new Writable({ write: (chunk: Buffer, _encoding, done) => (logs.push(chunk.toString()), done()) })),
      onRemoved: (name, discarded) => removed.push([name, discarded]),
    });
    cleanups.push(() => endpoints.close(AbortSignal.abort()));
    cleanups.push(() => source.close());
    await source.start();
    expect(endpoints.list()).toHaveLength(200);

    // Events flow through the engine's API, one block every 5 ms, until the test ends.
    let flowing = true;
    let writes = 0;
    const flow = (async () => {
      for (let i = 0; flowing; i++) {
        await endpoints.write(makeEvents(1, `load-${i}`));
        writes++;
        await new Promise((resolve) => setTimeout(resolve, 5)); // the pace of the flow, not a synchronisation
      }
    })();
    cleanups.push(async () => {
      flowing = false;
      await flow;
    });
    const paths = (): Set<string> => new Set(slow.requests.map((r) => r.url));
    await until(() => paths().size === 200, 'an attempt from every endpoint', 10_000);

    const [gone, kept] = [names.slice(0, 100), names.slice(100)];
    const started = performance.now();
    await Promise.all(gone.map((name) => unlink(join(dir, `${name}.yaml`))));
    await until(() => gone.every((name) => endpoints.get(name) === undefined), 'the 100 deleted endpoints to leave the set', 10_000);
    const took = performance.now() - started;
    console.log(`[measure] 100 of 200 endpoint files deleted under load -> out of routing: ${took.toFixed(0)} ms`);
    expect(took).toBeLessThan(1000);
    expect(endpoints.list().map((e) => e.name)).toEqual(kept);

    // Afterwards: writes that begin now reach the 100 kept endpoints and none of the deleted ones.
    const from = writes + 1; // a write in progress at the removal may still have reached them
    await until(() => writes >= from, 'a write begun after the removal');
    const after = new Map(gone.map((name) => [name, queued.get(name) ?? 0]));
    const keptBefore = new Map(kept.map((name) => [name, queued.get(name) ?? 0]));
    await until(() => kept.every((name) => (queued.get(name) ?? 0) >= keptBefore.get(name)! + 20), '20 more events queued for every kept endpoint', 10_000);
    expect(gone.filter((name) => (queued.get(name) ?? 0) !== after.get(name))).toEqual([]);

    // The closing finished in the background: onRemoved once per endpoint, with what it discarded, and one log line each.
    await until(() => removed.length === 100, 'onRemoved for every deleted endpoint', 10_000);
    expect(removed.map(([name]) => name).sort()).toEqual(gone);
    expect(removed.reduce((sum, [, discarded]) => sum + discarded, 0)).toBeGreaterThan(0);
    const removals = logs.map((line) => JSON.parse(line) as { msg: string; endpoint?: string }).filter((l) => l.msg === 'endpoint removed');
    expect(removals.map((l) => l.endpoint).sort()).toEqual(gone);
  });
});
