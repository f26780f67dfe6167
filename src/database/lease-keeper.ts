import type pg from 'pg';
import type { Logger } from 'pino';
import { describeDatabaseError } from './errors.ts';

/** The channel a replica that stopped notifies once it released its leases, with its id as payload. */
export const RELEASED_CHANNEL = 'registry_notifier_released';

/** A lease this replica holds on one endpoint: the fencing epoch, and until when (this process's monotonic clock) it may act on it. */
export interface Lease {
  readonly epoch: number;
  /** `performance.now()` after which no attempt may still be running under this lease. */
  readonly validUntil: number;
  /**
   * This replica holds more endpoints than its fair share and this is one to give up: start no attempt under it,
   * and hand it over (`LeaseKeeper.release`) once the attempt in flight ended and its outcomes are written.
   */
  readonly surplus?: boolean;
}

/** What the keeper tells each endpoint it serves after every round. */
export interface LeaseHolder {
  /** The endpoint's identity. */
  readonly name: string;
  /** The lease held now, or undefined when this replica does not hold it (any more). */
  leased(lease: Lease | undefined): void;
}

/** Settings of a `LeaseKeeper`. */
export interface LeaseKeeperOptions {
  pool: pg.Pool;
  replicaId: string;
  /** How long a lease lasts without renewal: the failover bound. */
  leaseDurationMs: number;
  logger: Logger;
  /** Called after every successful round with the pending count per served endpoint (for limits, status, metrics). */
  onPending?: (pending: ReadonlyMap<string, number>) => void;
}

// A lease is renewed three times per duration: two renewals may fail in a row before it runs out.
const ROUNDS_PER_LEASE = 3;
// What this process trusts of a lease is shorter than the database's by this share (at least SAFETY_MIN_MS): the
// clock started before the round was sent, and the server's may run a little faster.
const SAFETY_SHARE = 0.1;
const SAFETY_MIN_MS = 500;
// A round scheduled for a lease running out comes this long after it (the database's clock decides, not ours).
const TAKEOVER_DELAY_MS = 50;

/**
 * The longest attempt a lease of `leaseDurationMs` leaves room for right after a renewal, with a renewal due
 * every third of it: two thirds of the duration, less a second.
 */
export function longestAttemptMs(leaseDurationMs: number): number {
  return leaseDurationMs * (1 - 1 / ROUNDS_PER_LEASE) - 1_000;
}

/**
 * Keeps this replica's delivery leases (api.md section 7): every lease duration / 3 one round in the database
 * (`rn_leases`) says the replica is alive, renews what it holds, claims unowned or expired endpoints up to its
 * fair share among the live replicas and marks what it holds beyond it as surplus (each endpoint hands itself
 * over with `release` once idle), then tells every served endpoint what it holds now. A lease is trusted locally
 * only until the time the round started plus its duration, minus a margin: a replica that was paused or cut off
 * acts on nothing once that passes, whatever the database says later.
 * Rounds that fail (the database is down) leave the local leases to run out; failures are logged once per outage.
 */
export class LeaseKeeper {
  #options: LeaseKeeperOptions;
  #holders = new Map<string, LeaseHolder>();
  #timer: NodeJS.Timeout | undefined;
  #round: Promise<void> | undefined;
  #failing = false;
  #stopped = false;
  // A poke that came while a round ran: that round read the endpoints before it, so another follows at once.
  #again = false;
  #nextExpiryMs: number | undefined;

  constructor(options: LeaseKeeperOptions) {
    this.#options = options;
  }

  /** Whether the last round reached the database. */
  get healthy(): boolean {
    return !this.#failing;
  }

  /** Serves `holder`'s endpoint from the next round on. */
  add(holder: LeaseHolder): void {
    this.#holders.set(holder.name, holder);
    this.poke();
  }

