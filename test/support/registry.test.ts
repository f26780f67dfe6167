// End-to-end: the real Distribution registry (Debian docker-registry 2.8) notifying a loopback TestReceiver.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildOciLayout, OCI_MEDIA_TYPES, type OciLayout } from './oci-image.ts';
import { type ReceivedEvent, TestReceiver } from './receiver.ts';
import { e2eToolsAvailable, REGISTRY_BIN, TestRegistry } from './registry.ts';

const TOKEN = 'e2e-s3cret';
const BLOB = 'application/octet-stream'; // 2.8 reports every blob with this media type
const WAIT_MS = 15_000;
const available = e2eToolsAvailable();
if (!available && !process.env.CI) {
  console.warn(
    `\n!!! SKIPPING the real-registry e2e suite: ${REGISTRY_BIN} or skopeo is missing.\n` +
      '!!! Run `bash hack/install-e2e-deps.sh` (as root) to enable it. In CI this suite fails instead.\n',
  );
}

type Match = Partial<Pick<ReceivedEvent['target'], 'repository' | 'mediaType' | 'digest' | 'tag' | 'fromRepository'>>;
const matches = (e: ReceivedEvent, action: string, m: Match): boolean =>
  e.action === action && Object.entries(m).every(([k, v]) => e.target[k] === v);

