import type pg from 'pg';
import type { Logger } from 'pino';
import type { EndpointStore, QueueWindow } from '../notifications/queue-store.ts';
import type { QueuedEvent } from '../notifications/sink.ts';
import { describeDatabaseError } from './errors.ts';
import type { Lease, LeaseHolder } from './lease-keeper.ts';
import type { Outcome } from './outcome-writer.ts';
import type { Page } from './page-reader.ts';

/** What a store needs of its backend: the pool, the replica's reader and writer, and the lease keeper it registers with. */
export interface StoreContext {
  readonly pool: pg.Pool;
  readonly logger: Logger;
  /** The longest attempt a freshly renewed lease leaves room for. */
  readonly longestAttemptMs: number;
  /** Pending events per endpoint, as the lease keeper last read them. */
  pending(endpoint: string): number | undefined;
  /** The events the endpoint owes after a position, a page at most (see `PageReader`). */
  read(endpoint: string, after: number): Promise<Page>;
  /** Queues an outcome with the replica's writer (see `OutcomeWriter`). */
  record(outcome: Outcome): void;
  /** Releases the endpoint's lease of `epoch` to another replica (see `LeaseKeeper.release`). */
  release(endpoint: string, epoch: number): Promise<boolean>;
  register(holder: LeaseHolder): void;
  unregister(holder: LeaseHolder): void;
}

// An attempt must end this long before the lease does (a response still on its way, clocks).
const ATTEMPT_MARGIN_MS = 200;
// Delivered events not yet recorded, at most: attempts wait beyond it. Whatever is unrecorded when the lease
// moves (a failover, a rebalance) is sent again by the next owner, so the lag is kept to a few batches.
const MAX_UNRECORDED = 16;

/**
 * One endpoint's queue in the shared database, as this replica sees it. While the replica holds the endpoint's
 * lease it pages what the endpoint owes into the in-memory queue (a window: at most a page ahead), and records
 * each outcome fenced by the lease's epoch, so a replica that lost the lease (paused, cut off) never commits one;
 * when the lease is gone the window is forgotten and the new owner starts from what the database still holds
 * (the batch that was in flight, and what follows). Attempts start only with enough lease left to finish.
 */
export class PostgresEndpointStore implements EndpointStore, LeaseHolder {
  readonly name: string;
  #context: StoreContext;
  #window: QueueWindow | undefined;
  #lease: Lease | undefined;
  #after = 0; // the last position pushed into the window
  #fetching = false;
  // Whether the database may hold more than the window was fed: set by every wake-up and by a full page, cleared
  // when a page is asked for. A drained window asks for the next page only then, not after every batch.
  #stale = false;
  #feeding = true;
  // The endpoint closed here: outcomes that cannot be written now are given up rather than retried.
  #closing = false;
  #unrecorded = 0;
  // Between a permit given and the end of that attempt: a surplus endpoint is handed over only outside of it.
  #attempting = false;
  #releasing = false;
  #waiters = new Set<() => void>();
  #warnedLong = false;

  constructor(name: string, context: StoreContext) {
    this.name = name;
    this.#context = context;
  }

