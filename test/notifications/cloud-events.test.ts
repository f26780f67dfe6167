// The CloudEvents encoding on its own (api.md §8): attributes, percent-encoding, the three body shapes and what is
// refused. Deliveries over real HTTP, for every captured registry event, are in http-sink-cloud-events.test.ts.
import { HTTP, type CloudEventV1 } from 'cloudevents';
import { describe, expect, it } from 'vitest';
import {
  checkBatching,
  cloudEventAttributes,
  CloudEventsEncoder,
  FALLBACK_SOURCE,
  isCloudEventsSource,
} from '../../src/notifications/cloud-events.ts';
import { EndpointConfigError } from '../../src/notifications/errors.ts';
import type { Event } from '../../src/notifications/event.ts';
import type { QueuedEvent } from '../../src/notifications/sink.ts';

const event = (fields: Partial<Event> = {}, target: Event['target'] = {}): Partial<Event> => ({
  id: 'e1',
  timestamp: '2026-11-23T06:04:36.113023003Z',
  action: 'push',
  target: { repository: 'team/app', ...target },
  request: { host: 'registry.example.com:5000' },
  ...fields,
});
const item = (e: Partial<Event>, json = JSON.stringify(e)): QueuedEvent => ({ id: e.id ?? 'e1', json, acceptedAt: 0 });

describe('cloudEventAttributes', () => {
  it('maps a registry event as api.md §8 says', () => {
    expect(cloudEventAttributes('e1', event({}, { tag: 'v1', digest: 'sha256:ab' }))).toEqual({
      specversion: '1.0',
      id: 'e1',
      source: '//registry.example.com:5000',
      type: 'io.registry-notifier.push',
      subject: 'team/app:v1',
      time: '2026-11-23T06:04:36.113023003Z',
      datacontenttype: 'application/json',
    });
  });

  it.each<[string, Event['target'], string | undefined]>([
    ['tag wins over digest', { tag: 'v1', digest: 'sha256:ab' }, 'team/app:v1'],
    ['digest without a tag', { digest: 'sha256:ab' }, 'team/app@sha256:ab'],
    ['an empty tag counts as none (3.0 deletes)', { tag: '', digest: 'sha256:ab' }, 'team/app@sha256:ab'],
    ['an empty digest counts as none (3.0 tag deletes)', { tag: 'v1', digest: '' }, 'team/app:v1'],
    ['repository alone', { digest: '' }, 'team/app'],
    ['no repository: no subject', { repository: undefined, tag: 'v1' }, undefined],
  ])('subject: %s', (_, target, subject) => {
    expect(cloudEventAttributes('e1', event({}, target)).subject).toBe(subject);
  });

  it('prefixes any action, unknown ones as they come', () => {
    for (const action of ['pull', 'push', 'mount', 'delete', 'replicate']) {
      expect(cloudEventAttributes('e1', event({ action })).type).toBe(`io.registry-notifier.${action}`);
    }
  });

  it('takes the configured source over the event host', () => {
    expect(cloudEventAttributes('e1', event(), 'https://registry.example.com/prod').source).toBe('https://registry.example.com/prod');
  });

  it('falls back to a fixed source without a usable host, and leaves out a time the SDK refuses', () => {
    expect(cloudEventAttributes('e1', event({ request: {} })).source).toBe(FALLBACK_SOURCE);
    expect(cloudEventAttributes('e1', event({ request: { host: 'a b' } })).source).toBe(FALLBACK_SOURCE);
    const badTime = cloudEventAttributes('e1', event({ timestamp: 'yesterday', request: { host: 'a b' } }));
    expect(badTime).not.toHaveProperty('time');
    expect(badTime.source).toBe(FALLBACK_SOURCE);
    expect(cloudEventAttributes('e1', event({ timestamp: undefined }))).not.toHaveProperty('time');
    expect(cloudEventAttributes('e1', event({ timestamp: '2026-11-23T07:04:36+01:00' })).time).toBe('2026-11-23T07:04:36+01:00');
  });

  it('judges a configured source as the SDK does: an RFC 3986 URI reference', () => {
    for (const ok of ['//registry.example.com:5000', 'https://r.example/x?y#z', 'urn:registry:prod', '/relative', 'a%20b']) {
      expect(isCloudEventsSource(ok), ok).toBe(true);
    }
    for (const bad of ['a b', 'urn:a%zz', 'http://[x/', '%']) expect(isCloudEventsSource(bad), bad).toBe(false);
  });
});

