import { SinkClosedError, WriteAbortedError } from './errors.ts';
import type { RetryStrategy } from './retry.ts';
import type { QueuedEvent, Sink, WriteOptions } from './sink.ts';

/** When to give up on an event: both limits off (0) means retry forever, as Distribution does. */
export interface RetryBudget {
  /** Failed attempts after which an event is dead-lettered; 0 = no limit. */
  maxAttempts: number;
  /** Age since acceptance after which a failing event is dead-lettered; 0 = no limit. */
  maxAgeMs: number;
}

/** Time as the retrying sink sees it; injectable so tests run without real waiting. */
export interface Clock {
  now(): number;
  /** Resolves after `ms`, or rejects as soon as `signal` aborts. */
  sleep(ms: number, signal: AbortSignal): Promise<void>;
}

/** The real clock: `Date.now` and a timer that an AbortSignal cancels. */
export const systemClock: Clock = {
  now: Date.now,
  sleep: (ms, signal) =>
    new Promise((resolve, reject) => {
      if (signal.aborted) return reject(signal.reason);
      const onAbort = (): void => {
        clearTimeout(timer);
        reject(signal.reason);
      };
      const timer = setTimeout(() => {
        signal.removeEventListener('abort', onAbort);
        resolve();
      }, ms);
      signal.addEventListener('abort', onAbort, { once: true });
    }),
};

/** Settings of a `RetryingSink`. */
export interface RetryingSinkOptions {
  budget?: RetryBudget;
  /** Receives events that ran out of budget, with the reason; they count as committed. */
  deadLetter?: (events: readonly QueuedEvent[], reason: string) => void;
  /** Asked before each attempt; the attempt starts once it resolves (it resolves early when `signal` aborts). */
  permit?: (signal: AbortSignal) => Promise<void>;
  clock?: Clock;
}

/**
 * Blocks each write until the destination accepts it, asking the strategy when to try again: the write
 * resolves once every event was delivered or dead-lettered, so a queue in front never loses an event. Events
 * leave the batch only from its head (older first), so what was committed is always a prefix. Aborting the
 * write's signal stops it before the next attempt (an attempt in flight is let finish) with
 * `WriteAbortedError`. Closing rejects writes that are waiting with `SinkClosedError`.
 */
export class RetryingSink implements Sink<QueuedEvent> {
  #dst: Sink<QueuedEvent>;
  #strategy: RetryStrategy;
  #budget: RetryBudget;
  #deadLetter: (events: readonly QueuedEvent[], reason: string) => void;
  #permit: ((signal: AbortSignal) => Promise<void>) | undefined;
  #clock: Clock;
  #closed = new AbortController();

  constructor(dst: Sink<QueuedEvent>, strategy: RetryStrategy, options: RetryingSinkOptions = {}) {
    this.#dst = dst;
    this.#strategy = strategy;
    this.#budget = options.budget ?? { maxAttempts: 0, maxAgeMs: 0 };
    this.#deadLetter = options.deadLetter ?? (() => {});
    this.#permit = options.permit;
    this.#clock = options.clock ?? systemClock;
  }

  /** Consecutive failed attempts since the last success. */
  get failures(): number {
    return this.#strategy.failures;
  }

  async write(items: readonly QueuedEvent[], options: WriteOptions = {}): Promise<void> {
    let batch = items;
    let attempts = 0;
    let lastError: unknown;
    while (batch.length > 0) {
      // The caller's abort wins over close: a queue that switched destination (and closed the old one) must
      // learn how much was settled, not that the old sink is gone.
      if (options.signal?.aborted) throw new WriteAbortedError(items.length - batch.length, lastError);
      if (this.#closed.signal.aborted) throw new SinkClosedError('retrying sink');
      const wait = this.#strategy.proceed(this.#clock.now());
      if (wait > 0) {
        // Combined only when there is a wait: AbortSignal.any() on every write registers weak dependants on the
        // long-lived close signal, a cost on each delivery for a value only the sleep needs.
        const stop = options.signal ? AbortSignal.any([options.signal, this.#closed.signal]) : this.#closed.signal;
        await this.#clock.sleep(wait, stop).catch(() => {});
        continue;
      }
      if (this.#permit) {
        await this.#permit(options.signal ? AbortSignal.any([options.signal, this.#closed.signal]) : this.#closed.signal);
        if (options.signal?.aborted || this.#closed.signal.aborted) continue; // the checks at the top end the write
      }
      try {
        await this.#dst.write(batch);
        this.#strategy.success();
        return;
      } catch (error) {
        if (error instanceof SinkClosedError) throw error;
        lastError = error;
        attempts++;
        this.#strategy.failure(this.#clock.now());
        batch = this.#spend(batch, attempts, error);
      }
    }
  }

  /** Dead-letters the head of the batch that ran out of budget and returns the rest. */
  #spend(batch: readonly QueuedEvent[], attempts: number, error: unknown): readonly QueuedEvent[] {
    const { maxAttempts, maxAgeMs } = this.#budget;
    const why = error instanceof Error ? error.message : String(error);
    if (maxAttempts > 0 && attempts >= maxAttempts) {
      this.#deadLetter(batch, `gave up after ${attempts} attempts; last: ${why}`);
      return [];
    }
    if (maxAgeMs > 0) {
      const now = this.#clock.now();
      let expired = 0;
      while (expired < batch.length && now - batch[expired]!.acceptedAt > maxAgeMs) expired++;
      if (expired > 0) {
        this.#deadLetter(batch.slice(0, expired), `older than ${maxAgeMs}ms after ${attempts} attempts; last: ${why}`);
        return batch.slice(expired);
      }
    }
    return batch;
  }

  /** Rejects waiting writes and closes the destination; a second close rejects with `SinkClosedError`. */
  async close(): Promise<void> {
    if (this.#closed.signal.aborted) throw new SinkClosedError('retrying sink');
    this.#closed.abort();
    await this.#dst.close();
  }
}
