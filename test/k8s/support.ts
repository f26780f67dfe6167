// A fake Kubernetes API server on nock for the informer, cluster-API and controller tests: a KubeConfig that points
// at it, scripted list and watch answers (a watch is a stream the test writes events into), a delay that records
// every wait and lets the test decide when it ends, and a log capture. Nothing here dials out.
import { KubeConfig } from '@kubernetes/client-node';
import nock from 'nock';
import { afterEach, beforeEach, expect } from 'vitest';
import { PassThrough, Writable } from 'node:stream';
import type { Logger } from 'pino';
import type { Delay } from '../../src/k8s/backoff.ts';
import { createLogger } from '../../src/log.ts';

/** The fake API server's address; nock answers for it, nothing listens there. */
export const API_SERVER = 'https://127.0.0.1:6443';
export const TOKEN = 'test-token-123';

/** A KubeConfig for `server` with a bearer token, as a pod's service account would give. */
export function fakeKubeConfig(server = API_SERVER): KubeConfig {
  const kc = new KubeConfig();
  kc.loadFromOptions({
    // client-node refuses plain http unless TLS verification is off (the loopback server of one test)
    clusters: [{ name: 'fake', server, skipTLSVerify: server.startsWith('http:') }],
    users: [{ name: 'sa', token: TOKEN }],
    contexts: [{ name: 'fake', cluster: 'fake', user: 'sa' }],
    currentContext: 'fake',
  });
  return kc;
}

/** One parsed log line (createLogger writes the level as its label). */
export interface LogLine {
  level: string;
  msg: string;
  [field: string]: unknown;
}

/** A logger whose lines the test can read. */
export function captureLogs(): { logger: Logger; lines: LogLine[] } {
  const lines: LogLine[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      for (const line of chunk.toString().split('\n')) if (line.trim() !== '') lines.push(JSON.parse(line) as LogLine);
      done();
    },
  });
  return { logger: createLogger('debug', sink), lines };
}

/**
 * An injectable `Delay` that records every wait. The first `free` waits end at once; later ones are held until
 * `release()` or until their signal aborts (as the real delay does).
 */
export class ManualDelay {
  readonly waits: number[] = [];
  #free: number;
  #held: (() => void)[] = [];

  constructor(free = Number.POSITIVE_INFINITY) {
    this.#free = free;
  }

  readonly delay: Delay = (ms, signal) => {
    this.waits.push(ms);
    if (signal.aborted) return Promise.resolve();
    // A free wait still ends on a later turn of the event loop: a client retrying against the mock in a tight
    // loop would otherwise never let a timer (the test's timeout included) run. After 50 waits the loop is
    // surely wrong; the rest are held so the test fails instead of spinning.
    if (this.#free > 0 && this.waits.length <= 50) {
      this.#free--;
      return new Promise((resolve) => setImmediate(resolve));
    }
    return new Promise((resolve) => {
      const done = (): void => {
        signal.removeEventListener('abort', done);
        this.#held = this.#held.filter((r) => r !== done);
        resolve();
      };
      signal.addEventListener('abort', done, { once: true });
      this.#held.push(done);
    });
  };

  /** Waits not yet ended. */
  get held(): number {
    return this.#held.length;
  }

