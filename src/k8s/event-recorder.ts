import type { Logger } from 'pino';
import type { ClusterApi, NotificationEndpointObject } from './cluster-api.ts';
import { describeApiError } from './errors.ts';

/** Settings of an `EventRecorder`. */
export interface EventRecorderOptions {
  /** Where Events are sent: only `recordEvent` is used. */
  api: Pick<ClusterApi, 'recordEvent'>;
  logger: Logger;
  /** Events waiting to be sent at most (those in flight not counted); more are dropped. Default 1000, as client-go's. */
  maxQueued?: number;
  /** Events sent side by side at most (never two of one object). Default 2. */
  senders?: number;
  /** Drops are logged at most once per this many milliseconds (with how many since the last line). Default 10 s. */
  dropWarningIntervalMs?: number;
}

// client-go's EventBroadcaster buffers 1000 Events and drops beyond that: Events are best effort, and an
// outage of the API server must not grow this process's memory with them.
const MAX_QUEUED = 1000;
// Events are told after the status they describe is written; a couple of requests at a time is plenty (one
// Event per transition) and leaves the API server to status writes and reconciles.
const SENDERS = 2;
const DROP_WARNING_INTERVAL_MS = 10_000;

interface PendingEvent {
  object: NotificationEndpointObject;
  type: 'Normal' | 'Warning';
  reason: string;
  message: string;
}

/**
 * Sends Kubernetes Events off the caller's path, after client-go's EventBroadcaster: `record` queues and returns
 * at once, a few senders drain the queue, and the Events of one object are sent one after the other in the order
 * they were recorded. The queue is bounded: when full, an Event is dropped, counted in `dropped` and logged (at
 * most once per interval). Send failures are logged, never retried: Events are best effort.
 */
export class EventRecorder {
  #options: EventRecorderOptions;
  /** Events not sent yet, per object key (`namespace/name`), oldest first. */
  #pending = new Map<string, PendingEvent[]>();
  /** Keys with an Event waiting and none in flight, in the order they became so (a key at a time keeps each object's order). */
  #ready: string[] = [];
  #inFlight = new Set<string>();
  #queued = 0;
  #dropped = 0;
  #unreported = 0;
  #unreportedWhy = '';
  #lastDropWarning = -Infinity;
  #stopped = false;
  #idle: (() => void)[] = [];

  constructor(options: EventRecorderOptions) {
    this.#options = options;
  }

  /** Events dropped so far (the queue was full, or the recorder stopped). */
  get dropped(): number {
    return this.#dropped;
  }

  /** Events waiting to be sent now, not counting those in flight. */
  get queued(): number {
    return this.#queued;
  }

  /** Queues an Event about `object` and returns at once; drops it (counted, logged at most once per interval) when the queue is full or the recorder stopped. */
  record(object: NotificationEndpointObject, type: 'Normal' | 'Warning', reason: string, message: string): void {
    if (this.#stopped || this.#queued >= (this.#options.maxQueued ?? MAX_QUEUED)) {
      this.#drop(1, this.#stopped ? 'recorder stopped' : 'queue full');
      return;
    }
    const key = `${object.metadata?.namespace ?? ''}/${object.metadata?.name ?? ''}`;
    let events = this.#pending.get(key);
    if (!events) {
      this.#pending.set(key, (events = []));
      if (!this.#inFlight.has(key)) this.#ready.push(key);
    }
    events.push({ object, type, reason, message });
    this.#queued += 1;
    this.#pump();
  }

  /** Resolves once nothing is queued or in flight. */
  whenIdle(): Promise<void> {
    if (this.#queued === 0 && this.#inFlight.size === 0) return Promise.resolve();
    return new Promise((resolve) => this.#idle.push(resolve));
  }

  /**
   * Stops taking Events and sends what is queued for at most `budgetMs`; what is still queued then is dropped
   * (counted and logged). Resolves with how many were dropped so; sends in flight at the deadline are not waited for.
   */
  async stop(budgetMs: number): Promise<number> {
    this.#stopped = true;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([this.whenIdle(), new Promise<void>((resolve) => (timer = setTimeout(resolve, Math.max(0, budgetMs))))]);
    clearTimeout(timer);
    const left = this.#queued;
    this.#pending.clear();
    this.#ready = [];
    this.#queued = 0;
    if (left > 0) this.#drop(left, 'shutdown budget spent', true);
    else if (this.#unreported > 0) this.#warnDrops(true);
    return left;
  }

  #pump(): void {
    const senders = this.#options.senders ?? SENDERS;
    while (this.#inFlight.size < senders && this.#ready.length > 0) void this.#send(this.#ready.shift()!);
  }

  async #send(key: string): Promise<void> {
    const events = this.#pending.get(key);
    const event = events?.shift();
    if (!events || !event) return;
    if (events.length === 0) this.#pending.delete(key);
    this.#queued -= 1;
    this.#inFlight.add(key);
    try {
      await this.#options.api.recordEvent(event.object, event.type, event.reason, event.message);
    } catch (error) {
      this.#options.logger.warn({ endpoint: key, reason: event.reason, error: describeApiError(error) }, 'could not record event');
    }
    this.#inFlight.delete(key);
    // The object's next Event (if any) goes behind the other objects waiting: one busy object does not starve them.
    if (this.#pending.has(key)) this.#ready.push(key);
    this.#pump();
    if (this.#queued === 0 && this.#inFlight.size === 0) for (const resolve of this.#idle.splice(0)) resolve();
  }

  #drop(n: number, why: string, force = false): void {
    this.#dropped += n;
    this.#unreported += n;
    this.#unreportedWhy = why;
    this.#warnDrops(force);
  }

  // A counted line at most once per interval, so a full queue in an outage does not flood the log.
  #warnDrops(force: boolean): void {
    const interval = this.#options.dropWarningIntervalMs ?? DROP_WARNING_INTERVAL_MS;
    const now = performance.now();
    if (!force && now - this.#lastDropWarning < interval) return;
    this.#options.logger.warn({ dropped: this.#unreported, droppedTotal: this.#dropped, why: this.#unreportedWhy }, 'Kubernetes Events dropped');
    this.#unreported = 0;
    this.#lastDropWarning = now;
  }
}
