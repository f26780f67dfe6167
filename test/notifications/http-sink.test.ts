import { createHmac } from 'node:crypto';
import { createServer as createHttpServer } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { createServer as createNetServer, type Server as NetServer, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';
import { Webhook } from 'standardwebhooks';
import { describe, expect, it } from 'vitest';
import { HttpRequestError, HttpStatusError, SinkClosedError } from '../../src/notifications/errors.ts';
import { HttpSink, redactUrl, redactUrlsIn } from '../../src/notifications/http-sink.ts';
import type { AttemptResult } from '../../src/notifications/listener.ts';
import type { QueuedEvent } from '../../src/notifications/sink.ts';
import { startReceiver, useCleanups } from '../support/cleanup.ts';
import { ed25519KeyPair, verifiedV1a } from '../support/ed25519.ts';
import type { TestReceiver } from '../support/receiver.ts';
import { testPki } from '../support/tls.ts';
import { checkClose } from './sink-contract.ts';

const queued = (n: number): QueuedEvent[] =>
  Array.from({ length: n }, (_, i) => ({ id: `id-${i}`, json: `{"id":"id-${i}","action":"push","target":{}}`, acceptedAt: 0 }));

const cleanups = useCleanups();
const receiver = (): Promise<TestReceiver> => startReceiver(cleanups);

function sink(url: string, extra: Partial<ConstructorParameters<typeof HttpSink>[0]> = {}): HttpSink {
  const s = new HttpSink({ url, timeoutMs: 1000, ...extra });
  cleanups.push(() => s.close());
  return s;
}

async function rawServer(onSocket: (socket: Socket) => void): Promise<{ url: string; server: NetServer }> {
  const sockets = new Set<Socket>();
  const server = createNetServer((socket) => {
    sockets.add(socket);
    onSocket(socket);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  cleanups.push(() => {
    for (const socket of sockets) socket.destroy();
    return new Promise((resolve) => server.close(resolve));
  });
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`, server };
}

describe('HttpSink', () => {
  it('POSTs the envelope with the media type, user agent and configured headers', async () => {
    const r = await receiver();
    await sink(r.url, { headers: [['Authorization', 'Bearer abc'], ['X-Team', 'a'], ['X-Team', 'b']], userAgent: 'registry-notifier/9.9.9' })
      .write(queued(2));
    const [request] = r.requests;
    expect(request?.method).toBe('POST');
    expect(request?.url).toBe('/events');
    expect(request?.headers['content-type']).toBe('application/vnd.docker.distribution.events.v1+json');
    expect(request?.headers['user-agent']).toBe('registry-notifier/9.9.9');
    expect(request?.headers.authorization).toBe('Bearer abc');
    expect(request?.headers['x-team']).toBe('a, b');
    expect(request?.text).toBe('{"events":[{"id":"id-0","action":"push","target":{}},{"id":"id-1","action":"push","target":{}}]}');
  });

  it.each([
    [200, true], [202, true], [204, true], [301, false], [307, false], [400, false], [404, false], [500, false], [503, false],
  ])('status %i counts as success: %s', async (status, success) => {
    const r = await receiver();
    r.respond(() => (status >= 300 && status < 400 ? { status, headers: { location: 'http://u:p@127.0.0.1:1/elsewhere' } } : status));
    const results: AttemptResult[] = [];
    const write = sink(r.url, { listener: { attempt: (a) => results.push(a) } }).write(queued(1));
    if (success) await write;
    else {
      const error = await write.catch((e: unknown) => e);
      expect(error).toBeInstanceOf(HttpStatusError);
      expect(error).toMatchObject({ code: 'ERR_HTTP_STATUS', status });
      if (status >= 300 && status < 400) {
        expect((error as Error).message).toContain('redirect to http://127.0.0.1:1/elsewhere not followed');
        expect((error as Error).message).not.toContain('u:p');
      }
    }
    expect(results).toHaveLength(1);
    expect(results[0]).toMatchObject({ status });
    expect(r.requests).toHaveLength(1); // redirects are not followed
  });

  it('cuts a receiver that never answers at the timeout, with a clear error', async () => {
    const { url } = await rawServer(() => {}); // accepts and stays silent
    const started = Date.now();
    const error = await sink(url, { timeoutMs: 200 }).write(queued(1)).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(HttpRequestError);
    expect((error as Error).message).toBe('no answer within 200ms');
    expect(Date.now() - started).toBeGreaterThanOrEqual(180);
    expect(Date.now() - started).toBeLessThan(2000);
  });

  it('a timeout longer than a Node.js timer keeps (about 24.8 days) waits for the answer instead of cutting at once', async () => {
    const r = await receiver();
    r.respond(async () => {
      await new Promise((resolve) => setTimeout(resolve, 50)); // a receiver that takes its time
      return 200;
    });
    await expect(sink(r.url, { timeoutMs: 2 ** 31 + 1_000 }).write(queued(1))).resolves.toBeUndefined();
    expect(r.requests).toHaveLength(1);
  });

  it('reports a connection that closes without an answer as an error, not a status', async () => {
    const { url } = await rawServer((socket) => socket.destroy());
    const results: AttemptResult[] = [];
    const error = await sink(url, { listener: { attempt: (a) => results.push(a) } }).write(queued(1)).catch((e: unknown) => e);
    expect(error).toMatchObject({ code: 'ERR_HTTP_REQUEST' });
    expect(results[0]?.status).toBeUndefined();
    expect(results[0]?.error).toBe(error);
  });

  it('reports a refused connection as an error', async () => {
    const { url, server } = await rawServer(() => {});
    await new Promise((resolve) => server.close(resolve));
    const error = await sink(url).write(queued(1)).catch((e: unknown) => e);
    expect(error).toMatchObject({ code: 'ERR_HTTP_REQUEST' });
    expect((error as Error).message).toContain('ECONNREFUSED');
  });

  it('reuses one keep-alive connection for consecutive POSTs', async () => {
    let connections = 0;
    let requests = 0;
    const server = createHttpServer((req, res) => {
      requests++;
      req.resume();
      req.on('end', () => res.end('ok'));
    }).on('connection', () => connections++);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    cleanups.push(async () => {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    });
    const s = sink(`http://127.0.0.1:${(server.address() as AddressInfo).port}/`);
    for (let i = 0; i < 20; i++) await s.write(queued(1));
    expect(requests).toBe(20);
    expect(connections).toBe(1);
  });

  it('turns URL credentials into Basic auth and never puts them in errors', async () => {
    const r = await receiver();
    const url = r.url.replace('http://', 'http://alice:s%40cret@');
    await sink(url).write(queued(1));
    expect(r.requests[0]?.headers.authorization).toBe(`Basic ${Buffer.from('alice:s@cret').toString('base64')}`);
    expect(redactUrl(url)).toBe(r.url);
  });

  it.each([
    ['https://user:pass@example.com/hook?x=1', 'https://example.com/hook?x=***'],
    ['https://hooks.example/in?token=s3cret&team=a&flag&&empty=', 'https://hooks.example/in?token=***&team=***&***&&empty=***'],
    ['https://hooks.example/in?sig=a%3Db=c;token=d', 'https://hooks.example/in?sig=***'],
    ['https://hooks.example/in?just-a-token', 'https://hooks.example/in?***'],
    ['https://hooks.example/in#access_token=abc', 'https://hooks.example/in#***'],
    ['http://token@127.0.0.1:8090/events?k=v#f', 'http://127.0.0.1:8090/events?k=***#***'],
    ['https://:p%40ss@example.com', 'https://example.com/'],
    ['https://example.com/services/T0/B0/keep-the-path', 'https://example.com/services/T0/B0/keep-the-path'],
    ['http://127.0.0.1:8090', 'http://127.0.0.1:8090'],
    ['https://[2001:db8::1]:8443/x?a=1', 'https://[2001:db8::1]:8443/x?a=***'],
    ['/login?next=%2F&token=abc', '/login?next=***&token=***'],
    ['//user:pass@elsewhere.example/x?t=1', '//elsewhere.example/x?t=***'],
    ['http://user:pass@exa mple.com/?token=abc', '(unparseable URL)'],
    ['elsewhere?token=abc', '(unparseable URL)'],
    ['not a url', '(unparseable URL)'],
    ['', '(unparseable URL)'],
  ])('redactUrl(%j) = %j', (url, expected) => {
    expect(redactUrl(url)).toBe(expected);
  });

  it('redacts every URL quoted in a message and leaves the rest of it alone', () => {
    expect(redactUrlsIn('connect ECONNREFUSED 127.0.0.1:1')).toBe('connect ECONNREFUSED 127.0.0.1:1');
    // A URL runs to white space or a quote, so punctuation after a query value is masked with it.
    expect(redactUrlsIn('bad "https://u:p@a.example/x?token=abc" then http://b.example/?k=v, done'))
      .toBe('bad "https://a.example/x?token=***" then http://b.example/?k=*** done');
  });

  it('never shows the query or fragment of a redirect it did not follow', async () => {
    const r = await receiver();
    r.respond((req) => ({ status: 302, headers: { location: req.seq === 0 ? '/login?token=s3cret#frag' : 'https://u:p@idp.example/authorize?code=s3cret' } }));
    const s = sink(r.url);
    const relative = (await s.write(queued(1)).catch((e: unknown) => e)) as Error;
    expect(relative.message).toBe('302 Found (redirect to /login?token=***#*** not followed)');
    const absolute = (await s.write(queued(1)).catch((e: unknown) => e)) as Error;
    expect(absolute.message).toBe('302 Found (redirect to https://idp.example/authorize?code=*** not followed)');
    expect(`${relative.message}${absolute.message}`).not.toContain('s3cret');
  });

  it('signs each attempt per Standard Webhooks, verified by an independent HMAC', async () => {
    const r = await receiver();
    const key = Buffer.from('0123456789abcdef0123456789abcdef');
    await sink(r.url, { signingKey: key, now: () => 1_700_000_000_123 }).write(queued(2));
    const request = r.requests[0]!;
    const id = request.headers['webhook-id'] as string;
    expect(id).toMatch(/^batch_[0-9a-f]{32}$/);
    expect(request.headers['webhook-timestamp']).toBe('1700000000');
    const expected = createHmac('sha256', key).update(`${id}.1700000000.${request.text}`).digest('base64');
    expect(request.headers['webhook-signature']).toBe(`v1,${expected}`);
  });

  it('HMAC signatures verify with the standardwebhooks library, a third-party receiver', async () => {
    const r = await receiver();
    const key = Buffer.from('0123456789abcdef0123456789abcdef');
    await sink(r.url, { signingKey: key }).write(queued(1));
    const request = r.requests[0]!;
    const headers = Object.fromEntries(['webhook-id', 'webhook-timestamp', 'webhook-signature'].map((name) => [name, String(request.headers[name])]));
    const receiverSide = new Webhook(`whsec_${key.toString('base64')}`);
    expect(receiverSide.verify(request.body, headers)).toEqual({ events: [{ id: 'id-0', action: 'push', target: {} }] });
    expect(() => receiverSide.verify(request.text.replace('push', 'pull'), headers)).toThrow(/No matching signature/);
  });

  it('an event id that cannot be a header value (control characters, non-ASCII, too long) is signed under a stable stand-in, not sent in the header', async () => {
    const r = await receiver();
    const key = Buffer.from('0123456789abcdef0123456789abcdef');
    const ids = ['line\nbreak', '事件-1', 'x'.repeat(256), 'nul\u0000'];
    for (const id of ids) {
      await sink(r.url, { signingKey: key }).write([{ id, json: JSON.stringify({ id, action: 'push', target: {} }), acceptedAt: 0 }]);
    }
    expect(r.requests).toHaveLength(ids.length);
    const receiverSide = new Webhook(`whsec_${key.toString('base64')}`);
    r.requests.forEach((request, i) => {
      const headers = Object.fromEntries(['webhook-id', 'webhook-timestamp', 'webhook-signature'].map((name) => [name, String(request.headers[name])]));
      expect(headers['webhook-id']).toMatch(/^event_[0-9a-f]{32}$/);
      expect(receiverSide.verify(request.body, headers)).toEqual({ events: [{ id: ids[i], action: 'push', target: {} }] });
    });
    // Stable: the same id is named alike on every attempt (receivers deduplicate by it).
    await sink(r.url, { signingKey: key }).write([{ id: ids[0]!, json: '{}', acceptedAt: 0 }]);
    expect(r.requests.at(-1)!.headers['webhook-id']).toBe(r.requests[0]!.headers['webhook-id']);
  });

  it('signs each attempt afresh with Ed25519 (v1a), verified by node:crypto with the public key alone, a tampered body not', async () => {
    const r = await receiver();
    const { seed, whpk } = ed25519KeyPair();
    let now = 1_700_000_000_123;
    const s = sink(r.url, { signingKey: seed, signingAlgorithm: 'Ed25519', now: () => now });
    await s.write(queued(1));
    now += 5000;
    await s.write(queued(1));
    expect(r.requests).toHaveLength(2);
    const signed = r.requests.map((request) => {
      const [id, timestamp, signature] = ['webhook-id', 'webhook-timestamp', 'webhook-signature'].map((name) => String(request.headers[name]));
      expect(signature).toMatch(/^v1a,[A-Za-z0-9+/]{86}==$/);
      expect(verifiedV1a(whpk, request)).toBe(true);
      expect(verifiedV1a(whpk, request, Buffer.from(request.text.replace('push', 'pull')))).toBe(false);
      return { id, timestamp, signature };
    });
    expect(signed.map((x) => x.timestamp)).toEqual(['1700000000', '1700000005']);
    expect(signed[0]!.id).toBe(signed[1]!.id);
    expect(signed[0]!.signature).not.toBe(signed[1]!.signature);
  });

  describe('over TLS', () => {
    async function httpsServer(options: { requestCert?: boolean } = {}): Promise<string> {
      const pki = testPki();
      const server = createHttpsServer(
        { cert: pki.serverCert, key: pki.serverKey, ca: pki.ca, requestCert: options.requestCert ?? false, rejectUnauthorized: options.requestCert ?? false },
        (req, res) => {
          req.resume();
          req.on('end', () => res.writeHead(202).end());
        },
      );
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
      cleanups.push(async () => {
        server.closeAllConnections();
        await new Promise((resolve) => server.close(resolve));
      });
      return `https://127.0.0.1:${(server.address() as AddressInfo).port}/hook`;
    }

    it('fails on a certificate it does not trust, and succeeds with the test CA', async () => {
      const url = await httpsServer();
      const untrusted = await sink(url, { tls: { ca: testPki().otherCa } }).write(queued(1)).catch((e: unknown) => e);
      expect(untrusted).toMatchObject({ code: 'ERR_HTTP_REQUEST' });
      await expect(sink(url, { tls: { ca: testPki().ca } }).write(queued(1))).resolves.toBeUndefined();
    });

    it('skips verification only when asked', async () => {
      const url = await httpsServer();
      await expect(sink(url, { tls: { insecureSkipVerify: true } }).write(queued(1))).resolves.toBeUndefined();
    });

    it('presents a client certificate to a server that requires one (mTLS)', async () => {
      const url = await httpsServer({ requestCert: true });
      const pki = testPki();
      const without = await sink(url, { tls: { ca: pki.ca } }).write(queued(1)).catch((e: unknown) => e);
      expect(without).toMatchObject({ code: 'ERR_HTTP_REQUEST' });
      await expect(sink(url, { tls: { ca: pki.ca, cert: pki.clientCert, key: pki.clientKey } }).write(queued(1))).resolves.toBeUndefined();
    });
  });

  it('refuses URLs that are not http or https', () => {
    expect(() => new HttpSink({ url: 'ftp://127.0.0.1/x', timeoutMs: 1000 })).toThrow(/scheme ftp: is not supported/);
    expect(() => new HttpSink({ url: 'not a url', timeoutMs: 1000 })).toThrow(/not a valid absolute URL/);
    // User-info becomes Basic auth, decoded: a bare % cannot be (Go's url.Parse refuses it too); %25 can.
    expect(() => new HttpSink({ url: 'http://user:50%@127.0.0.1/x', timeoutMs: 1000 })).toThrow(/^url user-info is not valid percent-encoding \(a % must start %XX; write a literal % as %25\)$/);
    expect(() => new HttpSink({ url: 'http://user:50%25@127.0.0.1/x', timeoutMs: 1000 }).close()).not.toThrow();
  });

  it('follows the close contract', async () => {
    const r = await receiver();
    const s = new HttpSink({ url: r.url, timeoutMs: 1000 });
    await checkClose(s, queued(1));
    await expect(s.write(queued(1))).rejects.toBeInstanceOf(SinkClosedError);
    expect(r.requests).toHaveLength(1);
  });
});
