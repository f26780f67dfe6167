import { HttpStatusError, SinkClosedError, WriteAbortedError } from './errors.ts';
import type { RetryStrategy } from './retry.ts';
import { timerDelay } from './timer-delay.ts';
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

/** The real clock: `Date.now` and a timer that an AbortSignal cancels (a sleep longer than `MAX_TIMER_MS` ends after that long). */
export const systemClock: Clock = {
  now: Date.now,
  sleep: (ms, signal) =>
    new Promise((resolve, reject) => {
      if (signal.aborted) return reject(signal.reason);
      const onAbort = (): void => {
        clearTimeout(timer);
        reject(signal.reason);
      };
      // Capped: a longer wait ends early, and the caller (the retry loop) measures again and waits the rest.
      const timer = setTimeout(() => {
        signal.removeEventListener('abort', onAbort);
        resolve();
      }, timerDelay(ms));
      signal.addEventListener('abort', onAbort, { once: true });
    }),
};

/** What a 4xx answer does: `Retry` it like any failure (Distribution), or `DeadLetter` the events at once. */
export type ClientErrorPolicy = 'Retry' | 'DeadLetter';

/** Settings of a `RetryingSink`. */
export interface RetryingSinkOptions {
  budget?: RetryBudget;
  /** Receives events that ran out of budget, with the reason; they count as committed. */
  deadLetter?: (events: readonly QueuedEvent[], reason: string) => void;
  /** Asked before each attempt; the attempt starts once it resolves (it resolves early when `signal` aborts). */
  permit?: (signal: AbortSignal) => Promise<void>;
  /** Told after each attempt, answered or not, before the write goes on (or returns); also when a permit's attempt is not made. */
  attempted?: () => void;
  clock?: Clock;
  /**
   * `DeadLetter`: an `HttpStatusError` 4xx other than 408, 409, 425 and 429 dead-letters the attempt's events at
   * once, without spending budget or telling the strategy (the receiver is up; the events are what it refuses).
   * Default `Retry`.
   */
  clientErrors?: ClientErrorPolicy;
  /** Cap of a receiver's `Retry-After` (`HttpStatusError.retryAfterMs`); default 5 minutes, as `retry.maxBackoff`. */
  maxRetryAfterMs?: number;
  /**
   * After failing this long without a single success (from the start of the first failed attempt; dead-lettered
   * events are no success), `disable` is called once: when an attempt fails past that time, or when a write's
   * wait between retries reaches it (the next attempt is not made); 0 (default) never. A write that comes after
   * an idle spell makes its first attempt whatever the time.
   */
  disableAfterMs?: number;
  /** Told that `disableAfterMs` passed; the caller stops the sink by aborting the write (the queue pauses). */
  disable?: (reason: string) => void;
}

/** 4xx answers that say "later" or "not like this, now" rather than "never": retried even with `DeadLetter`. */
const RETRIED_CLIENT_ERRORS: ReadonlySet<number> = new Set([408, 409, 425, 429]);
// retry.maxBackoff's default: a Retry-After longer than this is not waited in full unless the spec says so.
const DEFAULT_MAX_RETRY_AFTER_MS = 5 * 60_000;

/**
 * Blocks each write until the destination accepts it, asking the strategy when to try again: the write
 * resolves once every event was delivered or dead-lettered, so a queue in front never loses an event. Events
 * leave the batch only from its head (older first), so what was committed is always a prefix. A receiver's
 * `Retry-After` (429, 503) makes the next attempt wait that long (capped) when the strategy would go sooner.
 * Aborting the write's signal stops it before the next attempt (an attempt in flight is let finish) with
 * `WriteAbortedError`. Closing rejects writes that are waiting with `SinkClosedError`.
 */
export class RetryingSink implements Sink<QueuedEvent> {
  #dst: Sink<QueuedEvent>;
  #strategy: RetryStrategy;
  #budget: RetryBudget;
  #deadLetter: (events: readonly QueuedEvent[], reason: string) => void;
  #permit: ((signal: AbortSignal) => Promise<void>) | undefined;
  #attempted: () => void;
  #clock: Clock;
  #clientErrors: ClientErrorPolicy;
  #maxRetryAfterMs: number;
  #disableAfterMs: number;
  #disable: (reason: string) => void;
  #closed = new AbortController();
  /** Not before this time (a receiver's Retry-After), whatever the strategy says; 0 = no such wait. */
  #notBefore = 0;
  /** Start of the first failed attempt since the last success; undefined while the last attempt succeeded. */
  #failingSince: number | undefined;
  /** `disable` was called for the current failing streak. */
  #disabled = false;
  /** What the last failed attempt threw, for `disable`'s reason. */
  #lastError: unknown;

