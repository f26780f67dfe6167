import { describe, expect, it } from 'vitest';
import { Bridge, type BridgeOptions } from '../../src/notifications/bridge.ts';
import type { Event } from '../../src/notifications/event.ts';
import { fixtureEvent } from '../support/events.ts';
import { RecordingSink } from './test-sinks.ts';

// A bridge that stamps the fixture's own id, time and records, so its events can be compared byte for byte.
function bridgeFor(file: string): { bridge: Bridge; sink: RecordingSink<Event>; expected: Event } {
  const expected = fixtureEvent(file);
  const sink = new RecordingSink<Event>();
  const options: BridgeOptions = {
    baseUrl: 'http://127.0.0.1:5000',
    source: expected.source!,
    actor: expected.actor!,
    request: expected.request!,
    newId: () => expected.id,
    now: () => new Date(Date.parse(expected.timestamp!)),
  };
  return { bridge: new Bridge(sink, options), sink, expected };
}

// Go writes nanoseconds, JavaScript milliseconds: the only difference allowed.
const sameButTime = (actual: Event, expected: Event): void => {
  expect(JSON.stringify({ ...actual, timestamp: '' })).toBe(JSON.stringify({ ...expected, timestamp: '' }));
  expect(Date.parse(actual.timestamp!)).toBe(Date.parse(expected.timestamp!.replace(/(\.\d{3})\d*Z$/, '$1Z')));
};

describe('Bridge matches the registry field by field', () => {
  it('manifest push with tag', async () => {
    const { bridge, sink, expected } = bridgeFor('push-manifest-tagged.json');
    const t = expected.target;
    await bridge.manifestPushed('demo/app', { mediaType: t.mediaType!, size: t.size!, digest: t.digest! }, 'v1');
    sameButTime(sink.items[0]!, expected);
  });

  it('manifest pull by tag', async () => {
    const { bridge, sink, expected } = bridgeFor('pull-manifest-tagged.json');
    const t = expected.target;
    await bridge.manifestPulled('demo/app', { mediaType: t.mediaType!, size: t.size!, digest: t.digest! }, 'v1');
    sameButTime(sink.items[0]!, expected);
  });

  it('blob push, pull and mount', async () => {
    for (const [file, call] of [
      ['push-blob.json', (b: Bridge, e: Event) => b.blobPushed('demo/app', desc(e))],
      ['pull-blob.json', (b: Bridge, e: Event) => b.blobPulled('demo/app', desc(e))],
      ['mount-blob.json', (b: Bridge, e: Event) => b.blobMounted('team/other', desc(e), 'demo/app')],
    ] as const) {
      const { bridge, sink, expected } = bridgeFor(file);
      await call(bridge, expected);
      sameButTime(sink.items[0]!, expected);
    }
  });

  it('manifest delete and tag delete', async () => {
    const manifest = bridgeFor('delete-manifest.json');
    await manifest.bridge.manifestDeleted('team/other', manifest.expected.target.digest!);
    sameButTime(manifest.sink.items[0]!, manifest.expected);
    const tag = bridgeFor('delete-tag.json');
    await tag.bridge.tagDeleted('team/other', 'v1');
    sameButTime(tag.sink.items[0]!, tag.expected);
  });

  it('includes references only when asked', async () => {
    const expected = fixtureEvent('v3/push-manifest-tagged.json');
    const references = expected.target.references as { mediaType: string; digest: string; size: number }[];
    const sink = new RecordingSink<Event>();
    const manifest = { mediaType: expected.target.mediaType!, size: 418, digest: expected.target.digest!, references };
    await new Bridge(sink, { baseUrl: 'http://r', source: {}, includeReferences: true }).manifestPushed('demo/app', manifest);
    await new Bridge(sink, { baseUrl: 'http://r', source: {} }).manifestPushed('demo/app', manifest);
    expect(sink.items[0]!.target.references).toEqual(references);
    expect(sink.items[1]!.target).not.toHaveProperty('references');
    expect(sink.items[0]!.id).toMatch(/^[0-9a-f-]{36}$/);
    expect(sink.items[0]!.id).not.toBe(sink.items[1]!.id);
  });
});

function desc(e: Event): { mediaType: string; size: number; digest: string } {
  return { mediaType: e.target.mediaType!, size: e.target.size!, digest: e.target.digest! };
}
