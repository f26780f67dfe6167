// CloudEvents over real HTTP (api.md §8): every captured registry event (2.8 and 3.0, the 3.0 extras as the registry's
// exact bytes) plus one with a number beyond double precision, `1.0` and Go's `\u003c` escapes, sent by the HTTP sink
// in binary, structured and batched mode, signed and not, with the default and a configured source. Each request a
// loopback receiver got is read back with the cloudevents SDK's `HTTP.toEvent`, as a receiver written with it would.
import { createHmac, randomBytes } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';
import { CloudEvent, HTTP, type CloudEventV1 } from 'cloudevents';
import { Webhook } from 'standardwebhooks';
import { describe, expect, it } from 'vitest';
import { parseEnvelope } from '../../src/ingest/envelope.ts';
import type { CloudEventsEncoding } from '../../src/notifications/cloud-events.ts';
import { Endpoint, endpointConfig } from '../../src/notifications/endpoint.ts';
import { EndpointConfigError } from '../../src/notifications/errors.ts';
import type { Event } from '../../src/notifications/event.ts';
import { HttpSink } from '../../src/notifications/http-sink.ts';
import { signingKey, verifyWebhook } from '../../src/notifications/signing.ts';
import type { QueuedEvent } from '../../src/notifications/sink.ts';
import { startReceiver, useCleanups } from '../support/cleanup.ts';
import { extraFixtures, fixtures } from '../support/events.ts';
import type { RecordedRequest, TestReceiver } from '../support/receiver.ts';

const cleanups = useCleanups();
const receiver = (): Promise<TestReceiver> => startReceiver(cleanups);

// Built by hand, as a registry could send it: JSON.parse keeps none of these three details.
const BIG_RAW = '{"id":"big-1","timestamp":"2026-11-23T06:04:36.113023003Z","action":"push","target":{"mediaType":"application/vnd.oci.image.manifest.v1+json",'
  + '"size":12345678901234567890123,"ratio":1.0,"repository":"team/app","tag":"v1","note":"\\u003cb\\u003e \\u0026"},"request":{"host":"registry.example.com:5000"}}';

interface Case {
  name: string;
  /** What the queue hands the sink: the registry's own text of the event. */
  item: QueuedEvent;
  event: Event;
}

// Every captured event, each as the ingest passes it on (its own bytes of the request body).
const CASES: Case[] = [
  ...fixtures().flatMap((f) => parseEnvelope(JSON.stringify(f.body)).map((e, i) => ({ name: `${f.file}#${i}`, ...e }))),
  ...extraFixtures().flatMap((f) => parseEnvelope(f.raw).map((e, i) => ({ name: `${f.file}#${i}`, ...e }))),
  { name: 'big number, 1.0 and \\u003c escapes', ...parseEnvelope(`{"events":[${BIG_RAW}]}`)[0]! },
].map(({ name, event, json }) => ({ name, event, item: { id: event.id, json, acceptedAt: 0 } }));

const SOURCE = 'https://registry.example.com/prod';
const SECRET = `whsec_${randomBytes(24).toString('base64')}`;

// The subject api.md §8 asks for, written out here from the contract (empty strings count as absent: 3.0's deletes).
function expectedSubject(event: Event): string {
  const { repository, tag, digest } = event.target;
  return tag ? `${repository}:${tag}` : digest ? `${repository}@${digest}` : String(repository);
}

function sink(url: string, cloudEvents: CloudEventsEncoding, signed: boolean): HttpSink {
  const s = new HttpSink({ url, timeoutMs: 2000, cloudEvents, ...(signed && { signingKey: signingKey(SECRET) }) });
  cleanups.push(() => s.close());
  return s;
}

// The SDK reads Node's headers (lower-case names, string values; none of ours repeats).
const sdkHeaders = (headers: IncomingHttpHeaders): Record<string, string> =>
  Object.fromEntries(Object.entries(headers).map(([k, v]) => [k, Array.isArray(v) ? v.join(', ') : String(v)]));

function received(request: RecordedRequest): CloudEventV1<unknown>[] {
  const parsed = HTTP.toEvent({ headers: sdkHeaders(request.headers), body: request.text });
  return (Array.isArray(parsed) ? parsed : [parsed]) as CloudEventV1<unknown>[];
}