  attach(window: QueueWindow): void {
    this.#window = window;
    this.#context.register(this);
    window.onDrain(() => this.#feed());
  }

  detach(): void {
    this.#feeding = false;
  }

  async closed(): Promise<void> {
    // The outcomes reached are written before the lease is given up, or the next owner would send them again;
    // one that fails from here on is given up (the database is down: the next owner sends those events again).
    this.#closing = true;
    await this.#recorded();
    this.#context.unregister(this);
  }

  backlog(): number | undefined {
    const pending = this.#context.pending(this.name);
    return pending === undefined ? undefined : Math.max(pending, this.#window?.pending ?? 0);
  }

  /** Whether this replica holds the endpoint's lease now. */
  get holding(): boolean {
    return this.#lease !== undefined;
  }

  /** The lease keeper's word after each round. */
  leased(lease: Lease | undefined): void {
    const previous = this.#lease;
    this.#lease = lease;
    if (!lease || lease.epoch !== previous?.epoch) {
      // Lost, or taken over and given back (a new epoch): what the window holds is the database's again.
      if (previous) {
        this.#window?.reset();
        this.#after = 0;
      }
      // Only where something is owed, or was notified since the round read the counts: ten thousand idle
      // endpoints claimed at once cost no query each.
      if (lease && (this.#context.pending(this.name) ?? 1) > 0) this.wake();
      else this.#feed();
    } else if ((this.#context.pending(this.name) ?? 0) > (this.#window?.pending ?? 0)) {
      // The polling fallback: the database says more is owed than the window holds (a missed notification).
      this.wake();
    }
    this.#changed();
    this.#handOverIfIdle();
  }

  /** New work may be waiting (a notification, a lease round): fetch the next page once the window is empty. */
  wake(): void {
    this.#stale = true;
    this.#feed();
  }

  #feed(): void {
    if (!this.#stale || this.#fetching || !this.#lease || !this.#feeding || !this.#window || this.#window.pending > 0) return;
    void this.#fetch();
  }

  async permit(timeoutMs: number, signal: AbortSignal): Promise<void> {
    // A timeout longer than a fresh lease allows could never start: such attempts start right after a renewal
    // and may outlast the lease (said once); keep endpoint timeouts well under the lease duration.
    const longest = this.#context.longestAttemptMs;
    if (timeoutMs > longest && !this.#warnedLong) {
      this.#warnedLong = true;
      this.#context.logger.warn({ endpoint: this.name, timeoutMs, leaseAllowsMs: longest }, 'endpoint timeout is longer than a delivery lease allows; an attempt may outlast the lease (a failover may then send it twice)');
    }
    const needed = Math.min(timeoutMs, longest) + ATTEMPT_MARGIN_MS;
    while (!signal.aborted) {
      const lease = this.#lease;
      // Not while a hand-over is on its way to the database: a round may still say the lease is ours, not surplus.
      if (lease && !lease.surplus && !this.#releasing && performance.now() + needed < lease.validUntil && this.#unrecorded < MAX_UNRECORDED) {
        this.#attempting = true;
        return;
      }
      // Wait for the next round (a renewal, or the word that the lease is gone: then the window resets and the
      // write in flight is aborted), for the recordings to catch up, or for the abort. A surplus endpoint waits
      // here until it is handed over (or the next round keeps it after all).
      await this.#change(signal);
    }
  }

  attempted(): void {
    this.#attempting = false;
    // After the queue acknowledged what the attempt delivered (it does so in the microtasks that follow).
    if (this.#lease?.surplus) setImmediate(() => this.#handOverIfIdle());
  }

  ack(events: readonly QueuedEvent[]): void {
    this.#record(events);
  }

  deadLetter(events: readonly QueuedEvent[], reason: string): void {
    this.#record(events, { reason: reason.slice(0, 1024), at: Date.now() });
  }

  takeDeadLetters(): QueuedEvent[] {
    return []; // replay() queues them in the database
  }

  async replay(): Promise<number> {
    const { rows } = await this.#context.pool.query<{ n: number }>('SELECT rn_replay($1) AS n', [this.name]);
    return rows[0]?.n ?? 0;
  }

  async drop(): Promise<void> {
    // The endpoint was deleted: its queue and dead letters go with its row (every replica agrees it is gone).
    // Awaited by the removal, so the same name created again here takes events only after the delete. A replica
    // that sees the deletion later still deletes by name (what was accepted for the new endpoint meanwhile too).
    try {
      await this.#context.pool.query('DELETE FROM endpoints WHERE name = $1', [this.name]);
    } catch (error) {
      this.#context.logger.warn({ endpoint: this.name, error: describeDatabaseError(error) }, 'database: could not delete a removed endpoint\'s queue');
    }
  }

  /**
   * Hands an outcome to the replica's writer, to be written under the lease it was reached under (the writer keeps
   * each endpoint's outcomes in order). Fenced off means the lease is another replica's: this one lets it go.
   */
  #record(events: readonly QueuedEvent[], deadLetter?: { reason: string; at: number }): void {
    const lease = this.#lease;
    if (!lease || events.length === 0) return; // reached after the lease was lost: the new owner sends these again
    const positions = events.map((event) => event.seq!);
    this.#unrecorded += positions.length;
    this.#context.record({
      endpoint: this.name,
      lease,
      positions,
      ...(deadLetter && { deadLetter }),
      // While the database cannot be reached, retried for as long as this replica holds the lease's epoch, even
      // once the lease ran out locally: until another replica claims the endpoint (a new epoch) nobody else sends
      // these, and a renewal at the same epoch goes on after them, so an outcome given up here would leave them
      // owed behind newer ones. Given up once the lease is known lost (the next owner sends them again), on close,
      // and, when the database refuses the call itself (a bug: it would refuse it again), once the lease ran out.
      current: (unavailable) => this.#lease?.epoch === lease.epoch && !this.#closing && (unavailable || performance.now() < lease.validUntil),
      settle: (written) => {
        if (written === false && this.#lease?.epoch === lease.epoch) this.leased(undefined); // fenced off: no longer ours
        this.#unrecorded -= positions.length;
        this.#changed();
        this.#handOverIfIdle();
      },
    });
  }

  /**
   * Hands a surplus endpoint over once nothing of it is in flight here: no attempt running (none starts while it
   * is surplus) and every outcome written, so the next owner starts exactly where this replica ended and no two
   * replicas ever send to the endpoint at once. A release that fails is tried again after the next round.
   */
  #handOverIfIdle(): void {
    const lease = this.#lease;
    if (!lease?.surplus || this.#attempting || this.#unrecorded > 0 || this.#releasing) return;
    this.#releasing = true;
    this.#context.release(this.name, lease.epoch).then(
      () => {
        // Handed over, or no longer ours anyway: what the window holds is the next owner's to send.
        if (this.#lease?.epoch === lease.epoch) this.leased(undefined);
      },
      (error: unknown) => this.#context.logger.debug({ endpoint: this.name, error: describeDatabaseError(error) }, 'database: handing the endpoint over failed; the next round tries again'),
    ).finally(() => {
      this.#releasing = false;
      this.#changed(); // a permit waiting on the hand-over looks again
    });
  }

  /** Resolves once every outcome handed to the writer is written or given up. */
  async #recorded(): Promise<void> {
    while (this.#unrecorded > 0) await this.#change();
  }

  /** Resolves at the next change `#changed` announces (a lease round, an outcome settled), or when `signal` aborts. */
  #change(signal?: AbortSignal): Promise<void> {
    return new Promise<void>((resolve) => {
      const done = (): void => {
        this.#waiters.delete(done);
        signal?.removeEventListener('abort', done);
        resolve();
      };
      this.#waiters.add(done);
      signal?.addEventListener('abort', done, { once: true });
    });
  }

  #changed(): void {
    for (const waiter of this.#waiters) waiter();
  }

  async #fetch(): Promise<void> {
    this.#fetching = true;
    try {
      while (this.#stale && this.#lease && this.#feeding && this.#window?.pending === 0) {
        this.#stale = false;
        const lease = this.#lease;
        let page: Page;
        try {
          page = await this.#context.read(this.name, this.#after);
        } catch (error) {
          this.#stale = true;
          this.#context.logger.debug({ endpoint: this.name, error: describeDatabaseError(error) }, 'database: fetching the next page failed; the next round tries again');
          return;
        }
        // The lease moved on, or the endpoint began closing (its queue takes nothing more) while the page was read.
        if (this.#lease?.epoch !== lease.epoch || !this.#feeding || page.events.length === 0) continue;
        if (page.more) this.#stale = true;
        this.#after = page.events.at(-1)!.seq!;
        this.#window.push(page.events);
      }
    } finally {
      this.#fetching = false;
    }
  }
}
