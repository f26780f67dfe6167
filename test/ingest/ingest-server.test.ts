import { connect, type Socket } from 'node:net';
import { Readable } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import { NO_FILTER } from '../../src/notifications/filter.ts';
import { EVENTS_MEDIA_TYPE, EVENTS_MEDIA_TYPE_V2 } from '../../src/notifications/event.ts';
import { extraFixtures, fixtures } from '../support/events.ts';
import type { TestReceiver } from '../support/receiver.ts';
import { envelope, event, post, rawBody, rawExchange, startIngest, TOKEN, type Answer, type Harness, type HarnessOptions } from './support.ts';
import { until } from '../support/wait.ts';

const running: Harness[] = [];
const cleanupSocket: Socket[] = [];
afterEach(async () => {
  for (const socket of cleanupSocket.splice(0)) socket.destroy();
  await Promise.all(running.splice(0).map((h) => h.close()));
});

async function start(options: HarnessOptions = {}): Promise<Harness> {
  const harness = await startIngest(options);
  running.push(harness);
  return harness;
}

/** The answer is exactly this refusal: status, JSON content type, `{"error": {code, message, path?}}`. */
function expectRefusal(answer: Answer, status: number, code: string, path?: string): void {
  expect({ status: answer.status, type: answer.headers['content-type'] }, answer.text).toEqual({ status, type: 'application/json' });
  const body = answer.json as { error: Record<string, unknown> };
  expect(Object.keys(body)).toEqual(['error']);
  expect(body.error).toEqual({ code, message: expect.any(String), ...(path !== undefined && { path }) });
  expect((body.error.message as string).length).toBeGreaterThan(0);
  expect(answer.headers['content-length']).toBe(String(Buffer.byteLength(answer.text)));
}

function expectAccepted(answer: Answer, accepted: number, duplicates: number): void {
  expect({ status: answer.status, type: answer.headers['content-type'] }, answer.text).toEqual({ status: 202, type: 'application/json' });
  expect(answer.text).toBe(JSON.stringify({ accepted, duplicates }));
}

/**
 * Proves what the receiver got and nothing more: posts a marker event, waits for it, and compares every id
 * received (an endpoint delivers in order, so anything queued earlier arrives before the marker).
 */
async function expectDelivered(h: Harness, receiver: TestReceiver, ids: readonly string[]): Promise<void> {
  const marker = `marker-${Math.random().toString(36).slice(2)}`;
  expectAccepted(await post(h.ingest.url, envelope([event(marker)])), 1, 0);
  await receiver.waitForEvents((events) => events.some((e) => e.id === marker));
  expect(receiver.events({ acceptedOnly: true }).map((e) => e.id)).toEqual([...ids, marker]);
}

