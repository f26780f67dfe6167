import type { Logger } from 'pino';
import { realDelay, type Delay } from './backoff.ts';
import { describeApiError, statusCode } from './errors.ts';

/** What a `coordination.k8s.io/v1` Lease says about its holder (client-go's LeaderElectionRecord). */
export interface LeaseRecord {
  holderIdentity: string;
  leaseDurationSeconds: number;
  acquireTime: Date;
  renewTime: Date;
  leaseTransitions: number;
}

/** The lock's raw state as last read: the record and the resourceVersion an update must match. */
export interface ObservedLease {
  readonly record: LeaseRecord;
  readonly resourceVersion: string;
}

/**
 * Where the election record lives (a Lease object, or a fake in tests). `update` must fail when the object's
 * resourceVersion is no longer `resourceVersion` (HTTP 409), `create` when the object already exists: that
 * optimistic concurrency is what lets at most one candidate win a round.
 */
export interface LeaseLock {
  /** The record and its resourceVersion, or undefined when the Lease does not exist. */
  get(): Promise<ObservedLease | undefined>;
  /** Creates the Lease; resolves with its resourceVersion. */
  create(record: LeaseRecord): Promise<string>;
  /** Replaces the record if the Lease is still at `resourceVersion`; resolves with the new resourceVersion. */
  update(record: LeaseRecord, resourceVersion: string): Promise<string>;
  /** `namespace/name`, for logs. */
  readonly description: string;
}

/** Settings of a `LeaderElector`; the durations default to client-go's (15 s, 10 s, 2 s). */
export interface LeaderElectionOptions {
  lock: LeaseLock;
  /** This candidate's identity (the pod's name). */
  identity: string;
  leaseDurationMs?: number;
  renewDeadlineMs?: number;
  retryPeriodMs?: number;
  /** Called when this candidate becomes the leader. */
  onStartedLeading?: () => void;
  /** Called when it stops being the leader (lost the lease, or released it). */
  onStoppedLeading?: () => void;
  logger?: Logger;
  now?: () => number;
  delay?: Delay;
}

// client-go's JitterFactor for the acquire loop: waits are RetryPeriod × (1 + random · 1.2).
const JITTER = 1.2;

/**
 * Leader election on a Lease, client-go's algorithm: a candidate takes the lease when it does not exist, is
 * released (no holder), or has not changed for its duration as observed by this candidate's own clock (never
 * the record's timestamps, so clock skew between nodes does not matter); the leader renews every retry period
 * and gives up leadership when it could not renew within the renew deadline, before the lease can expire for
 * the others. Updates carry the resourceVersion read, so two candidates never both win a round. Like
 * client-go's, this bounds overlap by timing, not fencing: `isLeader` is false from the moment a renewal is
 * overdue, and callers check it before each write.
 */
export class LeaderElector {
  #options: Required<Omit<LeaderElectionOptions, 'logger' | 'onStartedLeading' | 'onStoppedLeading'>> & Pick<LeaderElectionOptions, 'logger' | 'onStartedLeading' | 'onStoppedLeading'>;
  #observed: ObservedLease | undefined;
  #observedAt = 0;
  #leading = false;
  #renewedAt = 0;
  #failing = false;
  #stop = new AbortController();
  #loop: Promise<void> | undefined;