// Every attribute of one event as the SDK read it, and the event intact as its data.
function checkEvent(ce: CloudEventV1<unknown>, { event, item }: Case, source: string | undefined): void {
  expect(ce.specversion).toBe('1.0');
  expect(ce.id).toBe(event.id);
  expect(ce.type).toBe(`io.registry-notifier.${event.action}`);
  expect(ce.subject).toBe(expectedSubject(event));
  expect(ce.source).toBe(source ?? `//${event.request?.host}`);
  // The SDK reads a single event's time through Date (milliseconds), a batch's as written: the same instant either way.
  expect(new Date(ce.time!).toISOString()).toBe(new Date(event.timestamp!).toISOString());
  expect(ce.datacontenttype).toBe('application/json');
  expect(ce.data).toEqual(JSON.parse(item.json));
  expect(new CloudEvent({ ...ce }).validate()).toBe(true); // the SDK's own schema accepts what it received
}

// The signature covers the exact body: our verifier, the Standard Webhooks library, and a bare HMAC agree.
function checkSignature(request: RecordedRequest, id: string): void {
  const headers = sdkHeaders(request.headers);
  expect(verifyWebhook(SECRET, request.headers, request.body)).toBe(id);
  expect(() => new Webhook(SECRET).verify(request.text, headers)).not.toThrow();
  const mac = createHmac('sha256', signingKey(SECRET)).update(`${id}.${headers['webhook-timestamp']}.${request.text}`).digest('base64');
  expect(headers['webhook-signature']).toBe(`v1,${mac}`);
}

describe('CloudEvents over HTTP, every captured registry event', () => {
  it('covers the fixtures the contract names', () => {
    const names = CASES.map((c) => c.name).join(' ');
    for (const file of ['pull-blob', 'mount-blob', 'push-manifest-tagged', 'delete-tag', 'v3/delete-tag', 'v3/extra/push-index', 'v3/extra/delete-manifest-by-digest']) {
      expect(names).toContain(file);
    }
    expect(CASES.length).toBeGreaterThanOrEqual(18);
    const subject = (name: string): string => expectedSubject(CASES.find((c) => c.name.startsWith(name))!.event);
    expect(subject('v3/delete-tag.json')).toBe('demo/mirror:v1'); // a 3.0 tag delete: digest ""
    expect(subject('v3/extra/delete-manifest-by-digest.json')).toMatch(/^[\w/-]+@sha256:[0-9a-f]{64}$/);
    expect(subject('push-manifest-tagged.json')).toMatch(/^[\w/-]+:[\w.-]+$/);
  });

  for (const signed of [false, true]) {
    for (const source of [undefined, SOURCE]) {
      const how = `${signed ? 'signed' : 'unsigned'}, ${source ? 'configured source' : 'default source'}`;

      it(`binary (${how}): ce-* headers, the registry's bytes as the body`, async () => {
        const r = await receiver();
        const s = sink(r.url, { mode: 'Binary', batch: false, ...(source && { source }) }, signed);
        for (const c of CASES) await s.write([c.item]);
        expect(r.requests).toHaveLength(CASES.length);
        for (const [i, c] of CASES.entries()) {
          const request = r.requests[i]!;
          expect(request.headers['content-type'], c.name).toBe('application/json');
          expect(request.text, c.name).toBe(c.item.json);
          expect(request.headers['ce-time'], c.name).toBe(c.event.timestamp); // as the registry wrote it, nanoseconds kept
          const [ce, ...more] = received(request);
          expect(more).toEqual([]);
          checkEvent(ce!, c, source);
          if (signed) checkSignature(request, c.event.id);
          else expect(request.headers['webhook-signature']).toBeUndefined();
        }
      });

      it(`structured (${how}): one application/cloudevents+json event per POST, data the registry's bytes`, async () => {
        const r = await receiver();
        const s = sink(r.url, { mode: 'Structured', batch: false, ...(source && { source }) }, signed);
        for (const c of CASES) await s.write([c.item]);
        for (const [i, c] of CASES.entries()) {
          const request = r.requests[i]!;
          expect(request.headers['content-type'], c.name).toBe('application/cloudevents+json');
          expect(request.headers['ce-id'], c.name).toBeUndefined();
          expect(request.text.endsWith(`,"data":${c.item.json}}`), c.name).toBe(true);
          expect((JSON.parse(request.text) as { time: string }).time).toBe(c.event.timestamp);
          const [ce, ...more] = received(request);
          expect(more).toEqual([]);
          checkEvent(ce!, c, source);
          if (signed) checkSignature(request, c.event.id);
        }
      });

      it(`structured and batched (${how}): one application/cloudevents-batch+json array, in order`, async () => {
        const r = await receiver();
        const s = sink(r.url, { mode: 'Structured', batch: true, ...(source && { source }) }, signed);
        await s.write(CASES.map((c) => c.item));
        await s.write([CASES[0]!.item]); // a batch of one is still a batch
        const [all, one] = r.requests;
        expect(all?.headers['content-type']).toBe('application/cloudevents-batch+json');
        expect(one?.headers['content-type']).toBe('application/cloudevents-batch+json');
        const events = received(all!);
        expect(events.map((e) => e.id)).toEqual(CASES.map((c) => c.event.id));
        for (const [i, c] of CASES.entries()) {
          checkEvent(events[i]!, c, source);
          expect(events[i]!.time, c.name).toBe(c.event.timestamp);
          expect(all!.text, c.name).toContain(`,"data":${c.item.json}}`);
        }
        expect(received(one!).map((e) => e.id)).toEqual([CASES[0]!.event.id]);
        if (signed) checkSignature(all!, verifyWebhook(SECRET, all!.headers, all!.body)); // batch_<hash>
        if (signed) expect(all!.headers['webhook-id']).toMatch(/^batch_[0-9a-f]{32}$/);
      });
    }
  }

  it('keeps the bytes JSON.parse cannot: a big number, 1.0, \\u003c escapes, in every mode', async () => {
    const r = await receiver();
    const big = CASES.at(-1)!;
    expect(big.item.json).toBe(BIG_RAW);
    await sink(r.url, { mode: 'Binary', batch: false }, false).write([big.item]);
    await sink(r.url, { mode: 'Structured', batch: false }, false).write([big.item]);
    await sink(r.url, { mode: 'Structured', batch: true }, false).write([big.item]);
    const [binary, structured, batched] = r.requests.map((q) => q.text);
    expect(binary).toBe(BIG_RAW);
    for (const text of [binary, structured, batched]) {
      expect(text).toContain('"size":12345678901234567890123,"ratio":1.0,');
      expect(text).toContain('"note":"\\u003cb\\u003e \\u0026"');
    }
  });

  it('sends the configured headers too; the signature covers the body as sent', async () => {
    const r = await receiver();
    const s = new HttpSink({ url: r.url, timeoutMs: 2000, headers: [['Authorization', 'Bearer t']], cloudEvents: { mode: 'Binary', batch: false } });
    cleanups.push(() => s.close());
    await s.write([CASES[0]!.item]);
    expect(r.requests[0]?.headers).toMatchObject({ authorization: 'Bearer t', 'ce-id': CASES[0]!.event.id, 'content-type': 'application/json' });
  });
});