describe('IngestServer: 202 Accepted', () => {
  it('queues every event for every endpoint and answers {"accepted":N,"duplicates":0}; events arrive intact, in order', async () => {
    const h = await start({ endpoints: [{}, {}] });
    const events = [
      event('a-1'),
      { ...event('a-2', { action: 'scan' }), vendor: { scanner: 'trivy', findings: [1, 2, { severity: 'HIGH' }] } },
      { ...event('a-3'), target: { ...event('a-3').target, annotations: { 'org.opencontainers.image.source': 'x' }, size: 0, mediaType: '' } },
    ];
    const answer = await post(h.ingest.url, envelope(events), { contentType: 'application/json' });
    expectAccepted(answer, 3, 0);
    for (const receiver of h.receivers) {
      const got = await receiver.waitForEvents((e) => e.length === 3);
      // Byte for byte, field order included: nothing added, nothing dropped, nothing reordered.
      expect(got.map((e) => JSON.stringify(e))).toEqual(events.map((e) => JSON.stringify(e)));
    }
    expect(h.heard).toEqual({ requests: [202], events: [3], duplicates: [] });
  });

  it('takes every captured registry request as the registry sent it (v1 and v3 media types, its headers, its bytes)', async () => {
    const h = await start();
    const all = fixtures();
    expect(new Set(all.map((f) => f.headers['content-type']))).toEqual(new Set([EVENTS_MEDIA_TYPE, EVENTS_MEDIA_TYPE_V2]));
    for (const fixture of all) {
      // Go's encoder writes compact JSON in field order, which JSON.stringify of the parsed body reproduces.
      const answer = await post(h.ingest.url, JSON.stringify(fixture.body), { contentType: null, authorization: null, headers: fixture.headers });
      expectAccepted(answer, fixture.body.events.length, 0);
    }
    const expected = all.flatMap((f) => f.body.events);
    const got = await h.receivers[0]!.waitForEvents((e) => e.length === expected.length);
    expect(got.map((e) => JSON.stringify(e))).toEqual(expected.map((e) => JSON.stringify(e)));
  });

  it('takes Distribution 3.0\'s request bodies byte for byte (MarshalIndent, references, empty delete fields) and sends each event on as those bytes', async () => {
    const h = await start({ endpoints: [{}, { maxBatchEvents: 10 }] });
    const extra = extraFixtures();
    expect(extra.map((f) => f.file)).toEqual([
      'v3/extra/delete-manifest-by-digest.json', 'v3/extra/delete-tag-after-manifest-delete.json', 'v3/extra/push-index.json',
    ]);
    for (const fixture of extra) {
      const answer = await post(h.ingest.url, fixture.raw, { contentType: null, headers: fixture.headers }); // these captures carry no token
      expectAccepted(answer, fixture.body.events.length, 0);
    }
    const [single, batched] = h.receivers as [TestReceiver, TestReceiver];
    await single.waitFor((requests) => requests.length === 3);
    await batched.waitFor((requests) => requests.reduce((n, r) => n + (JSON.parse(r.body.toString('utf8')) as { events: unknown[] }).events.length, 0) === 3);
    for (const [i, request] of single.requests.entries()) {
      const fixture = extra[i]!;
      const text = request.body.toString('utf8');
      expect(text.startsWith('{"events":[') && text.endsWith(']}'), text.slice(0, 40)).toBe(true);
      const eventBytes = text.slice('{"events":['.length, -']}'.length);
      // The registry's own text: its indentation and escapes, inside the request it sent.
      expect(fixture.raw.toString('utf8')).toContain(eventBytes);
      expect(eventBytes).toMatch(/^\{\n {9}"id": /);
      expect(JSON.parse(text)).toEqual(fixture.body);
    }
    const index = JSON.parse(single.requests[2]!.body.toString('utf8')) as { events: [{ target: { references: unknown[] } }] };
    expect(index.events[0].target.references.length).toBeGreaterThan(1);
    // A batch joins the same texts; every field of every event survives.
    const all = batched.requests.flatMap((r) => (JSON.parse(r.body.toString('utf8')) as { events: unknown[] }).events);
    expect(all).toEqual(extra.flatMap((f) => f.body.events));
  });

  it('passes on what JSON.parse would lose: big integers, 1.0, 1e400, -0, escapes', async () => {
    const h = await start();
    const text = '{"events":[{"id":"lossless","action":"push","target":{"size":12345678901234567890,"length":1.0},"x":1e400,"z":-0,"s":"\\u003c\\u0026\\/"}]}';
    expectAccepted(await post(h.ingest.url, text), 1, 0);
    const [request] = await h.receivers[0]!.waitFor((requests) => requests.length === 1);
    expect(request!.body.toString('utf8')).toBe(text);
  });

  it.each([
    ['application/json'],
    ['application/json; charset=utf-8'],
    [EVENTS_MEDIA_TYPE_V2],
    ['Application/VND.Docker.Distribution.Events.V1+JSON'],
  ])('accepts content type %s', async (contentType) => {
    const h = await start();
    expectAccepted(await post(h.ingest.url, envelope([event('ct')]), { contentType }), 1, 0);
  });

  it('accepts unknown actions, unknown fields and minimal events, and passes them on', async () => {
    const h = await start();
    const minimal = { id: 'min-1', action: 'replicate', target: {}, 'x-extra': [null, true, 1.5, 'é'] };
    const answer = await post(h.ingest.url, JSON.stringify({ events: [minimal], envelopeExtra: { kept: false } }));
    expectAccepted(answer, 1, 0);
    const [got] = await h.receivers[0]!.waitForEvents((e) => e.length === 1);
    expect(got).toMatchObject(minimal);
    expect(Object.keys(got!).slice(0, 4)).toEqual(['id', 'action', 'target', 'x-extra']);
  });

  it('accepts an empty events array and queues nothing', async () => {
    const h = await start();
    expectAccepted(await post(h.ingest.url, '{"events":[]}'), 0, 0);
    expect(h.endpoints.pending).toBe(0);
    await expectDelivered(h, h.receivers[0]!, []);
  });

  it('ignores a query string on /events', async () => {
    const h = await start();
    expectAccepted(await post(h.ingest.url, envelope([event('q')]), { path: '/events?from=registry' }), 1, 0);
  });
});

describe('IngestServer: 400, never half-applied', () => {
  const good = (id: string): string => JSON.stringify(event(id));
  const target = JSON.stringify(event('t').target);
  const cases: [name: string, body: string, code: string, path: string][] = [
    ['malformed JSON', `{"events":[${good('m')}`, 'InvalidJSON', '$'],
    ['a truncated fixture', JSON.stringify(fixtures()[0]!.body).slice(0, 200), 'InvalidJSON', '$'],
    ['an empty body', '', 'InvalidJSON', '$'],
    ['an array, not an object', `[${good('m')}]`, 'InvalidEnvelope', '$'],
    ['a string, not an object', '"events"', 'InvalidEnvelope', '$'],
    ['null', 'null', 'InvalidEnvelope', '$'],
    ['missing events', '{"Events":[]}', 'InvalidEnvelope', '$.events'],
    ['events not an array', `{"events":${good('m')}}`, 'InvalidEnvelope', '$.events'],
    ['an event that is a number', `{"events":[${good('m')},7]}`, 'InvalidEnvelope', '$.events[1]'],
    ['an event that is null', `{"events":[${good('m')},null]}`, 'InvalidEnvelope', '$.events[1]'],
    ['an event that is an array', `{"events":[${good('m')},[]]}`, 'InvalidEnvelope', '$.events[1]'],
    ['a missing id', `{"events":[${good('m')},{"action":"push","target":${target}}]}`, 'InvalidEnvelope', '$.events[1].id'],
    ['an empty id', `{"events":[${good('m')},{"id":"","action":"push","target":${target}}]}`, 'InvalidEnvelope', '$.events[1].id'],
    ['a numeric id', `{"events":[${good('m')},{"id":7,"action":"push","target":${target}}]}`, 'InvalidEnvelope', '$.events[1].id'],
    ['a missing action', `{"events":[${good('m')},{"id":"b","target":${target}}]}`, 'InvalidEnvelope', '$.events[1].action'],
    ['a non-string action', `{"events":[${good('m')},{"id":"b","action":["push"],"target":${target}}]}`, 'InvalidEnvelope', '$.events[1].action'],
    ['a missing target', `{"events":[${good('m')},{"id":"b","action":"push"}]}`, 'InvalidEnvelope', '$.events[1].target'],
    ['a string target', `{"events":[${good('m')},{"id":"b","action":"push","target":"demo/app"}]}`, 'InvalidEnvelope', '$.events[1].target'],
    ['an array target', `{"events":[${good('m')},{"id":"b","action":"push","target":[]}]}`, 'InvalidEnvelope', '$.events[1].target'],
    ['a null target', `{"events":[${good('m')},{"id":"b","action":"push","target":null}]}`, 'InvalidEnvelope', '$.events[1].target'],
    ['the third event bad', `{"events":[${good('m')},${good('n')},{"id":"c","action":1,"target":{}}]}`, 'InvalidEnvelope', '$.events[2].action'],
    // JSON.parse reads any depth, but the event is re-serialised for every endpoint; this deep it cannot be.
    ['an event nested too deeply', `{"events":[${good('m')},{"id":"d","action":"push","target":{"x":${'['.repeat(20_000)}${']'.repeat(20_000)}}}]}`, 'InvalidEnvelope', '$.events[1]'],
  ];

  it.each(cases)('%s → 400 with the path, nothing queued', async (_name, body, code, path) => {
    // ep1 is disabled, so whatever it took stays pending and shows.
    const h = await start({ endpoints: [{}, { disabled: true }], maxBodySize: 256 * 1024 });
    expectRefusal(await post(h.ingest.url, body), 400, code, path);
    expect(h.endpoints.pending).toBe(0);
    expect(h.heard).toEqual({ requests: [400], events: [], duplicates: [] });
    // The good event before the bad one was not remembered either: sent alone now, it is fresh.
    expectAccepted(await post(h.ingest.url, envelope([event('m')])), 1, 0);
    await expectDelivered(h, h.receivers[0]!, ['m']);
  });

  it('refuses a body that is no HTTP at all with 400 and keeps serving', async () => {
    const h = await start();
    const garbage = await rawExchange(h.ingest.port, [Buffer.from([0x16, 0x03, 0x01, 0x00, 0xa5, 0x01, 0x00]), 'GARBAGE\r\n\r\n']);
    expect(garbage.text).toMatch(/^HTTP\/1\.1 400 /);
    expect(rawBody(garbage.text)).toEqual({ error: { code: 'BadRequest', message: expect.any(String) } });
    const lines = await rawExchange(h.ingest.port, ['POST /events HTTP/1.1\r\nHost: x\r\nContent-Length: nope\r\n\r\n']);
    expect(lines.text).toMatch(/^HTTP\/1\.1 400 /);
    expectAccepted(await post(h.ingest.url, envelope([event('after-garbage')])), 1, 0);
    expect(h.heard.requests).toEqual([400, 400, 202]);
  });

  it('answers a broken chunked body with 400 from the request being handled, and keeps serving', async () => {
    const h = await start({ endpoints: [{ disabled: true }] });
    const exchange = await rawExchange(h.ingest.port, [
      `POST /events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${TOKEN}\r\nContent-Type: ${EVENTS_MEDIA_TYPE}\r\nTransfer-Encoding: chunked\r\n\r\n`,
      '5\r\n{"eve\r\nzz-not-a-chunk-size\r\n',
    ]);
    expect(exchange.text).toMatch(/^HTTP\/1\.1 400 /);
    expect(exchange.text.match(/HTTP\/1\.1 \d{3} /g)).toHaveLength(1);
    expect(rawBody(exchange.text)).toEqual({ error: { code: 'BadRequest', message: expect.any(String) } });
    expect(h.endpoints.pending).toBe(0);
    expectAccepted(await post(h.ingest.url, envelope([event('after-chunks')])), 1, 0);
    expect(h.heard.requests).toEqual([400, 202]);
  });
});

describe('IngestServer: 401 Unauthorized', () => {
  it.each([
    ['no Authorization header', null],
    ['a wrong bearer token', 'Bearer s3cret2'],
    ['a token prefix', 'Bearer s3cre'],
    ['the scheme alone', 'Bearer'],
    ['an empty bearer token', 'Bearer '],
    ['another scheme', `Token ${TOKEN}`],
    ['the token without scheme', TOKEN],
    ['Basic with a wrong password', `Basic ${Buffer.from('registry:nope').toString('base64')}`],
    ['Basic with the token as user name', `Basic ${Buffer.from(`${TOKEN}:`).toString('base64')}`],
    ['Basic that is not base64', 'Basic !!!not-base64!!!'],
  ])('%s → 401 with WWW-Authenticate: Bearer, nothing queued', async (_name, authorization) => {
    const h = await start({ endpoints: [{ disabled: true }] });
    const answer = await post(h.ingest.url, envelope([event('auth')]), { authorization });
    expectRefusal(answer, 401, 'Unauthorized');
    expect(answer.headers['www-authenticate']).toMatch(/^Bearer( |$)/);
    expect(answer.text).not.toContain(TOKEN);
    expect(h.endpoints.pending).toBe(0);
  });

  it.each([
    ['Bearer', `Bearer ${TOKEN}`],
    ['bearer in lower case', `bearer ${TOKEN}`],
    ['Basic with the token as password', `Basic ${Buffer.from(`registry:${TOKEN}`).toString('base64')}`],
    ['Basic with an empty user name', `Basic ${Buffer.from(`:${TOKEN}`).toString('base64')}`],
  ])('%s is accepted', async (_name, authorization) => {
    const h = await start();
    expectAccepted(await post(h.ingest.url, envelope([event('ok')]), { authorization }), 1, 0);
  });

  it('does not read the body of an unauthenticated request: 401, then the connection closes', async () => {
    const h = await start();
    const head = `POST /events HTTP/1.1\r\nHost: x\r\nContent-Type: ${EVENTS_MEDIA_TYPE}\r\nContent-Length: 10485760\r\n\r\n`;
    // 10 MiB announced, 64 KiB sent, and the client never sends the rest: only an answer and a close end this.
    const exchange = await rawExchange(h.ingest.port, [head, Buffer.alloc(64 * 1024, 'x')], 5000);
    expect(exchange.text).toMatch(/^HTTP\/1\.1 401 /);
    expect(exchange.text.toLowerCase()).toContain('connection: close');
    expect(rawBody(exchange.text)).toMatchObject({ error: { code: 'Unauthorized' } });
  });

  it('takes anything when no token is configured', async () => {
    const h = await start({ token: undefined });
    expectAccepted(await post(h.ingest.url, envelope([event('n1')]), { authorization: null }), 1, 0);
    expectAccepted(await post(h.ingest.url, envelope([event('n2')]), { authorization: 'Bearer whatever' }), 1, 0);
  });
});

describe('IngestServer: 404 and 405', () => {
  it.each(['GET', 'PUT', 'DELETE', 'PATCH'] as const)('%s /events → 405 with Allow: POST', async (method) => {
    const h = await start();
    const answer = await post(h.ingest.url, method === 'GET' ? undefined : envelope([event('m')]), { method });
    expectRefusal(answer, 405, 'MethodNotAllowed');
    expect(answer.headers.allow).toBe('POST');
    expect(h.endpoints.pending).toBe(0);
  });

  it.each(['/', '/event', '/events/', '/eventsx', '/v2/events', '/metrics'])('POST %s → 404', async (path) => {
    const h = await start();
    expectRefusal(await post(h.ingest.url, envelope([event('p')]), { path }), 404, 'NotFound');
    expect(h.endpoints.pending).toBe(0);
  });
});

describe('IngestServer: 413 Payload Too Large', () => {
  const limit = 1024;
  const padded = (size: number, id: string): string => {
    const body = envelope([{ id, action: 'push', target: {} }]);
    return body.slice(0, -1) + ' '.repeat(size - body.length) + '}';
  };

  it('takes a body of exactly the limit', async () => {
    const h = await start({ maxBodySize: limit });
    const body = padded(limit, 'exact');
    expect(Buffer.byteLength(body)).toBe(limit);
    expectAccepted(await post(h.ingest.url, body), 1, 0);
  });

  it('refuses a declared Content-Length over the limit, and keeps serving', async () => {
    const h = await start({ maxBodySize: limit, endpoints: [{ disabled: true }] });
    const answer = await post(h.ingest.url, padded(limit + 1, 'over'));
    expectRefusal(answer, 413, 'PayloadTooLarge');
    expect(answer.headers.connection).toBe('close');
    expect(h.endpoints.pending).toBe(0);
    expectAccepted(await post(h.ingest.url, padded(limit, 'fits')), 1, 0);
  });

  it('refuses a chunked body (no Content-Length) once it grows over the limit', async () => {
    const h = await start({ maxBodySize: limit, endpoints: [{ disabled: true }] });
    const body = padded(8 * limit, 'chunked');
    const chunks = Array.from({ length: 32 }, (_, i) => Buffer.from(body.slice(i * 256, (i + 1) * 256)));
    const answer = await post(h.ingest.url, Readable.from(chunks));
    expectRefusal(answer, 413, 'PayloadTooLarge');
    expect(h.endpoints.pending).toBe(0);
    expectAccepted(await post(h.ingest.url, Readable.from([Buffer.from(padded(limit, 'small-chunked'))])), 1, 0);
  });
});

describe('IngestServer: 415 Unsupported Media Type', () => {
  it.each([['text/plain'], ['application/x-www-form-urlencoded'], ['application/vnd.docker.distribution.events.v3+json'], ['']])(
    'content type "%s" → 415',
    async (contentType) => {
      const h = await start({ endpoints: [{ disabled: true }] });
      expectRefusal(await post(h.ingest.url, envelope([event('t')]), { contentType }), 415, 'UnsupportedMediaType');
      expect(h.endpoints.pending).toBe(0);
    },
  );

  it('no content type at all → 415', async () => {
    const h = await start({ endpoints: [{ disabled: true }] });
    const body = envelope([event('none')]);
    const exchange = await rawExchange(h.ingest.port, [
      `POST /events HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${TOKEN}\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n${body}`,
    ]);
    expect(exchange.text).toMatch(/^HTTP\/1\.1 415 /);
    expect(rawBody(exchange.text)).toEqual({ error: { code: 'UnsupportedMediaType', message: expect.any(String) } });
    expect(h.endpoints.pending).toBe(0);
  });
});

describe('IngestServer: 503 Service Unavailable', () => {
  function expectUnavailable(answer: Answer, code: string): void {
    expectRefusal(answer, 503, code);
    expect(answer.headers['retry-after']).toMatch(/^[1-9][0-9]*$/);
  }

  it("refuses when an endpoint's queue is at limits.perEndpoint, takes nothing from the envelope, forgets its ids", async () => {
    // ep0's receiver answers 503 and the breaker then waits a minute: its events stay pending.
    const h = await start({
      endpoints: [{ threshold: 1, backoffMs: 60_000 }, {}],
      limits: { perEndpoint: 3, total: 1000 },
    });
    h.receivers[0]!.respond(() => 503);
    expectAccepted(await post(h.ingest.url, envelope([event('p-1'), event('p-2')])), 2, 0);
    await h.receivers[0]!.waitFor((r) => r.length === 1 && r[0]!.status === 503);
    // 2 pending + 2 would exceed 3: refused as a whole, although one of them would fit.
    const refused = envelope([event('p-1'), event('r-1'), event('r-2')]);
    expectUnavailable(await post(h.ingest.url, refused), 'QueueFull');
    expect(h.endpoints.get('ep0')!.pending).toBe(2);
    expectAccepted(await post(h.ingest.url, envelope([event('p-3')])), 1, 0);
    expect(h.endpoints.get('ep0')!.pending).toBe(3);
    const full = await post(h.ingest.url, envelope([event('p-4')]));
    expectUnavailable(full, 'QueueFull');
    expect((full.json as { error: { message: string } }).error.message).toContain('ep0');
    expect(h.endpoints.get('ep0')!.pending).toBe(3);
    // ep1 delivers normally and got nothing of the refused envelopes.
    await h.receivers[1]!.waitForEvents((e) => e.length === 3);
    expect(h.receivers[1]!.events().map((e) => e.id)).toEqual(['p-1', 'p-2', 'p-3']);
    // A refused envelope is not counted as duplicates and its ids were not remembered.
    expect(h.heard).toEqual({ requests: [202, 503, 202, 503], events: [2, 1], duplicates: [] });
    await h.endpoints.remove('ep0');
    expectAccepted(await post(h.ingest.url, refused), 2, 1);
  });

  it('refuses when all queues together would exceed limits.total', async () => {
    const h = await start({ endpoints: [{ disabled: true }, { disabled: true }], limits: { perEndpoint: 100, total: 5 } });
    expectAccepted(await post(h.ingest.url, envelope([event('t-1'), event('t-2')])), 2, 0);
    expect(h.endpoints.pending).toBe(4);
    expectUnavailable(await post(h.ingest.url, envelope([event('t-3')])), 'QueueFull');
    expect(h.endpoints.pending).toBe(4);
    // Only events some endpoint would take count: one that filters them out adds nothing.
    h.endpoints.apply('ep1', { ...h.endpoints.get('ep1')!.config, filter: { ...NO_FILTER, ignoredActions: ['pull'] } });
    h.endpoints.apply('ep0', { ...h.endpoints.get('ep0')!.config, filter: { ...NO_FILTER, ignoredActions: ['pull'] } });
    expectAccepted(await post(h.ingest.url, envelope([event('t-4', { action: 'pull' })])), 1, 0);
    expect(h.endpoints.pending).toBe(4);
  });

  it('refuses everything after drain(), queueing nothing', async () => {
    const h = await start({ endpoints: [{ disabled: true }] });
    expectAccepted(await post(h.ingest.url, envelope([event('d-1')])), 1, 0);
    h.ingest.drain();
    expectUnavailable(await post(h.ingest.url, envelope([event('d-2')])), 'ShuttingDown');
    expect(h.endpoints.pending).toBe(1);
    expect(h.heard).toEqual({ requests: [202, 503], events: [1], duplicates: [] });
  });
});

describe('IngestServer: shutting down while a body arrives', () => {
  it('a request past the draining check whose body ends after the endpoints began closing gets 503 ShuttingDown, not a 202 for events queued nowhere', async () => {
    const h = await start({ endpoints: [{}] });
    const body = envelope([event('late-1')]);
    const socket = connect({ host: '127.0.0.1', port: h.ingest.port });
    cleanupSocket.push(socket);
    let received = '';
    socket.on('data', (data: Buffer) => (received += data.toString('latin1')));
    socket.write(`POST /events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${TOKEN}\r\nContent-Type: ${EVENTS_MEDIA_TYPE}\r\nContent-Length: ${Buffer.byteLength(body)}\r\nExpect: 100-continue\r\n\r\n`);
    // 100 Continue: the server took the headers and is handling the request (past the draining check).
    await until(() => received.startsWith('HTTP/1.1 100 Continue'), 'the server asks for the body');
    h.ingest.drain();
    const closing = h.endpoints.close(AbortSignal.timeout(5_000));
    socket.end(body);
    await until(() => received.includes('\r\n\r\n{'), 'the answer');
    await closing;
    const answer = received.slice(received.indexOf('\r\n\r\n') + 4);
    expect(received.split('\r\n\r\n')[1]).toMatch(/^HTTP\/1\.1 503 /);
    expect(JSON.parse(answer.slice(answer.indexOf('\r\n\r\n') + 4))).toEqual({ error: { code: 'ShuttingDown', message: expect.any(String) } });
    expect(h.heard.events).toEqual([]);
  });
});

describe('IngestServer: duplicate suppression', () => {
  it('a resent envelope answers {"accepted":0,"duplicates":1} and is delivered once', async () => {
    const h = await start();
    const body = envelope([event('dup-1')]);
    expectAccepted(await post(h.ingest.url, body), 1, 0);
    expectAccepted(await post(h.ingest.url, body), 0, 1);
    expectAccepted(await post(h.ingest.url, envelope([event('dup-1'), event('dup-2')])), 1, 1);
    await expectDelivered(h, h.receivers[0]!, ['dup-1', 'dup-2']);
    expect(h.heard.events).toEqual([1, 1, 1]);
    expect(h.heard.duplicates).toEqual([1, 1]);
  });

  it('drops repeats within one envelope, keeping the first in place', async () => {
    const h = await start();
    expectAccepted(await post(h.ingest.url, envelope([event('w-a'), event('w-b'), event('w-a'), event('w-c'), event('w-b')])), 3, 2);
    await expectDelivered(h, h.receivers[0]!, ['w-a', 'w-b', 'w-c']);
  });

  it('delivers a concurrent resend once', async () => {
    const h = await start();
    const body = envelope([event('c-1'), event('c-2')]);
    const answers = await Promise.all([post(h.ingest.url, body), post(h.ingest.url, body), post(h.ingest.url, body)]);
    const results = answers.map((a) => {
      expect(a.status).toBe(202);
      return a.json as { accepted: number; duplicates: number };
    });
    expect(results.map((r) => r.accepted).sort()).toEqual([0, 0, 2]);
    expect(results.map((r) => r.duplicates).sort()).toEqual([0, 2, 2]);
    await expectDelivered(h, h.receivers[0]!, ['c-1', 'c-2']);
  });

  it('remembers a bounded number of ids, forgetting the oldest first', async () => {
    const h = await start({ recentIds: 2 });
    for (const id of ['o-1', 'o-2', 'o-3']) expectAccepted(await post(h.ingest.url, envelope([event(id)])), 1, 0);
    expectAccepted(await post(h.ingest.url, envelope([event('o-3'), event('o-2')])), 0, 2);
    expectAccepted(await post(h.ingest.url, envelope([event('o-1')])), 1, 0);
  });
});

describe('IngestServer: slow and broken clients', () => {
  it('cuts a client that sends headers and then stalls the body', async () => {
    const h = await start({ headersTimeoutMs: 300, requestTimeoutMs: 600 });
    const exchange = await rawExchange(h.ingest.port, [
      `POST /events HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${TOKEN}\r\nContent-Type: ${EVENTS_MEDIA_TYPE}\r\nContent-Length: 1000\r\n\r\n{"events":[`,
    ]);
    expect(exchange.elapsedMs).toBeGreaterThanOrEqual(550);
    expect(exchange.text).toMatch(/^HTTP\/1\.1 408 .*\r\n[^]*connection: close\r\n/i);
    expect(rawBody(exchange.text)).toEqual({ error: { code: 'RequestTimeout', message: expect.any(String) } });
    expect(h.endpoints.pending).toBe(0);
    expectAccepted(await post(h.ingest.url, envelope([event('after-slow')])), 1, 0);
    expect(h.heard.requests).toEqual([408, 202]);
  });

  it('cuts a client that stalls in the middle of its headers', async () => {
    const h = await start({ headersTimeoutMs: 300, requestTimeoutMs: 600 });
    const exchange = await rawExchange(h.ingest.port, ['POST /events HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Ty']);
    expect(exchange.elapsedMs).toBeGreaterThanOrEqual(250);
    expect(exchange.text).toMatch(/^HTTP\/1\.1 408 /);
    expect(rawBody(exchange.text)).toEqual({ error: { code: 'RequestTimeout', message: expect.any(String) } });
    expectAccepted(await post(h.ingest.url, envelope([event('after-stall')])), 1, 0);
    expect(h.heard.requests).toEqual([408, 202]);
  });

  it('refuses timeouts that cannot work', async () => {
    await expect(start({ headersTimeoutMs: 2000, requestTimeoutMs: 1000 })).rejects.toThrow(/headersTimeoutMs/);
  });
});

describe('IngestServer lifecycle', () => {
  it('close() is idempotent and the port stops answering', async () => {
    const h = await start();
    const url = h.ingest.url;
    expect(url).toBe(`http://127.0.0.1:${h.ingest.port}/events`);
    await h.ingest.close();
    await h.ingest.close();
    await expect(post(url, envelope([event('closed')]))).rejects.toThrow();
  });
});