describe('CloudEventsEncoder', () => {
  it('binary: the event text is the body, the attributes ce-* headers, Content-Type the datacontenttype', () => {
    const e = event({}, { tag: 'v1' });
    const { body, headers } = new CloudEventsEncoder({ mode: 'Binary', batch: false }).encode([item(e)]);
    expect(body).toBe(JSON.stringify(e));
    expect(headers).toEqual({
      'content-type': 'application/json',
      'ce-specversion': '1.0',
      'ce-id': 'e1',
      'ce-source': '//registry.example.com:5000',
      'ce-type': 'io.registry-notifier.push',
      'ce-subject': 'team/app:v1',
      'ce-time': '2026-11-23T06:04:36.113023003Z',
    });
  });

  it('binary: percent-encodes space, ", % and non-ASCII in header values, as the HTTP binding requires', () => {
    const e = event({ id: 'id "1" 100%', action: 'ré tag' }, { tag: 'v1' });
    const { headers } = new CloudEventsEncoder({ mode: 'Binary', batch: false }).encode([item(e)]);
    expect(headers['ce-id']).toBe('id%20%221%22%20100%25');
    expect(headers['ce-type']).toBe('io.registry-notifier.r%C3%A9%20tag');
    for (const value of Object.values(headers)) expect(value).toMatch(/^[\x21-\x7e]+$/);
    expect(decodeURIComponent(headers['ce-id']!)).toBe('id "1" 100%');
    expect(decodeURIComponent(headers['ce-type']!)).toBe('io.registry-notifier.ré tag');
  });

  it('structured: one application/cloudevents+json object whose data is the event text, byte for byte', () => {
    const json = '{"id":"e1","action":"push","target":{"repository":"a","size":12345678901234567890123,"x":1.0,"note":"\\u003cb\\u003e"}}';
    const { body, headers } = new CloudEventsEncoder({ mode: 'Structured', batch: false }).encode([item({ id: 'e1' }, json)]);
    expect(headers).toEqual({ 'content-type': 'application/cloudevents+json' });
    expect(body.endsWith(`,"data":${json}}`)).toBe(true);
    const parsed = HTTP.toEvent({ headers, body }) as CloudEventV1<unknown>;
    expect(parsed).toMatchObject({ id: 'e1', type: 'io.registry-notifier.push', source: FALLBACK_SOURCE, subject: 'a' });
    expect(parsed.data).toEqual(JSON.parse(json));
  });

  it('structured with batching: always a batch array, even of one event', () => {
    const encoder = new CloudEventsEncoder({ mode: 'Structured', batch: true, source: 'urn:r' });
    const one = encoder.encode([item(event())]);
    expect(one.headers).toEqual({ 'content-type': 'application/cloudevents-batch+json' });
    expect(JSON.parse(one.body)).toHaveLength(1);
    const two = encoder.encode([item(event({ id: 'a' })), item(event({ id: 'b' }))]);
    expect((HTTP.toEvent({ headers: two.headers, body: two.body }) as CloudEventV1<unknown>[]).map((e) => [e.id, e.source])).toEqual([['a', 'urn:r'], ['b', 'urn:r']]);
  });

  it('refuses binary mode with batching, and several events for a binary POST', () => {
    expect(() => new CloudEventsEncoder({ mode: 'Binary', batch: true })).toThrow(EndpointConfigError);
    expect(() => checkBatching('Binary', 2)).toThrow(/binary mode sends one event per POST/);
    expect(() => checkBatching('Binary', 1)).not.toThrow();
    expect(() => checkBatching('Structured', 1000)).not.toThrow();
    const binary = new CloudEventsEncoder({ mode: 'Binary', batch: false });
    expect(() => binary.encode([item(event()), item(event())])).toThrow(EndpointConfigError);
  });
});
