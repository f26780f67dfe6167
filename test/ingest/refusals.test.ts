// How the ingest refuses what it will not read: the answer reaches a client that is still writing its body
// (a lingering close, not a reset), compressed bodies and oversized headers get their own codes, and no
// message echoes bytes the client sent.
import { connect } from 'node:net';
import { gzipSync } from 'node:zlib';
import { afterEach, describe, expect, it } from 'vitest';
import { EVENTS_MEDIA_TYPE } from '../../src/notifications/event.ts';
import { envelope, event, post, rawBody, rawExchange, startIngest, TOKEN, type Harness, type HarnessOptions } from './support.ts';

const running: Harness[] = [];
afterEach(async () => {
  await Promise.all(running.splice(0).map((h) => h.close()));
});

async function start(options: HarnessOptions = {}): Promise<Harness> {
  const harness = await startIngest({ endpoints: [{ disabled: true }], ...options });
  running.push(harness);
  return harness;
}

/** What a client that writes its whole body before reading anything (as Python's http.client does) got back. */
interface SlowExchange {
  text: string;
  /** The first socket error, if any (a reset while writing loses the answer). */
  error: string | undefined;
  written: number;
}

/**
 * Sends `head`, then `bodyBytes` bytes in `chunk`-byte pieces `pauseMs` apart, reading nothing until all is
 * written; then reads the answer until the server closes. Rejects at the deadline.
 */
function writeAllThenRead(port: number, head: string, bodyBytes: number, chunk: number, pauseMs: number): Promise<SlowExchange> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port });
    socket.pause(); // nothing is read before the body is out
    const received: Buffer[] = [];
    let error: string | undefined;
    let written = 0;
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error('no close within 15 s'));
    }, 15_000);
    socket.on('error', (e: NodeJS.ErrnoException) => (error ??= e.code ?? e.message));
    socket.on('data', (data: Buffer) => received.push(data));
    socket.on('close', () => {
      clearTimeout(timer);
      resolve({ text: Buffer.concat(received).toString('latin1'), error, written });
    });
    socket.on('connect', async () => {
      socket.write(head);
      while (written < bodyBytes && !socket.destroyed) {
        const n = Math.min(chunk, bodyBytes - written);
        const flushed = socket.write(Buffer.alloc(n, 'x'));
        written += n;
        if (!flushed) await new Promise((r) => socket.once('drain', r));
        await new Promise((r) => setTimeout(r, pauseMs)); // a slow client, not a synchronisation
      }
      socket.resume();
    });
  });
}

describe('IngestServer: a refusal reaches a client that is still writing', () => {
  it('2 MiB posted slowly against a 1 MiB limit: the client writes it all, then reads its 413 intact', async () => {
    const h = await start({ maxBodySize: 1024 * 1024 });
    const size = 2 * 1024 * 1024;
    const head = `POST /events HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${TOKEN}\r\nContent-Type: ${EVENTS_MEDIA_TYPE}\r\nContent-Length: ${size}\r\n\r\n`;
    const exchange = await writeAllThenRead(h.ingest.port, head, size, 64 * 1024, 10);
    expect(exchange.error, 'no reset while the client wrote').toBeUndefined();
    expect(exchange.written).toBe(size);
    expect(exchange.text).toMatch(/^HTTP\/1\.1 413 /);
    expect(exchange.text.toLowerCase()).toContain('connection: close');
    expect(rawBody(exchange.text)).toEqual({ error: { code: 'PayloadTooLarge', message: expect.any(String) } });
    expect(h.endpoints.pending).toBe(0);
  });

  it('an unauthenticated client writing a body gets its 401 too, and the ingest reads no more than its bound', async () => {
    const h = await start();
    const size = 512 * 1024;
    const head = `POST /events HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: ${EVENTS_MEDIA_TYPE}\r\nContent-Length: ${size}\r\n\r\n`;
    const exchange = await writeAllThenRead(h.ingest.port, head, size, 32 * 1024, 5);
    expect(exchange.error).toBeUndefined();
    expect(exchange.text).toMatch(/^HTTP\/1\.1 401 /);
    expect(rawBody(exchange.text)).toMatchObject({ error: { code: 'Unauthorized' } });
  });

  it('a client that never finishes its body is cut after the bounded linger, with the answer already sent', async () => {
    const h = await start();
    const head = `POST /events HTTP/1.1\r\nHost: x\r\nContent-Type: ${EVENTS_MEDIA_TYPE}\r\nContent-Length: 10485760\r\n\r\n`;
    const exchange = await rawExchange(h.ingest.port, [head, Buffer.alloc(1024, 'x')], 8000);
    expect(exchange.text).toMatch(/^HTTP\/1\.1 401 /);
    expect(exchange.elapsedMs).toBeLessThan(6000);
  });
});

describe('IngestServer: codes for what it cannot read', () => {
  it('a compressed body → 415 UnsupportedContentEncoding with Accept-Encoding: identity, nothing echoed', async () => {
    const h = await start();
    const body = gzipSync(envelope([event('zipped')]));
    const answer = await post(h.ingest.url, body, { headers: { 'content-encoding': 'gzip' } });
    expect(answer.status).toBe(415);
    expect(answer.headers['accept-encoding']).toBe('identity');
    expect((answer.json as { error: { code: string } }).error.code).toBe('UnsupportedContentEncoding');
    expect(answer.text).toMatch(/^[\x20-\x7e]*$/);
    expect(h.endpoints.pending).toBe(0);
    const plain = await post(h.ingest.url, envelope([event('plain')]), { headers: { 'content-encoding': 'identity' } });
    expect(plain.status).toBe(202);
  });

  it('a compressed body sent without Content-Encoding → 400 whose message quotes none of its bytes', async () => {
    const h = await start();
    const answer = await post(h.ingest.url, gzipSync(envelope([event('zipped')])));
    expect(answer.status).toBe(400);
    expect((answer.json as { error: { code: string; message: string } }).error).toMatchObject({ code: 'InvalidJSON', message: expect.stringMatching(/^[\x20-\x7e]+$/) });
  });

  it('headers over the server limit → 431, and the ingest keeps serving', async () => {
    const h = await start();
    const exchange = await rawExchange(h.ingest.port, [
      `POST /events HTTP/1.1\r\nHost: x\r\nX-Padding: ${'p'.repeat(64 * 1024)}\r\nContent-Length: 2\r\n\r\n{}`,
    ]);
    expect(exchange.text).toMatch(/^HTTP\/1\.1 431 /);
    expect(rawBody(exchange.text)).toEqual({ error: { code: 'RequestHeaderFieldsTooLarge', message: expect.any(String) } });
    expect((await post(h.ingest.url, envelope([event('after')]))).status).toBe(202);
    expect(h.heard.requests).toEqual([431, 202]);
  });

  it('a content type with bytes that are not printable is named without them', async () => {
    const h = await start();
    const answer = await post(h.ingest.url, envelope([event('t')]), { contentType: 'text/\u00ff\u00fe' });
    expect(answer.status).toBe(415);
    expect((answer.json as { error: { message: string } }).error.message).toMatch(/^[\x20-\x7e…]*$/);
  });
});