  constructor(options: LeaderElectionOptions) {
    this.#options = {
      leaseDurationMs: 15_000,
      renewDeadlineMs: 10_000,
      retryPeriodMs: 2_000,
      now: Date.now,
      delay: realDelay,
      ...options,
    };
    const { leaseDurationMs, renewDeadlineMs, retryPeriodMs } = this.#options;
    if (!(leaseDurationMs > renewDeadlineMs && renewDeadlineMs > retryPeriodMs * JITTER && retryPeriodMs > 0)) {
      throw new RangeError(`leader election needs lease duration > renew deadline > ${JITTER} × retry period > 0 (got ${leaseDurationMs}, ${renewDeadlineMs}, ${retryPeriodMs} ms)`);
    }
  }

  /** Whether this candidate leads now: it holds the lease and renewed it within the renew deadline. */
  get isLeader(): boolean {
    return this.#leading && this.#options.now() - this.#renewedAt < this.#options.renewDeadlineMs;
  }

  /** The identity the lease names as holder, as last observed (empty when none). */
  get leader(): string {
    return this.#observed?.record.holderIdentity ?? '';
  }

  /** Starts campaigning in the background: acquire, lead while renewals succeed, then campaign again. Idempotent. */
  start(): void {
    this.#loop ??= this.#run();
  }

  /**
   * Stops campaigning; a leader releases the lease (no holder, duration 1 s) so another candidate takes over
   * at once instead of after the lease duration. Resolves when done; idempotent.
   */
  async stop(): Promise<void> {
    this.#stop.abort();
    await this.#loop;
    if (this.#leading && this.#observed) {
      const now = new Date(this.#options.now());
      const released: LeaseRecord = { ...this.#observed.record, holderIdentity: '', leaseDurationSeconds: 1, acquireTime: now, renewTime: now };
      await this.#options.lock.update(released, this.#observed.resourceVersion).catch((error: unknown) => {
        this.#options.logger?.warn({ lease: this.#options.lock.description, error: describeApiError(error) }, 'leader election: releasing the lease failed; it expires on its own');
      });
    }
    this.#setLeading(false);
  }

  async #run(): Promise<void> {
    const { retryPeriodMs, renewDeadlineMs, delay, now } = this.#options;
    const signal = this.#stop.signal;
    while (!signal.aborted) {
      // Acquire: try every retry period (jittered) until the lease is ours.
      while (!signal.aborted && !(await this.#tryAcquireOrRenew())) {
        await delay(retryPeriodMs * (1 + Math.random() * JITTER), signal);
      }
      if (signal.aborted) return;
      this.#renewedAt = now();
      this.#setLeading(true);
      // Renew: every retry period; each renewal may retry until the renew deadline, then leadership is lost.
      while (!signal.aborted) {
        await delay(retryPeriodMs, signal);
        if (signal.aborted) return;
        let renewed = false;
        while (!signal.aborted && now() - this.#renewedAt < renewDeadlineMs) {
          if ((renewed = await this.#tryAcquireOrRenew())) break;
          await delay(retryPeriodMs, signal);
        }
        if (signal.aborted) return;
        if (!renewed) break;
        this.#renewedAt = now();
      }
      this.#options.logger?.warn({ lease: this.#options.lock.description, identity: this.#options.identity }, 'leader election: could not renew within the deadline; leadership lost');
      this.#setLeading(false);
    }
  }

  /** One round of client-go's tryAcquireOrRenew: whether this candidate holds the lease afterwards. */
  async #tryAcquireOrRenew(): Promise<boolean> {
    const { lock, identity, leaseDurationMs, now, logger } = this.#options;
    const at = new Date(now());
    const mine: LeaseRecord = {
      holderIdentity: identity,
      leaseDurationSeconds: Math.ceil(leaseDurationMs / 1000),
      acquireTime: at,
      renewTime: at,
      leaseTransitions: 0,
    };
    try {
      const current = await lock.get();
      if (this.#failing) logger?.info({ lease: lock.description }, 'leader election: the lease is reachable again');
      this.#failing = false;
      if (!current) {
        this.#observe({ record: mine, resourceVersion: await lock.create(mine) });
        return true;
      }
      if (!this.#observed || this.#observed.resourceVersion !== current.resourceVersion) this.#observe(current);
      const held = current.record.holderIdentity !== '' && current.record.holderIdentity !== identity;
      const valid = this.#observedAt + current.record.leaseDurationSeconds * 1000 > now();
      if (held && valid) return false;
      const record: LeaseRecord = current.record.holderIdentity === identity
        ? { ...mine, acquireTime: current.record.acquireTime, leaseTransitions: current.record.leaseTransitions }
        : { ...mine, leaseTransitions: current.record.leaseTransitions + 1 };
      this.#observe({ record, resourceVersion: await lock.update(record, current.resourceVersion) });
      return true;
    } catch (error) {
      // A conflict is another candidate winning the round: normal. Anything else is said once per failing streak.
      if (statusCode(error) !== 409) {
        if (!this.#failing) logger?.warn({ lease: lock.description, error: describeApiError(error) }, 'leader election: cannot read or write the lease; retrying');
        this.#failing = true;
      }
      return false;
    }
  }

  #observe(observed: ObservedLease): void {
    this.#observed = observed;
    this.#observedAt = this.#options.now();
  }

  #setLeading(leading: boolean): void {
    if (leading === this.#leading) return;
    this.#leading = leading;
    const { logger, lock, identity } = this.#options;
    logger?.info({ lease: lock.description, identity }, leading ? 'leader election: leading' : 'leader election: stopped leading');
    (leading ? this.#options.onStartedLeading : this.#options.onStoppedLeading)?.();
  }
}
