import { SinkClosedError, WriteAbortedError } from './errors.ts';
import type { EndpointStore, QueueWindow } from './queue-store.ts';
import type { QueuedEvent, Sink, WriteOptions } from './sink.ts';

/** What a queue reports; every method is optional and must not throw. */
export interface QueueListener {
  /** `count` events entered the queue. */
  queued?(count: number): void;
  /** `count` events left the queue because it was closed before they were sent (removal or shutdown deadline). */
  discarded?(count: number): void;
  /** The destination threw something other than an abort; the queue waits `retryInMs` and sends again. */
  unexpected?(error: unknown, retryInMs: number): void;
}

/** Settings of an `EventQueue`. */
export interface EventQueueOptions {
  /** Most events handed to the destination in one write; the queue never waits to fill a batch. Default 1. */
  maxBatchEvents?: number;
  /** Starts paused: events are queued but not sent until `resume()`. */
  paused?: boolean;
  listener?: QueueListener;
  /** Told of every batch the destination committed (the journal forgets what was delivered). */
  store?: Pick<EndpointStore, 'ack'>;
}

// After an unexpected destination failure (a bug, not a delivery failure: those are the retrying sink's job),
// wait this long before sending again so a broken destination cannot spin the event loop.
const UNEXPECTED_RETRY_MS = 1000;
// Compact the backing array once this many delivered slots sit in front of the head.
const COMPACT_AFTER = 4096;

/**
 * An unbounded FIFO of committed events in front of a (usually blocking) destination: `push` never blocks and
 * always succeeds until the queue is closed; one consumer sends the oldest events to the destination, one
 * write at a time, so order holds. A batch leaves the queue only after the destination committed it, so
 * nothing is dropped unless the queue is closed with events still in it, and then they are counted
 * (`discarded`). Bounds are the caller's job (the endpoint set checks `pending` before committing).
 */
export class EventQueue implements Sink<QueuedEvent>, QueueWindow {
  #items: (QueuedEvent | undefined)[] = [];
  #head = 0;
  #dst: Sink<QueuedEvent>;
  #maxBatch: number;
  #paused: boolean;
  #listener: QueueListener;
  #store: Pick<EndpointStore, 'ack'> | undefined;
  #closing = false;
  #inflight: AbortController | undefined;
  #wake: (() => void) | undefined;
  #stop = false;
  #drained: (() => void) | undefined;
  #discarded = 0;
  #drainListeners: (() => void)[] = [];
  // Bumped by reset(): the outcome of a write that began before it is ignored (neither acknowledged nor dropped).
  #generation = 0;
  #loop: Promise<void>;

  constructor(dst: Sink<QueuedEvent>, options: EventQueueOptions = {}) {
    this.#dst = dst;
    this.#maxBatch = options.maxBatchEvents ?? 1;
    this.#paused = options.paused ?? false;
    this.#listener = options.listener ?? {};
    this.#store = options.store;
    this.#loop = this.#run();
  }

  /** Events waiting to be sent, including the batch being sent now. */
  get pending(): number {
    return this.#items.length - this.#head;
  }