describe.skipIf(!available && !process.env.CI)('real registry → TestReceiver', { timeout: 60_000 }, () => {
  let receiver: TestReceiver;
  let registry: TestRegistry;
  let image: OciLayout;
  let work: string;
  const timings: Record<string, number> = {};

  /** Runs `op`, then waits until an event matching each [action, match] pair arrived; returns those events. */
  async function step(name: string, op: () => Promise<unknown>, want: Array<[string, Match]>): Promise<ReceivedEvent[]> {
    const started = performance.now();
    await op();
    const events = await receiver.waitForEvents((all) => want.every(([a, m]) => all.some((e) => matches(e, a, m))), WAIT_MS);
    timings[name] = Math.round(performance.now() - started);
    return want.map(([a, m]) => events.find((e) => matches(e, a, m))!);
  }

  beforeAll(async () => {
    if (!available) throw new Error(`${REGISTRY_BIN} or skopeo missing (CI=${process.env.CI}): run hack/install-e2e-deps.sh`);
    const started = performance.now();
    work = await mkdtemp(join(tmpdir(), 'registry-notifier-e2e-test-'));
    receiver = await TestReceiver.start();
    registry = await TestRegistry.start({ notifyUrl: receiver.url, token: TOKEN, threshold: 3, backoff: '100ms' });
    image = await buildOciLayout(join(work, 'layout'), { seed: 'registry.test' });
    timings.start = Math.round(performance.now() - started);
  });

  afterAll(async () => {
    await registry?.stop();
    await receiver?.close();
    if (work) await rm(work, { recursive: true, force: true });
    console.info(`registry e2e timings (ms): ${JSON.stringify(timings)}`);
  });

  it('push: blob pushes for layer and config, then the tagged manifest push', async () => {
    const [layer, config, manifest] = await step('push', () => registry.push(image.dir, 'demo/app', 'v1'), [
      ['push', { repository: 'demo/app', mediaType: BLOB, digest: image.layerDigest }],
      ['push', { repository: 'demo/app', mediaType: BLOB, digest: image.configDigest }],
      ['push', { repository: 'demo/app', mediaType: OCI_MEDIA_TYPES.manifest, digest: image.manifestDigest, tag: 'v1' }],
    ]);
    expect(layer!.target).toMatchObject({ size: image.layerSize, length: image.layerSize });
    expect(layer!.target.url).toBe(`${registry.url}/v2/demo/app/blobs/${image.layerDigest}`);
    expect(config!.target.size).toBe(image.configSize);
    expect(manifest!.target).toMatchObject({ size: image.manifestSize, url: `${registry.url}/v2/demo/app/manifests/${image.manifestDigest}` });
    expect(manifest!).toMatchObject({
      id: expect.stringMatching(/^[0-9a-f-]{36}$/),
      request: { method: 'PUT', host: registry.host, useragent: expect.stringContaining('skopeo') },
      source: { instanceID: expect.stringMatching(/^[0-9a-f-]{36}$/) },
      actor: {},
    });
    expect(Number.isNaN(Date.parse(manifest!.timestamp ?? ''))).toBe(false);
  });

  it('copy within the registry: the layer is MOUNTED from demo/app, the manifest pushed to demo/other', async () => {
    const [mount, manifest] = await step('copy', () => registry.copy('demo/app:v1', 'demo/other:v1'), [
      ['mount', { repository: 'demo/other', fromRepository: 'demo/app', digest: image.layerDigest, mediaType: BLOB }],
      ['push', { repository: 'demo/other', mediaType: OCI_MEDIA_TYPES.manifest, digest: image.manifestDigest, tag: 'v1' }],
    ]);
    expect(mount!.request).toMatchObject({ method: 'POST', useragent: expect.stringContaining('skopeo') });
    expect(mount!.target.url).toBe(`${registry.url}/v2/demo/other/blobs/${image.layerDigest}`);
    expect(manifest!.request?.method).toBe('PUT');
    // skopeo 1.9 never mounts the config: it reads it from demo/app (pull) and uploads it (push).
    expect(receiver.events().some((e) => matches(e, 'push', { repository: 'demo/other', digest: image.configDigest }))).toBe(true);
  });

  it('pull: the tagged manifest pull and GETs of both blobs', async () => {
    const [manifest] = await step('pull', () => registry.pull('demo/app', 'v1', join(work, 'pulled')), [
      ['pull', { repository: 'demo/app', mediaType: OCI_MEDIA_TYPES.manifest, digest: image.manifestDigest, tag: 'v1' }],
      ['pull', { repository: 'demo/app', mediaType: BLOB, digest: image.layerDigest }],
      ['pull', { repository: 'demo/app', mediaType: BLOB, digest: image.configDigest }],
    ]);
    expect(manifest!.request).toMatchObject({ method: 'GET', useragent: expect.stringContaining('skopeo') });
  });

  it('delete by digest: a manifest delete plus an untag delete per tag, in one request', async () => {
    const [manifest, tag] = await step('delete', () => registry.deleteManifest('demo/app', image.manifestDigest), [
      ['delete', { repository: 'demo/app', digest: image.manifestDigest }],
      ['delete', { repository: 'demo/app', tag: 'v1' }],
    ]);
    expect(manifest!.target.mediaType).toBeUndefined(); // 2.8 omits mediaType/size on deletes (3.x sends "" and 0)
    expect(tag!.target.digest).toBeUndefined();
    expect(tag!.request?.id).toBe(manifest!.request?.id);
    expect(manifest!.request).toMatchObject({ method: 'DELETE', useragent: expect.stringContaining('skopeo') });
    expect(await registry.deleteTag('demo/other', 'v1')).toBe(400); // 2.8 cannot delete a tag alone
  });

  it('every delivery carried the token and the v1 envelope media type, one event per request, unique ids', () => {
    expect(receiver.requests.length).toBeGreaterThan(0);
    for (const r of receiver.requests) {
      expect(r.method).toBe('POST');
      expect(r.headers.authorization).toBe(`Bearer ${TOKEN}`);
      expect(r.headers['content-type']).toBe('application/vnd.docker.distribution.events.v1+json');
      expect((r.json as { events: unknown[] }).events).toHaveLength(1);
    }
    const ids = receiver.events().map((e) => e.id);
    expect(new Set(ids).size).toBe(ids.length);
    expect(new Set(receiver.events().map((e) => e.source?.instanceID)).size).toBe(1);
  });

  it('a 5xx answer makes the registry resend the SAME event until 2xx, holding back later events', async () => {
    receiver.clear();
    receiver.enqueue(500, 500, 500, 503); // threshold 3: three immediate tries, then one per 100ms backoff
    const started = performance.now();
    const other = await buildOciLayout(join(work, 'layout2'), { seed: 'retry' });
    await registry.push(other.dir, 'demo/retry', 'v1');
    await receiver.waitForEvents((all) => all.some((e) => e.target.tag === 'v1' && e.target.repository === 'demo/retry'), WAIT_MS);
    timings.retry = Math.round(performance.now() - started);
    const firstId = receiver.events()[0]!.id;
    expect(receiver.requests.slice(0, 5).map((r) => r.status)).toEqual([500, 500, 500, 503, 200]);
    expect(receiver.events().slice(0, 5).every((e) => e.id === firstId)).toBe(true);
    expect(receiver.events({ acceptedOnly: true }).map((e) => e.target.digest)).toEqual([
      other.layerDigest,
      other.configDigest,
      other.manifestDigest,
    ]);
  });
});