  /** Stops serving the endpoint: the next round releases its lease. */
  remove(holder: LeaseHolder): void {
    if (this.#holders.get(holder.name) === holder) this.#holders.delete(holder.name);
    holder.leased(undefined);
  }

  /** Starts the rounds (the first one at once). */
  start(): void {
    this.poke();
  }

  /** Runs a round soon (a new endpoint should not wait a whole period for its lease). */
  poke(): void {
    if (this.#stopped) return;
    clearTimeout(this.#timer);
    this.#timer = setTimeout(() => void this.#run(), 0);
  }

  /**
   * Hands a surplus endpoint over: releases its lease of `epoch` and tells the other replicas, which claim it at
   * once. Resolves false when the lease was not held any more; rejects when the database could not be reached
   * (the next round marks the endpoint surplus again, and it is tried again).
   */
  async release(name: string, epoch: number): Promise<boolean> {
    const { rows } = await this.#options.pool.query<{ released: boolean }>('SELECT rn_release($1, $2, $3) AS released', [this.#options.replicaId, name, epoch]);
    return rows[0]?.released === true;
  }

  /** Stops the rounds and releases every lease this replica holds (a clean stop hands them over at once). */
  async stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#timer);
    await this.#round;
    for (const holder of this.#holders.values()) holder.leased(undefined);
    this.#holders.clear();
    const { pool, replicaId, leaseDurationMs, logger } = this.#options;
    try {
      await pool.query('SELECT count(*) FROM rn_leases($1, $2, $3)', [replicaId, [], leaseDurationMs]);
      await pool.query('DELETE FROM replicas WHERE id = $1', [replicaId]);
      // The other replicas run a round at once: what this one held is theirs now, not a lease period later.
      await pool.query('SELECT pg_notify($1, $2)', [RELEASED_CHANNEL, replicaId]);
    } catch (error) {
      logger.warn({ error: describeDatabaseError(error) }, 'database: could not release the leases on stop; they expire on their own');
    }
  }

  async #run(): Promise<void> {
    if (this.#stopped) return;
    if (this.#round) {
      this.#again = true;
      return;
    }
    this.#again = false;
    this.#round = this.#once();
    try {
      await this.#round;
    } finally {
      this.#round = undefined;
      // The next round comes at the usual period, or just after the first lease another replica holds on an
      // endpoint this one serves runs out: a replica that died is taken over within the lease duration.
      const period = this.#options.leaseDurationMs / ROUNDS_PER_LEASE;
      // A lease that ran out a while ago and is still not ours (our share is full) is no reason to hurry.
      const expiry = this.#nextExpiryMs;
      const soon = this.#again ? 0 : expiry === undefined || expiry < -period ? period : Math.min(period, Math.max(TAKEOVER_DELAY_MS, expiry + TAKEOVER_DELAY_MS));
      if (!this.#stopped) this.#timer = setTimeout(() => void this.#run(), soon);
    }
  }

  async #once(): Promise<void> {
    const { pool, replicaId, leaseDurationMs, logger, onPending } = this.#options;
    const names = [...this.#holders.keys()];
    const started = performance.now();
    let rows: { endpoint: string; epoch: string; surplus: boolean }[];
    let pending: { name: string; pending: string }[];
    try {
      rows = (await pool.query<{ endpoint: string; epoch: string; surplus: boolean }>('SELECT endpoint, epoch, surplus FROM rn_leases($1, $2, $3)', [replicaId, names, leaseDurationMs])).rows;
      const expiry = await pool.query<{ ms: string | null }>(
        'SELECT ceil(extract(epoch FROM min(lease_until) - now()) * 1000) AS ms FROM endpoints WHERE owner IS NOT NULL AND owner <> $1 AND name = ANY ($2)',
        [replicaId, names],
      );
      const ms = expiry.rows[0]?.ms;
      this.#nextExpiryMs = ms === null || ms === undefined ? undefined : Number(ms);
      pending = (await pool.query<{ name: string; pending: string }>('SELECT e.name, coalesce(q.next_pos, 1) - 1 - e.done AS pending FROM endpoints e LEFT JOIN queues q ON q.name = e.name WHERE e.name = ANY ($1)', [names])).rows;
    } catch (error) {
      if (!this.#failing) logger.error({ error: describeDatabaseError(error) }, 'database: cannot renew the delivery leases; endpoints stop sending when they run out');
      this.#failing = true;
      return;
    }
    if (this.#failing) logger.info('database: delivery leases renewed again');
    this.#failing = false;
    const validUntil = started + leaseDurationMs - Math.max(SAFETY_MIN_MS, leaseDurationMs * SAFETY_SHARE);
    const held = new Map(rows.map((row) => [row.endpoint, row]));
    onPending?.(new Map(pending.map((row) => [row.name, Number(row.pending)])));
    for (const holder of this.#holders.values()) {
      const row = held.get(holder.name);
      holder.leased(row === undefined ? undefined : { epoch: Number(row.epoch), validUntil, ...(row.surplus && { surplus: true }) });
    }
  }
}