  /** Ends every held wait. */
  release(): void {
    for (const done of [...this.#held]) done();
  }
}

/** One watch connection as the server side sees it: the test writes events into it, ends it or drops it. */
export class WatchStream {
  readonly body = new PassThrough();
  /** The request's query string, in the order the client wrote it. */
  readonly search: string;
  readonly authorization: string | null;

  constructor(request: Request) {
    const url = new URL(request.url);
    this.search = url.search;
    this.authorization = request.headers.get('authorization');
    // The mock sends the response headers with the first body chunk; a real API server sends them at once.
    // A blank line is what the client skips, so it stands in for "connected, nothing happened yet".
    this.body.write('\n');
  }

  send(type: string, object: object): void {
    this.body.write(`${JSON.stringify({ type, object })}\n`);
  }

  /** The server closes the watch normally (its timeout, or after an ERROR event). */
  end(): void {
    this.body.end();
  }

  /** The connection breaks in the middle of the stream. */
  drop(): void {
    this.body.destroy(Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET' }));
  }
}

/** The query a watch request must carry: the informer's parameters plus client-node's `watch=true`. */
export function watchQuery(resourceVersion: string, timeoutSeconds: number): Record<string, string> {
  return { watch: 'true', resourceVersion, allowWatchBookmarks: 'true', timeoutSeconds: String(timeoutSeconds) };
}

/** An API status body, as the server answers a failed request. */
export function statusBody(code: number, reason: string, message = reason): object {
  return { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message, reason, code };
}

/**
 * Scripted answers for one collection path (`/apis/.../notificationendpoints`): each call registers one answer,
 * consumed in order. A request nobody scripted is answered 501 by the mock and recorded by `trackUnmatched`.
 */
export class FakeCollection {
  readonly path: string;
  readonly timeoutSeconds: number | undefined;
  readonly server: string;

  /**
   * `timeoutSeconds` is what the informer asks for with the test's `random`; undefined accepts any value the
   * informer may pick (300 to 359) when the test cannot inject `random`.
   */
  constructor(path: string, timeoutSeconds: number | undefined, server = API_SERVER) {
    this.path = path;
    this.timeoutSeconds = timeoutSeconds;
    this.server = server;
  }

  list(items: object[], resourceVersion: string): nock.Scope {
    return nock(this.server).get(this.path).reply(200, { apiVersion: 'v1', kind: 'List', metadata: { resourceVersion }, items });
  }

  listFails(code: number, times = 1): nock.Scope {
    return nock(this.server).get(this.path).times(times).reply(code, statusBody(code, 'Failed'));
  }

  /** Answers the next watch from `resourceVersion` with a stream; resolves when the informer opens it. */
  watch(resourceVersion: string, options: { gate?: Promise<void> } = {}): Promise<WatchStream> {
    return new Promise((resolve) => {
      nock(this.server)
        .get(this.path)
        .query(this.#query(resourceVersion))
        .reply(200, async (request: Request) => {
          await options.gate;
          const stream = new WatchStream(request);
          resolve(stream);
          return stream.body;
        });
    });
  }

  /** Answers the next `times` watches from `resourceVersion` with an error status. */
  watchFails(resourceVersion: string, code: number, times = 1): nock.Scope {
    return nock(this.server).get(this.path).query(this.#query(resourceVersion)).times(times)
      .reply(code, statusBody(code, code === 410 ? 'Expired' : 'Failed'));
  }

  #query(resourceVersion: string): Record<string, string> | ((query: Record<string, unknown>) => boolean) {
    if (this.timeoutSeconds !== undefined) return watchQuery(resourceVersion, this.timeoutSeconds);
    return (query) => {
      const { timeoutSeconds, ...rest } = query;
      const seconds = Number(timeoutSeconds);
      const expected: Record<string, string> = { watch: 'true', resourceVersion, allowWatchBookmarks: 'true' };
      return Number.isInteger(seconds) && seconds >= 300 && seconds < 360 && Object.keys(rest).length === 3 &&
        Object.entries(expected).every(([key, value]) => rest[key] === value);
    };
  }
}

/**
 * Records requests to a fake API server (https on loopback) that no interceptor matched: they would otherwise only
 * show up as a 501 and a retry. Requests let through to a real (http) loopback server are not counted.
 */
export function trackUnmatched(): { requests: string[]; dispose: () => void } {
  const requests: string[] = [];
  const listener = (request: Request): void => {
    if (request.url.startsWith('https://127.0.0.1:')) requests.push(`${request.method} ${request.url}`);
  };
  nock.emitter.on('no match', listener);
  return { requests, dispose: () => void nock.emitter.off('no match', listener) };
}

/**
 * Per-test nock setup and teardown for suites against the fake API server: no real network, and a request the
 * test did not script fails the test. Returns the list of closers run after each test, newest first.
 */
export function useFakeApiServer(): (() => unknown)[] {
  const cleanups: (() => unknown)[] = [];
  let unmatched: ReturnType<typeof trackUnmatched>;
  beforeEach(() => {
    nock.disableNetConnect();
    unmatched = trackUnmatched();
  });
  afterEach(async () => {
    while (cleanups.length) await cleanups.pop()!();
    unmatched.dispose();
    nock.cleanAll();
    nock.enableNetConnect();
    // A request the test did not script would have been answered 501 and retried: the script was wrong.
    expect(unmatched.requests).toEqual([]);
  });
  return cleanups;
}
