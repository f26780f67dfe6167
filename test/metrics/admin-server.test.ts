import { connect } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { endpointConfig, type EndpointConfig, type EndpointConfigInput } from '../../src/notifications/endpoint.ts';
import { EndpointSet } from '../../src/notifications/endpoint-set.ts';
import { NO_FILTER } from '../../src/notifications/filter.ts';
import { startAdminServer, type AdminServer, type AdminServerOptions } from '../../src/metrics/admin-server.ts';
import { Metrics } from '../../src/metrics/metrics.ts';
import { endpointStatuses, type EndpointStatus } from '../../src/status/endpoint-status.ts';
import { makeEvents } from '../support/events.ts';
import { TestReceiver } from '../support/receiver.ts';
import { until } from '../support/wait.ts';
import { fakeClock } from '../notifications/test-sinks.ts';

const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!().catch(() => {});
});

async function start(overrides: Partial<AdminServerOptions> = {}): Promise<AdminServer> {
  const server = await startAdminServer({
    host: '127.0.0.1',
    port: 0,
    metrics: new Metrics(),
    ready: () => true,
    endpoints: () => [],
    ...overrides,
  });
  cleanups.push(() => server.close());
  return server;
}

const fast = (url: string, extra: Partial<EndpointConfigInput> = {}): EndpointConfig =>
  endpointConfig({ url, threshold: 3, backoffMs: 20, timeoutMs: 2000, ...extra });

/** Sends raw bytes and resolves with everything the server wrote before closing (or 2 s passing). */
function raw(port: number, bytes: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    let answer = '';
    const timer = setTimeout(() => socket.destroy(), 2000);
    socket.on('data', (chunk: Buffer) => (answer += chunk.toString('latin1')));
    socket.on('error', reject);
    socket.on('close', () => {
      clearTimeout(timer);
      resolve(answer);
    });
    socket.write(bytes);
  });
}