  constructor(dst: Sink<QueuedEvent>, strategy: RetryStrategy, options: RetryingSinkOptions = {}) {
    this.#dst = dst;
    this.#strategy = strategy;
    this.#budget = options.budget ?? { maxAttempts: 0, maxAgeMs: 0 };
    this.#deadLetter = options.deadLetter ?? (() => {});
    this.#permit = options.permit;
    this.#attempted = options.attempted ?? (() => {});
    this.#clock = options.clock ?? systemClock;
    this.#clientErrors = options.clientErrors ?? 'Retry';
    this.#maxRetryAfterMs = options.maxRetryAfterMs ?? DEFAULT_MAX_RETRY_AFTER_MS;
    this.#disableAfterMs = options.disableAfterMs ?? 0;
    this.#disable = options.disable ?? (() => {});
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
      const now = this.#clock.now();
      // Only while this write retries: a write that comes after a pause makes its first attempt, whose failure
      // (past the deadline) stops the endpoint below; a success ends the streak.
      const disableIn = lastError === undefined ? Number.POSITIVE_INFINITY : this.#disableIn(now);
      if (disableIn === 0) {
        this.#stop();
        continue; // the caller aborts the write now; if it does not, delivery goes on
      }
      const wait = Math.max(this.#strategy.proceed(now), this.#notBefore - now);
      if (wait > 0) {
        const stop = either(options.signal, this.#closed.signal);
        try {
          await this.#clock.sleep(Math.min(wait, disableIn), stop.signal).catch(() => {});
        } finally {
          stop.dispose();
        }
        continue;
      }
      if (this.#permit) {
        const stop = either(options.signal, this.#closed.signal);
        try {
          await this.#permit(stop.signal);
        } finally {
          stop.dispose();
        }
        if (options.signal?.aborted || this.#closed.signal.aborted) {
          this.#attempted(); // the attempt the permit allowed is not made
          continue; // the checks at the top end the write
        }
      }
      const started = this.#clock.now();
      try {
        try {
          await this.#dst.write(batch);
        } finally {
          this.#attempted();
        }
        this.#strategy.success();
        this.#notBefore = 0;
        this.#failingSince = undefined;
        this.#disabled = false;
        return;
      } catch (error) {
        if (error instanceof SinkClosedError) throw error;
        lastError = error;
        this.#lastError = error;
        this.#failingSince ??= started;
        const failedAt = this.#clock.now();
        const due = this.#disableIn(failedAt) === 0;
        if (this.#refused(error)) {
          this.#deadLetter(batch, `${describe(error)}: a client error, not retried (retry.clientErrors: DeadLetter)`);
          if (due) this.#stop();
          return;
        }
        if (due) this.#stop();
        attempts++;
        this.#strategy.failure(failedAt);
        const asked = error instanceof HttpStatusError ? error.retryAfterMs : undefined;
        this.#notBefore = asked === undefined ? 0 : failedAt + Math.min(asked, this.#maxRetryAfterMs);
        batch = this.#spend(batch, attempts, error);
      }
    }
  }

  /** Calls `disable` once for the current failing streak. */
  #stop(): void {
    this.#disabled = true;
    this.#disable(`failing without a success for ${this.#disableAfterMs}ms (retry.disableAfter); last: ${describe(this.#lastError)}`);
  }

  /** Milliseconds until `disable` is due (0: now), or Infinity when it is off, not failing, or already called. */
  #disableIn(now: number): number {
    if (this.#disableAfterMs <= 0 || this.#failingSince === undefined || this.#disabled) return Number.POSITIVE_INFINITY;
    return Math.max(0, this.#failingSince + this.#disableAfterMs - now);
  }

  /** Whether `error` is a 4xx that `clientErrors: DeadLetter` gives up on at once. */
  #refused(error: unknown): boolean {
    return this.#clientErrors === 'DeadLetter' && error instanceof HttpStatusError &&
      error.status >= 400 && error.status < 500 && !RETRIED_CLIENT_ERRORS.has(error.status);
  }

  /** Dead-letters the head of the batch that ran out of budget and returns the rest. */
  #spend(batch: readonly QueuedEvent[], attempts: number, error: unknown): readonly QueuedEvent[] {
    const { maxAttempts, maxAgeMs } = this.#budget;
    const why = describe(error);
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

function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/**
 * A signal that aborts when `a` or `b` does, and `dispose` to let go of it. Not `AbortSignal.any()`: that one
 * registers a weak dependant on the long-lived close signal at every call, 17-35 µs each with the collections it
 * causes, a tenth of a delivery's CPU; two listeners removed right after cost a microsecond or two.
 */
function either(a: AbortSignal | undefined, b: AbortSignal): { signal: AbortSignal; dispose(): void } {
  if (!a) return { signal: b, dispose: () => {} };
  const both = new AbortController();
  if (a.aborted || b.aborted) {
    both.abort(a.aborted ? a.reason : b.reason);
    return { signal: both.signal, dispose: () => {} };
  }
  const onA = (): void => both.abort(a.reason);
  const onB = (): void => both.abort(b.reason);
  a.addEventListener('abort', onA, { once: true });
  b.addEventListener('abort', onB, { once: true });
  return {
    signal: both.signal,
    dispose: () => {
      a.removeEventListener('abort', onA);
      b.removeEventListener('abort', onB);
    },
  };
}
