/**
 * Retry strategies (after docker/go-events): a small interface the retrying sink asks before each attempt and
 * tells about each outcome. Both implementations are deterministic given the clock and random source passed in.
 */

/** Decides when the next attempt may start. */
export interface RetryStrategy {
  /** Milliseconds to wait before the next attempt may start; 0 means go now. */
  proceed(now: number): number;
  /** The last attempt succeeded. */
  success(): void;
  /** The last attempt failed at `now`. */
  failure(now: number): void;
  /** Consecutive failed attempts since the last success. */
  readonly failures: number;
}

/**
 * Distribution's breaker: up to `threshold` attempts in a row go out at once; after that many failures it
 * trips, and the next attempt waits until `backoffMs` after the last failure. A success resets it.
 */
export class BreakerStrategy implements RetryStrategy {
  #threshold: number;
  #backoffMs: number;
  #failures = 0;
  #lastFailure = 0;

  constructor(threshold: number, backoffMs: number) {
    this.#threshold = threshold;
    this.#backoffMs = backoffMs;
  }

  get failures(): number {
    return this.#failures;
  }

  proceed(now: number): number {
    if (this.#failures < this.#threshold) return 0;
    return Math.max(0, this.#lastFailure + this.#backoffMs - now);
  }

  success(): void {
    this.#failures = 0;
  }

  failure(now: number): void {
    this.#failures++;
    this.#lastFailure = now;
  }
}

/**
 * Exponential backoff with full jitter: after the n-th failure in a row, the next attempt waits a uniformly
 * random time in [0, min(maxMs, baseMs * 2^(n-1))]. A success resets it.
 */
export class ExponentialStrategy implements RetryStrategy {
  #baseMs: number;
  #maxMs: number;
  #random: () => number;
  #failures = 0;
  #notBefore = 0;

  constructor(baseMs: number, maxMs: number, random: () => number = Math.random) {
    this.#baseMs = baseMs;
    this.#maxMs = maxMs;
    this.#random = random;
  }

  get failures(): number {
    return this.#failures;
  }

  proceed(now: number): number {
    return Math.max(0, this.#notBefore - now);
  }

  success(): void {
    this.#failures = 0;
    this.#notBefore = 0;
  }

  failure(now: number): void {
    this.#failures++;
    // 2 ** 1024 is Infinity, which min() caps; no overflow to worry about.
    const ceiling = Math.min(this.#maxMs, this.#baseMs * 2 ** (this.#failures - 1));
    this.#notBefore = now + Math.floor(this.#random() * ceiling);
  }
}