  /**
   * Appends events that are already committed (numbered by a journal, or accepted in memory), in order, keeping
   * their ids, JSON, `acceptedAt` and `seq`. Throws `SinkClosedError` once closing began.
   */
  push(events: readonly QueuedEvent[]): void {
    if (this.#closing) throw new SinkClosedError('queue');
    if (events.length === 0) return;
    for (const event of events) this.#items.push(event);
    this.#listener.queued?.(events.length);
    this.#wake?.();
  }

  /** `push` as a sink's write: resolves at once; rejects only with `SinkClosedError` once closing began. */
  async write(events: readonly QueuedEvent[], _options?: WriteOptions): Promise<void> {
    this.push(events);
  }

  /**
   * Sends from now on to `dst`: the write in progress is aborted (its uncommitted events stay at the head of
   * the queue and go to `dst` first). Returns the previous destination, which the caller closes.
   */
  setDestination(dst: Sink<QueuedEvent>): Sink<QueuedEvent> {
    const previous = this.#dst;
    this.#dst = dst;
    this.#inflight?.abort();
    return previous;
  }

  /** Calls `listener` now if the queue is empty, and each time it becomes empty (what a store that pages events in waits for). */
  onDrain(listener: () => void): void {
    this.#drainListeners.push(listener);
    if (this.pending === 0) listener();
  }

  /**
   * Forgets every event in memory and aborts the write in flight, whose outcome is then ignored: for a store
   * whose events now belong to another process (a lease taken over). Nothing is acknowledged or discarded.
   */
  reset(): void {
    this.#generation++;
    this.#items = [];
    this.#head = 0;
    this.#inflight?.abort();
  }

  /** Changes the batch size for the next write. */
  setMaxBatchEvents(n: number): void {
    this.#maxBatch = n;
  }

  /** Stops sending (events keep queueing); the write in progress is aborted and its events stay queued. */
  pause(): void {
    this.#paused = true;
    this.#inflight?.abort();
  }

  /** Resumes sending after `pause`. */
  resume(): void {
    this.#paused = false;
    this.#wake?.();
  }

  /** Events that were still queued when `close` gave up on them (0 before close). */
  get discarded(): number {
    return this.#discarded;
  }

  /** Whether `close` began: pushes are refused from now on. */
  get closing(): boolean {
    return this.#closing;
  }

  /** Whether sending is paused. */
  get paused(): boolean {
    return this.#paused;
  }

  /**
   * Refuses new writes, keeps sending until the queue is empty or `signal` aborts, then discards what is left
   * (reported through `discarded`) and closes the destination. A second close rejects with `SinkClosedError`.
   */
  async close(options: { signal?: AbortSignal } = {}): Promise<void> {
    if (this.#closing) throw new SinkClosedError('queue');
    this.#closing = true;
    const { signal } = options;
    if (this.pending > 0 && !this.#paused && !signal?.aborted) {
      await new Promise<void>((resolve) => {
        this.#drained = resolve;
        signal?.addEventListener('abort', () => resolve(), { once: true });
      });
    }
    this.#stop = true;
    this.#inflight?.abort();
    this.#wake?.();
    await this.#loop;
    this.#discarded = this.pending;
    this.#items = [];
    this.#head = 0;
    if (this.#discarded > 0) this.#listener.discarded?.(this.#discarded);
    await this.#dst.close().catch(() => {});
  }

  async #run(): Promise<void> {
    while (!this.#stop) {
      if (this.pending === 0 || this.#paused) {
        if (this.pending === 0) {
          this.#drained?.();
          for (const listener of this.#drainListeners) listener();
          if (this.pending > 0) continue; // a listener pushed more at once
        }
        await new Promise<void>((resolve) => (this.#wake = resolve));
        this.#wake = undefined;
        continue;
      }
      const batch = this.#items.slice(this.#head, this.#head + Math.min(this.#maxBatch, this.pending)) as QueuedEvent[];
      const inflight = new AbortController();
      this.#inflight = inflight;
      const dst = this.#dst;
      const generation = this.#generation;
      try {
        await dst.write(batch, { signal: inflight.signal });
        if (generation !== this.#generation) continue;
        this.#store?.ack(batch);
        this.#drop(batch.length);
      } catch (error) {
        if (generation !== this.#generation) continue;
        if (error instanceof WriteAbortedError) {
          this.#drop(error.settled);
        } else if (!this.#stop && dst === this.#dst) {
          this.#listener.unexpected?.(error, UNEXPECTED_RETRY_MS);
          await new Promise<void>((resolve) => {
            const timer = setTimeout(resolve, UNEXPECTED_RETRY_MS);
            this.#wake = () => (clearTimeout(timer), resolve());
          });
          this.#wake = undefined;
        }
      } finally {
        this.#inflight = undefined;
      }
    }
  }

  #drop(n: number): void {
    for (let i = 0; i < n; i++) this.#items[this.#head + i] = undefined;
    this.#head += n;
    if (this.#head >= COMPACT_AFTER && this.#head * 2 >= this.#items.length) {
      this.#items = this.#items.slice(this.#head);
      this.#head = 0;
    }
  }
}