describe('CloudEvents and the endpoint', () => {
  it('refuses Binary with maxBatchEvents > 1, at creation and on update', () => {
    const url = 'http://127.0.0.1:9/hook';
    expect(() => new Endpoint('e', endpointConfig({ url, maxBatchEvents: 2, cloudEvents: { mode: 'Binary' } }))).toThrow(EndpointConfigError);
    const e = new Endpoint('e', endpointConfig({ url, cloudEvents: { mode: 'Binary' } }));
    cleanups.push(() => e.close({ signal: AbortSignal.abort() }));
    expect(() => e.update(endpointConfig({ url, maxBatchEvents: 5, cloudEvents: { mode: 'Binary' } }))).toThrow(/binary mode sends one event per POST/);
    expect(e.config.maxBatchEvents).toBe(1);
  });

  it('structured: raising maxBatchEvents above 1 switches the endpoint to the batch format', async () => {
    const r = await receiver();
    const e = new Endpoint('e', endpointConfig({ url: r.url, cloudEvents: { mode: 'Structured' } }));
    cleanups.push(() => e.close({ signal: AbortSignal.abort() }));
    e.enqueue([CASES[0]!.item]);
    await r.waitFor((q) => q.length === 1);
    e.update(endpointConfig({ url: r.url, maxBatchEvents: 10, cloudEvents: { mode: 'Structured' } }));
    e.enqueue([CASES[1]!.item]);
    await r.waitFor((q) => q.length === 2);
    expect(r.requests.map((q) => q.headers['content-type'])).toEqual(['application/cloudevents+json', 'application/cloudevents-batch+json']);
  });
});
