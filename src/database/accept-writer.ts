import { createHash } from 'node:crypto';
import type pg from 'pg';
import type { Route } from '../notifications/queue-store.ts';
import type { QueuedEvent } from '../notifications/sink.ts';
import { classifyDatabaseError } from './errors.ts';
import { SerialBatches } from './serial-batches.ts';

interface Request {
  readonly routes: readonly Route[];
  resolve(duplicates: string[]): void;
  reject(error: unknown): void;
}

// Ingest requests committed by one transaction at most: a call stays short, and whatever queued meanwhile goes in
// the next one.
const MAX_PER_CALL = 32;
// The longest id stored as it is (UTF-8 bytes): a btree entry holds at most about 2,700 bytes, and recent_ids'
// primary key indexes the id. A registry's ids are UUIDs.
const MAX_STORED_ID_BYTES = 1_024;

/**
 * How the database keeps an event id: as it is, unless PostgreSQL could not (a NUL character, which `text`
 * refuses), would keep another (a lone surrogate, `"\ud800"` in JSON, reaches it as U+FFFD: two such ids would be
 * one) or its index could not (over `MAX_STORED_ID_BYTES`): then `sha256:` + the hex of the hash of its JSON form
 * (which tells every string apart). The ingest takes any non-empty string (api.md section 4), and one id the
 * database refuses would fail every request of the transaction it shares.
 */
export function storedId(id: string): string {
  const asIs = id.isWellFormed() && !id.includes('\u0000') && Buffer.byteLength(id) <= MAX_STORED_ID_BYTES;
  return asIs ? id : `sha256:${createHash('sha256').update(JSON.stringify(id)).digest('hex')}`;
}

/**
 * Commits ingest requests with `rn_accept`, the requests that arrive while one transaction runs together in the
 * next (group commit): requests for the same endpoint take its queue row lock in turn until each one's commit,
 * so one transaction each would make every request wait for the WAL flushes of those before it. One call is in
 * flight at a time; the requests of a call get positions in the order they arrived. An id carried by an earlier
 * request of the same call is a duplicate for the later one, as if they had been committed one after the other.
 */
export class AcceptWriter {
  #pool: pg.Pool;
  #batches = new SerialBatches<Request>(MAX_PER_CALL, (batch) => this.#accept(batch));

  constructor(pool: pg.Pool) {
    this.#pool = pool;
  }

  /**
   * Commits the routes' events (each event once however many routes carry it); resolves with the ids already
   * committed (on any replica, or by an earlier request of the same transaction), dropped from every route;
   * rejects with a classified database error, nothing committed.
   */
  accept(routes: readonly Route[]): Promise<string[]> {
    return new Promise((resolve, reject) => this.#batches.add({ routes, resolve, reject }));
  }

  // One transaction for the whole batch: every request gets its duplicates, or every one the error.
  async #accept(batch: Request[]): Promise<readonly Request[]> {
    const index = new Map<string, number>(); // each id once in the call (rn_accept takes distinct ids)
    const events: QueuedEvent[] = [];
    const endpoints: string[] = [];
    const refs: number[] = [];
    const owner = new Map<string, Request>(); // the request of the batch that carries each id first
    const carried = batch.map(() => new Set<string>()); // each request's ids
    const repeated = batch.map(() => new Set<string>()); // each request's ids an earlier request of the batch carries
    batch.forEach((request, r) => {
      for (const { endpoint, events: owed } of request.routes) {
        for (const event of owed) {
          carried[r]!.add(event.id);
          const first = owner.get(event.id);
          if (first !== undefined && first !== request) {
            repeated[r]!.add(event.id);
            continue;
          }
          owner.set(event.id, request);
          let k = index.get(event.id);
          if (k === undefined) {
            events.push(event);
            index.set(event.id, (k = events.length));
          }
          endpoints.push(endpoint);
          refs.push(k);
        }
      }
    });
    try {
      // Named, so each connection parses and plans it once: a tenth of a one-event request's time.
      const ids = events.map((e) => storedId(e.id));
      const original = new Map(ids.map((id, k) => [id, events[k]!.id]));
      const { rows } = await this.#pool.query<{ dup: string[] }>({ name: 'rn-accept', text: 'SELECT rn_accept($1, $2, $3, $4, $5) AS dup', values: [
        ids,
        events.map((e) => e.json),
        events.map((e) => e.acceptedAt),
        endpoints,
        refs,
      ] });
      const committedBefore = new Set((rows[0]?.dup ?? []).map((id) => original.get(id) ?? id));
      batch.forEach((request, r) => {
        const duplicates = new Set([...carried[r]!].filter((id) => committedBefore.has(id)));
        for (const id of repeated[r]!) duplicates.add(id);
        request.resolve([...duplicates]);
      });
    } catch (error) {
      const classified = classifyDatabaseError(error);
      for (const request of batch) request.reject(classified);
    }
    return [];
  }
}
