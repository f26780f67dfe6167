// The captured registry requests the tests are built from, read from the repository (test/fixtures/registry-events):
// every capture loads, and each exact request body of v3/extra/raw is still what Distribution 3.0 wrote for its
// .json twin, byte for byte.
import { describe, expect, it } from 'vitest';
import { extraFixtures, fixtureEvent, FIXTURES_DIR, fixtures, makeEvents, rawBody } from './events.ts';

const V1 = 'application/vnd.docker.distribution.events.v1+json';
const V2 = 'application/vnd.docker.distribution.events.v2+json';
const WALK = ['delete-manifest', 'delete-tag', 'mount-blob', 'pull-blob', 'pull-manifest-tagged', 'push-blob', 'push-manifest-tagged'];

/** What Go's `json.MarshalIndent(v, "", "   ")` writes for `value`: 3-space indent, `<`, `>` and `&` escaped. */
const goIndented = (value: unknown): string =>
  JSON.stringify(value, null, 3).replace(/[<>&]/g, (c) => `\\u00${c.charCodeAt(0).toString(16)}`);

describe('test/support/events: the captured fixtures', () => {
  it('live inside the repository', () => {
    expect(FIXTURES_DIR).toBe(new URL('../fixtures/registry-events', import.meta.url).pathname);
  });

  it('fixtures(): the 2.8 walk at the top level and the 3.0 walk under v3/, one event per request, each with its media type', () => {
    const all = fixtures();
    expect(all.map((f) => f.file)).toEqual([...WALK.map((n) => `${n}.json`), ...WALK.map((n) => `v3/${n}.json`)]);
    for (const f of all) {
      expect(f.headers['content-type'], f.file).toBe(f.file.startsWith('v3/') ? V2 : V1);
      expect(f.body.events, f.file).toHaveLength(1);
      expect(JSON.parse(f.raw), f.file).toEqual({ headers: f.headers, body: f.body });
    }
    expect(fixtureEvent('v3/delete-tag.json')).toMatchObject({ action: 'delete', target: { mediaType: '', size: 0, digest: '' } });
  });

  it('extraFixtures(): the OCI index push and the manifest delete by digest with the tag delete it causes', () => {
    const extra = extraFixtures();
    expect(extra.map((f) => f.file)).toEqual([
      'v3/extra/delete-manifest-by-digest.json',
      'v3/extra/delete-tag-after-manifest-delete.json',
      'v3/extra/push-index.json',
    ]);
    for (const f of extra) expect(f.headers['content-type'], f.file).toBe(V2);
    const [byDigest, tagAfter, index] = extra.map((f) => f.body.events[0]!);
    expect(index).toMatchObject({ action: 'push', target: { mediaType: 'application/vnd.oci.image.index.v1+json', tag: 'v3-multi' } });
    expect((index!.target as { references?: unknown[] }).references).toHaveLength(2);
    expect(byDigest).toMatchObject({ action: 'delete', target: { repository: tagAfter!.target.repository } });
    expect(tagAfter).toMatchObject({ action: 'delete', target: { digest: '' } });
  });

  it('the raw bodies are the exact bytes Distribution wrote for each .json body (Go\'s MarshalIndent, no final newline)', () => {
    for (const f of extraFixtures()) {
      expect(Buffer.isBuffer(f.raw), f.file).toBe(true);
      expect(f.raw.toString('utf8'), f.file).toBe(goIndented(f.body));
      expect(f.raw.at(-1), f.file).toBe(0x7d); // `}`
      expect(rawBody(f.file.replace(/^v3\/extra\/(.*)\.json$/, '$1')).equals(f.raw), f.file).toBe(true);
    }
    expect(rawBody('push-index').subarray(0, 17).toString()).toBe('{\n   "events": [\n');
  });

  it('rawBody() of an unknown capture throws ENOENT', () => {
    expect(() => rawBody('no-such-capture')).toThrow(expect.objectContaining({ code: 'ENOENT' }));
  });

  it('makeEvents(): distinct ids in order, shaped like the captured manifest push', () => {
    const events = makeEvents(3, 'x', { tag: 'v9' });
    expect(events.map((e) => e.id)).toEqual(['x-0', 'x-1', 'x-2']);
    expect(events[1]).toMatchObject({ action: 'push', target: { ...fixtureEvent('push-manifest-tagged.json').target, tag: 'v9' } });
  });
});
