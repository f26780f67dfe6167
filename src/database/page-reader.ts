import type pg from 'pg';
import type { QueuedEvent } from '../notifications/sink.ts';
import { SerialBatches } from './serial-batches.ts';

/** Settings of a `PageReader`. */
export interface PageReaderOptions {
  pool: pg.Pool;
  /** Events read per endpoint at most. */
  pageSize: number;
}

/** The next events an endpoint owes, in order (`seq` is each one's position in its queue); `more` when the page is full. */
export interface Page {
  readonly events: QueuedEvent[];
  readonly more: boolean;
}

interface Request {
  readonly endpoint: string;
  readonly after: number;
  resolve(page: Page): void;
  reject(error: unknown): void;
}

// Endpoints read by one query at most: a page each, so a call stays a bounded amount of memory.
const MAX_PER_CALL = 64;
// Queries start at least this far apart: under a steady trickle each takes what arrived meanwhile, so a page (and
// the delivery and outcome behind it) carries several events instead of one: one registry posting 300-550 events/s
// got 10 per delivery at 20 ms and 1.5 at 5 ms, where the deliveries took a third of its ingest rate (bench:ingest).
// Delivery waits this much at most more; an event after a quiet spell is read at once.
const SPACING_MS = 20;

/**
 * Reads the next page of what endpoints owe, many endpoints in one query: one ingest request wakes every endpoint
 * it routed to at once, and a query each would cost the database one round trip per endpoint. Requests made in
 * the same turn of the event loop (and while a query runs) go in the next query; `seq` of each event is its
 * position in the endpoint's queue.
 */
export class PageReader {
  #options: PageReaderOptions;
  #batches = new SerialBatches<Request>(MAX_PER_CALL, (batch) => this.#read(batch), SPACING_MS);

  constructor(options: PageReaderOptions) {
    this.#options = options;
  }

  /** The events `endpoint` owes after position `after`, in order, a page at most; rejects when the database could not be read. */
  read(endpoint: string, after: number): Promise<Page> {
    return new Promise((resolve, reject) => this.#batches.add({ endpoint, after, resolve, reject }));
  }

  // One query: each request gets its page, or every one the error.
  async #read(batch: Request[]): Promise<readonly Request[]> {
    try {
      const { rows } = await this.#options.pool.query<{ k: number; pos: string; id: string; json: string; accepted_at: string }>({
        name: 'rn-pages',
        text: `SELECT w.k, d.pos, e.id, e.json, e.accepted_at
          FROM unnest($1::text[], $2::bigint[]) WITH ORDINALITY AS w(endpoint, after, k)
          CROSS JOIN LATERAL (SELECT pos, seq FROM deliveries WHERE endpoint = w.endpoint AND pos > w.after ORDER BY pos LIMIT $3) d
          JOIN events e ON e.seq = d.seq
          ORDER BY w.k, d.pos`,
        values: [batch.map((r) => r.endpoint), batch.map((r) => r.after), this.#options.pageSize],
      });
      const pages = batch.map((): QueuedEvent[] => []);
      for (const row of rows) pages[Number(row.k) - 1]?.push({ id: row.id, json: row.json, acceptedAt: Number(row.accepted_at), seq: Number(row.pos) });
      batch.forEach((request, i) => request.resolve({ events: pages[i]!, more: pages[i]!.length >= this.#options.pageSize }));
    } catch (error) {
      for (const request of batch) request.reject(error);
    }
    return [];
  }
}