describe('admin server routes', () => {
  it('GET /healthz answers ok, /metrics the Prometheus text with its content type', async () => {
    const metrics = new Metrics();
    metrics.listenerFor('ns/a').queued?.(2);
    const server = await start({ metrics });
    expect(server.url).toBe(`http://127.0.0.1:${server.port}`);

    const health = await fetch(`${server.url}/healthz`);
    expect(health.status).toBe(200);
    expect(health.headers.get('content-type')).toBe('text/plain; charset=utf-8');
    expect(await health.text()).toBe('ok');

    const scrape = await fetch(`${server.url}/metrics?debug=1`);
    expect(scrape.status).toBe(200);
    expect(scrape.headers.get('content-type')).toBe(metrics.contentType);
    expect((await scrape.text()).split('\n')).toContain('registry_notifications_events_total{type="Events",endpoint="ns/a"} 2');
  });

  it('HEAD is answered like GET, without a body', async () => {
    const server = await start();
    const head = await fetch(`${server.url}/metrics`, { method: 'HEAD' });
    expect(head.status).toBe(200);
    expect(Number(head.headers.get('content-length'))).toBeGreaterThan(100);
    expect(await head.text()).toBe('');
    expect((await fetch(`${server.url}/readyz`, { method: 'HEAD' })).status).toBe(200);
  });

  it('/readyz follows ready(): 503 "not ready", then 200 "ok"', async () => {
    let ready = false;
    const server = await start({ ready: () => ready });
    const before = await fetch(`${server.url}/readyz`);
    expect([before.status, await before.text()]).toEqual([503, 'not ready']);
    ready = true;
    const after = await fetch(`${server.url}/readyz`);
    expect([after.status, await after.text()]).toEqual([200, 'ok']);
    ready = false;
    expect((await fetch(`${server.url}/readyz`)).status).toBe(503);
  });

  it('other methods get 405 with Allow, unknown paths 404 with a JSON error', async () => {
    const server = await start();
    for (const [method, path] of [['POST', '/metrics'], ['DELETE', '/endpoints'], ['PUT', '/healthz'], ['OPTIONS', '/readyz']] as const) {
      const res = await fetch(`${server.url}${path}`, { method, ...(method === 'POST' && { body: 'x' }) });
      expect(res.status, `${method} ${path}`).toBe(405);
      expect(res.headers.get('allow')).toBe('GET, HEAD');
      expect(((await res.json()) as { error: { code: string } }).error.code).toBe('MethodNotAllowed');
    }
    for (const path of ['/', '/metricsx', '/metrics/', '/../etc/passwd']) {
      const res = await fetch(`${server.url}${path}`);
      expect(res.status, path).toBe(404);
      expect(res.headers.get('content-type')).toBe('application/json; charset=utf-8');
      const body = (await res.json()) as { error: { code: string; message: unknown } };
      expect(body.error.code).toBe('NotFound');
      expect(typeof body.error.message).toBe('string');
    }
  });

  it('a failing provider gives 500 and a log line; garbage on the wire gets 400; the server keeps serving', async () => {
    const logged: { details: object; message: string }[] = [];
    const server = await start({
      endpoints: () => {
        throw new Error('boom');
      },
      logger: { error: (details, message) => void logged.push({ details, message }) },
    });
    const res = await fetch(`${server.url}/endpoints`);
    expect(res.status).toBe(500);
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe('InternalError');
    expect(logged.map((l) => l.message)).toEqual(['admin request failed']);

    expect(await raw(server.port, 'NOT HTTP AT ALL\r\n\r\n')).toMatch(/^HTTP\/1\.1 400 /);
    expect((await fetch(`${server.url}/healthz`)).status).toBe(200);
  });

  it('close drops idle keep-alive and half-sent requests at once, and a second close returns the same promise', async () => {
    const server = await startAdminServer({ host: '127.0.0.1', port: 0, metrics: new Metrics(), ready: () => true, endpoints: () => [] });
    cleanups.push(() => server.close());
    const open = (): { socket: ReturnType<typeof connect>; closed: Promise<void> } => {
      const socket = connect(server.port, '127.0.0.1');
      socket.on('error', () => {});
      return { socket, closed: new Promise<void>((resolve) => socket.on('close', () => resolve())) };
    };
    const idle = open();
    idle.socket.write('GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\n\r\n');
    await new Promise((resolve) => idle.socket.once('data', resolve)); // answered; the connection stays open
    const busy = open();
    busy.socket.write('GET /healthz HTTP/1.1\r\nHost: x\r\n'); // headers never finished: not idle
    await until(() => busy.socket.bytesWritten > 0 && !busy.socket.connecting, 'busy socket connected', 2000);

    const first = server.close();
    expect(server.close()).toBe(first);
    await Promise.race([
      Promise.all([first, idle.closed, busy.closed]),
      new Promise((_, reject) => setTimeout(() => reject(new Error('close waited for open connections')), 2000)),
    ]);
    await expect(fetch(`${server.url}/healthz`)).rejects.toThrow();
  });

  it('rejects when the port is taken', async () => {
    const server = await start();
    await expect(start({ port: server.port })).rejects.toThrow(/EADDRINUSE/);
  });
});

