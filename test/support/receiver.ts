// A real loopback HTTP server that records every request, for end-to-end and delivery-engine tests.
import { EventEmitter } from 'node:events';
import { createServer, type IncomingHttpHeaders, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

/** One request as received: `status` is undefined until the scripted response has been sent. */
export interface RecordedRequest {
  seq: number;
  method: string;
  url: string;
  headers: IncomingHttpHeaders;
  body: Buffer;
  text: string;
  json: unknown;
  receivedAt: number;
  status?: number;
}

/** A scripted reply: a bare status code, or status plus optional body and headers. */
export type ScriptedResponse = number | { status: number; body?: string; headers?: Record<string, string> };

/** Decides the reply to one request; may be async (e.g. to hold a response until the test lets it go). */
export type Responder = (req: RecordedRequest) => ScriptedResponse | Promise<ScriptedResponse>;

/** A registry notification event as received; unvalidated, so only the fields the tests read are typed. */
export interface ReceivedEvent {
  id: string;
  timestamp?: string;
  action: string;
  target: {
    mediaType?: string;
    size?: number;
    digest?: string;
    length?: number;
    repository: string;
    fromRepository?: string;
    url?: string;
    tag?: string;
    [key: string]: unknown;
  };
  request?: { id?: string; addr?: string; host?: string; method?: string; useragent?: string };
  actor?: { name?: string };
  source?: { addr?: string; instanceID?: string };
  [key: string]: unknown;
}

/** Test HTTP receiver on 127.0.0.1:<ephemeral>; replies 200 unless a queued status or a responder says otherwise. */
export class TestReceiver {
  /** Every request in arrival order (mutated in place as responses are sent). */
  readonly requests: RecordedRequest[] = [];
  private readonly emitter = new EventEmitter();
  private readonly queue: ScriptedResponse[] = [];
  private responder: Responder | undefined;
  private closed = false;
  private readonly server: Server;
  /** Base URL, e.g. `http://127.0.0.1:40123/events`. */
  readonly url: string;

  private constructor(server: Server, url: string) {
    this.server = server;
    this.url = url;
    this.emitter.setMaxListeners(0);
  }

  /** Listens on 127.0.0.1 port 0; `path` (default `/events`) is only appended to `url`, every path is recorded. */
  static async start(opts: { path?: string } = {}): Promise<TestReceiver> {
    const server = createServer();
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => resolve());
    });
    const { port } = server.address() as AddressInfo;
    const receiver = new TestReceiver(server, `http://127.0.0.1:${port}${opts.path ?? '/events'}`);
    server.on('request', (req, res) => receiver.handle(req, res));
    return receiver;
  }

  /** Sets the responder used when the status queue is empty (null restores the default 200). */
  respond(fn: Responder | null): this {
    this.responder = fn ?? undefined;
    return this;
  }

  /** Queues replies for the next requests, consumed in order before the responder is asked. */
  enqueue(...responses: ScriptedResponse[]): this {
    this.queue.push(...responses);
    return this;
  }

  /** Forgets recorded requests and queued replies (the responder stays). */
  clear(): void {
    this.requests.length = 0;
    this.queue.length = 0;
  }

  /** The `body.events` of every recorded request flattened in order; `acceptedOnly` keeps requests answered 2xx. */
  events(opts: { acceptedOnly?: boolean } = {}): ReceivedEvent[] {
    return this.requests
      .filter((r) => !opts.acceptedOnly || (r.status !== undefined && r.status >= 200 && r.status < 300))
      .flatMap((r) => {
        const events = (r.json as { events?: unknown } | undefined)?.events;
        return Array.isArray(events) ? (events as ReceivedEvent[]) : [];
      });
  }

  /** Resolves with the requests once `predicate` holds (checked now and on every arrival/reply); rejects at the deadline listing what arrived. */
  waitFor(predicate: (requests: RecordedRequest[]) => boolean, timeoutMs = 10_000): Promise<RecordedRequest[]> {
    return new Promise((resolve, reject) => {
      let lastError: unknown;
      const check = (): void => {
        try {
          if (predicate(this.requests)) {
            finish();
            resolve(this.requests);
          }
        } catch (err) {
          lastError = err;
        }
      };
      const onClose = (): void => {
        finish();
        reject(new Error(`TestReceiver closed while waiting\n${this.describe()}`));
      };
      const timer = setTimeout(() => {
        finish();
        const why = lastError instanceof Error ? `; last predicate error: ${lastError.message}` : '';
        reject(new Error(`TestReceiver.waitFor timed out after ${timeoutMs} ms${why}\n${this.describe()}`));
      }, timeoutMs);
      const finish = (): void => {
        clearTimeout(timer);
        this.emitter.off('change', check);
        this.emitter.off('close', onClose);
      };
      this.emitter.on('change', check);
      this.emitter.once('close', onClose);
      if (this.closed) onClose();
      else check();
    });
  }

  /** Like waitFor, but the predicate sees the flattened events; resolves with them. */
  async waitForEvents(predicate: (events: ReceivedEvent[]) => boolean, timeoutMs = 10_000): Promise<ReceivedEvent[]> {
    await this.waitFor(() => predicate(this.events()), timeoutMs);
    return this.events();
  }

  /** One line per recorded request (status, method, url, event actions/repositories), for error messages. */
  describe(): string {
    if (this.requests.length === 0) return '  (no requests received)';
    return this.requests
      .map((r) => {
        const events = ((r.json as { events?: ReceivedEvent[] } | undefined)?.events ?? [])
          .map((e) => `${e.action} ${e.target?.repository}${e.target?.tag ? `:${e.target.tag}` : ''} ${e.target?.mediaType ?? ''}`)
          .join(', ');
        return `  #${r.seq} ${r.status ?? '...'} ${r.method} ${r.url} ${events || r.text.slice(0, 200)}`;
      })
      .join('\n');
  }

  /** Stops listening, destroys keep-alive sockets and rejects pending waits; safe to call twice. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.emitter.emit('close');
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    this.server.closeAllConnections();
    await closed;
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('error', () => res.destroy());
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      const text = body.toString('utf8');
      let json: unknown;
      try {
        json = text ? JSON.parse(text) : undefined;
      } catch {
        json = undefined;
      }
      const record: RecordedRequest = {
        seq: this.requests.length,
        method: req.method ?? '',
        url: req.url ?? '',
        headers: req.headers,
        body,
        text,
        json,
        receivedAt: Date.now(),
      };
      this.requests.push(record);
      this.emitter.emit('change');
      void this.reply(record, res);
    });
  }

  private async reply(record: RecordedRequest, res: ServerResponse): Promise<void> {
    let scripted: ScriptedResponse;
    try {
      scripted = this.queue.length > 0 ? this.queue.shift()! : this.responder ? await this.responder(record) : 200;
    } catch (err) {
      scripted = { status: 500, body: `responder threw: ${String(err)}` };
    }
    const { status, body = '', headers = {} } = typeof scripted === 'number' ? { status: scripted } : scripted;
    record.status = status;
    if (!res.destroyed) res.writeHead(status, { 'content-type': 'text/plain', ...headers }).end(body);
    this.emitter.emit('change');
  }
}