describe('/endpoints', () => {
  it('shows each endpoint with Delivering derived from its counters (Unknown when not running) and the URL without credentials', async () => {
    const ok = await TestReceiver.start();
    const failing = await TestReceiver.start();
    cleanups.push(() => ok.close(), () => failing.close());
    ok.respond(() => 202);
    failing.respond(() => 503);
    const set = new EndpointSet();
    cleanups.push(() => set.close(AbortSignal.abort()));
    set.apply('ns/ok', fast(ok.url));
    set.apply('ns/failing', fast(failing.url.replace('http://', 'http://bob:hunter2@'), {
      retry: { strategy: 'Breaker', maxBackoffMs: 1000, maxAttempts: 2, maxAgeMs: 0 },
      tls: { insecureSkipVerify: true },
    }));
    set.apply('ns/idle', fast(ok.url, { filter: { ...NO_FILTER, repositories: { include: ['nothing/**'], exclude: [] } } }));
    await set.write(makeEvents(1));
    await until(() => set.get('ns/ok')?.stats().delivered === 1 && set.get('ns/failing')?.stats().deadLettered === 1, 'outcomes', 5000);

    const states = new Map([
      ['ns/refused', { ready: false, reason: 'EndpointRefused' as const, message: '169.254.169.254 is link-local', url: 'http://admin:s3cret@169.254.169.254/latest?token=abc' }],
    ]);
    const server = await start({ endpoints: () => endpointStatuses(set, states) });
    const res = await fetch(`${server.url}/endpoints`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('application/json; charset=utf-8');
    const text = await res.text();
    expect(text).not.toContain('hunter2');
    const [okStatus, failingStatus, idleStatus, refusedStatus] = JSON.parse(text) as EndpointStatus[];

    expect(okStatus).toMatchObject({ name: 'ns/ok', url: ok.url, ready: true, reason: 'Configured', pending: 0, delivered: 1 });
    expect(okStatus?.delivering).toEqual({ status: 'True', reason: 'Succeeded' });
    expect(okStatus?.responses).toEqual([{ code: 202, count: 1 }]);
    expect(okStatus?.lastSuccessTime).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
    expect(okStatus).not.toHaveProperty('insecureSkipVerify');

    expect(failingStatus).toMatchObject({
      name: 'ns/failing',
      url: failing.url,
      delivered: 0,
      failed: 2,
      failures: 2,
      errors: 0,
      deadLettered: 1,
      pending: 0,
      lastError: '503 Service Unavailable',
      insecureSkipVerify: true,
    });
    expect(failingStatus?.delivering).toEqual({
      status: 'False',
      reason: 'Failing',
      message: '2 failed attempts in a row; last: 503 Service Unavailable',
    });

    expect(idleStatus).toMatchObject({ name: 'ns/idle', delivered: 0, pending: 0 });
    expect(idleStatus?.delivering).toEqual({ status: 'True', reason: 'Idle' });

    // Known to the source but not running: Delivering is Unknown, not Idle.
    // Not running, yet its URL is shown as the definition names it, credentials removed and query values masked.
    expect(refusedStatus).toMatchObject({ name: 'ns/refused', url: 'http://169.254.169.254/latest?token=***', ready: false, reason: 'EndpointRefused', pending: 0, failed: 0 });
    expect(text).not.toContain('s3cret');
    expect(text).not.toContain('abc');
    expect(refusedStatus?.delivering).toMatchObject({ status: 'Unknown', reason: 'NotRunning' });
  });

  it('shows how many events each endpoint coalesced (delivered once, the rest counted, none pending)', async () => {
    const r = await TestReceiver.start();
    cleanups.push(() => r.close());
    const set = new EndpointSet();
    cleanups.push(() => set.close(AbortSignal.abort()));
    set.apply('ns/quiet', fast(r.url, { coalesce: { actions: ['pull'], windowMs: 3_600_000 } }));
    await set.write(makeEvents(5).map((ev) => ({ ...ev, action: 'pull' })));
    await until(() => set.get('ns/quiet')?.stats().delivered === 1, 'the first pull delivered', 5000);
    const server = await start({ endpoints: () => endpointStatuses(set, new Map()) });
    const [quiet] = (await (await fetch(`${server.url}/endpoints`)).json()) as EndpointStatus[];
    expect(quiet).toMatchObject({ name: 'ns/quiet', delivered: 1, coalesced: 4, pending: 0 });
    expect(r.events().map((e) => e.id)).toEqual(['ev-0']);
  });
});

describe('POST /endpoints/resume', () => {
  const TOKEN = 'resume-token-2b8d';
  const auth = { authorization: `Bearer ${TOKEN}` };
  const call = (server: AdminServer, query: string, init: RequestInit = {}): Promise<Response> =>
    fetch(`${server.url}/endpoints/resume${query}`, { method: 'POST', signal: AbortSignal.timeout(5000), ...init });

  it('is authenticated like replay: 401 without or with a wrong token, 403 with none configured, 405 for GET, 400 without a name', async () => {
    const asked: string[] = [];
    const resume = (name: string): boolean => (asked.push(name), true);
    const server = await start({ resume, token: TOKEN });
    for (const headers of [{}, { authorization: 'Bearer not-the-token' }]) {
      const res = await call(server, '?endpoint=hook', { headers });
      expect(res.status).toBe(401);
      expect(res.headers.get('www-authenticate')).toMatch(/^Bearer /);
    }
    const get = await call(server, '?endpoint=hook', { method: 'GET', headers: auth });
    expect([get.status, get.headers.get('allow')]).toEqual([405, 'POST']);
    expect((await call(server, '', { headers: auth })).status).toBe(400);

    const open = await start({ resume });
    for (const headers of [{}, auth]) {
      const res = await call(open, '?endpoint=hook', { headers });
      expect(res.status).toBe(403);
      expect(((await res.json()) as { error: { message: string } }).error.message).toBe('resume needs an ingest token to be configured (--ingest-token-file)');
    }
    expect(asked, 'no refused call reached the engine').toEqual([]);

    const without = await start({ token: TOKEN });
    expect((await call(without, '?endpoint=hook', { headers: auth })).status, 'a server that offers no resume').toBe(404);
  });

  it('404 for an unknown endpoint, 503 once the endpoint is closing', async () => {
    const r = await TestReceiver.start();
    cleanups.push(() => r.close());
    const set = new EndpointSet();
    set.apply('ns/hook', fast(r.url));
    const server = await start({ resume: (name) => set.resume(name), token: TOKEN });
    const unknown = await call(server, '?endpoint=ns%2Fgone', { headers: auth });
    expect(unknown.status).toBe(404);
    expect(await unknown.json()).toEqual({ error: { code: 'NotFound', message: 'no endpoint ns/gone' } });

    // The endpoint is closing (a shutdown), still in the set: its resume throws SinkClosedError.
    const closing = set.get('ns/hook')!.close({ signal: AbortSignal.abort() });
    cleanups.push(() => set.close(AbortSignal.abort()));
    const late = await call(server, '?endpoint=ns%2Fhook', { headers: auth });
    expect(late.status).toBe(503);
    expect(((await late.json()) as { error: { code: string } }).error.code).toBe('ShuttingDown');
    await closing;
  });

  it('an endpoint that is not AutoDisabled: 200 resumed false, nothing changes', async () => {
    const r = await TestReceiver.start();
    cleanups.push(() => r.close());
    const set = new EndpointSet();
    cleanups.push(() => set.close(AbortSignal.abort()));
    set.apply('ns/hook', fast(r.url));
    const server = await start({ resume: (name) => set.resume(name), token: TOKEN });
    const res = await call(server, '?endpoint=ns%2Fhook', { headers: auth });
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ endpoint: 'ns/hook', resumed: false });
    expect(set.get('ns/hook')?.autoDisabled).toBeUndefined();
    expect(r.requests).toHaveLength(0);
  });

  it('an AutoDisabled endpoint: 200 resumed true, its kept queue is delivered in order, a second call answers false', async () => {
    const r = await TestReceiver.start();
    cleanups.push(() => r.close());
    let down = true;
    r.respond(() => (down ? 503 : 202));
    // Virtual time: a breaker retrying every 4 s, stopped after 10 s of failing.
    const set = new EndpointSet({ clock: fakeClock() });
    cleanups.push(() => set.close(AbortSignal.abort()));
    set.apply('ns/hook', endpointConfig({ url: r.url, threshold: 1, backoffMs: 4000, timeoutMs: 2000, retry: { disableAfterMs: 10_000 } }));
    await set.write(makeEvents(3));
    const endpoint = set.get('ns/hook')!;
    await until(() => endpoint.autoDisabled !== undefined, 'auto-disabled', 5000);
    expect(endpoint.pending).toBe(3);
    const logged: { details: object; message: string }[] = [];
    const server = await start({
      resume: (name) => set.resume(name),
      token: TOKEN,
      logger: { error: () => {}, info: (details, message) => void logged.push({ details, message }) },
    });

    down = false;
    const res = await call(server, '?endpoint=ns%2Fhook', { headers: auth });
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ endpoint: 'ns/hook', resumed: true });
    await until(() => endpoint.pending === 0, 'kept queue delivered', 5000);
    expect(r.events({ acceptedOnly: true }).map((e) => e.id)).toEqual(['ev-0', 'ev-1', 'ev-2']);
    expect(endpoint.autoDisabled).toBeUndefined();
    expect(logged).toEqual([{ details: { endpoint: 'ns/hook', resumed: true }, message: 'resume requested' }]);

    const again = await call(server, '?endpoint=ns%2Fhook', { headers: auth });
    expect(await again.json()).toEqual({ endpoint: 'ns/hook', resumed: false });
  });
});
