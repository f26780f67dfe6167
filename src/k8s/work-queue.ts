import type { Logger } from 'pino';
import { backoffMs, realDelay, type Delay } from './backoff.ts';
import { describeApiError } from './errors.ts';

/** What one reconcile asks for: nothing, or to run again after a while even if nothing changes. */
export interface ReconcileResult {
  requeueAfterMs?: number;
}

/** Settings of a `WorkQueue`. */
export interface WorkQueueOptions {
  /** Reconciles one key; a rejection is retried with per-key backoff. */
  handler: (key: string) => Promise<ReconcileResult | void>;
  logger: Logger;
  /** Keys reconciled at the same time (different keys only). Default 4. */
  concurrency?: number;
  /** Retry backoff after failures; defaults 1 s doubling to 5 min. */
  backoff?: { baseMs: number; maxMs: number };
  delay?: Delay;
  random?: () => number;
}

/**
 * A per-object work queue keyed by `namespace/name` (after client-go's): at most one reconcile per key in
 * flight; keys added while queued collapse into one, and a key added while it is being reconciled runs once
 * more afterwards. Failures are retried per key with capped exponential backoff; a success resets the key.
 */
export class WorkQueue {
  #options: WorkQueueOptions;
  #queue: string[] = [];
  #queued = new Set<string>();
  #active = new Set<string>();
  #dirty = new Set<string>();
  #failures = new Map<string, number>();
  #timers = new Map<string, AbortController>();
  #running = 0;
  #stopped = false;
  #idle: (() => void)[] = [];

  constructor(options: WorkQueueOptions) {
    this.#options = options;
  }

  /** Queues the key now (cancelling a delayed retry of it). */
  add(key: string): void {
    if (this.#stopped) return;
    this.#timers.get(key)?.abort();
    this.#timers.delete(key);
    if (this.#active.has(key)) {
      this.#dirty.add(key);
      return;
    }
    if (this.#queued.has(key)) return;
    this.#queued.add(key);
    this.#queue.push(key);
    this.#pump();
  }

  /** Queues the key after `ms`, unless it is added sooner. */
  addAfter(key: string, ms: number): void {
    if (this.#stopped) return;
    this.#timers.get(key)?.abort();
    const timer = new AbortController();
    this.#timers.set(key, timer);
    void (this.#options.delay ?? realDelay)(ms, timer.signal).then(() => {
      if (timer.signal.aborted || this.#stopped) return;
      this.#timers.delete(key);
      this.add(key);
    });
  }

  /** Resolves when nothing is queued or running (delayed retries do not count). */
  whenIdle(): Promise<void> {
    if (this.#running === 0 && this.#queue.length === 0) return Promise.resolve();
    return new Promise((resolve) => this.#idle.push(resolve));
  }

  /** Stops taking keys, cancels delayed ones and waits for the reconciles in flight. */
  async stop(): Promise<void> {
    this.#stopped = true;
    for (const timer of this.#timers.values()) timer.abort();
    this.#timers.clear();
    this.#queue = [];
    this.#queued.clear();
    await this.whenIdle();
  }

  #pump(): void {
    const concurrency = this.#options.concurrency ?? 4;
    while (this.#running < concurrency && this.#queue.length > 0) {
      const key = this.#queue.shift()!;
      this.#queued.delete(key);
      this.#active.add(key);
      this.#running++;
      void this.#process(key);
    }
    if (this.#running === 0 && this.#queue.length === 0) for (const resolve of this.#idle.splice(0)) resolve();
  }

  async #process(key: string): Promise<void> {
    try {
      const result = await this.#options.handler(key);
      this.#failures.delete(key);
      if (result?.requeueAfterMs !== undefined) this.addAfter(key, result.requeueAfterMs);
    } catch (error) {
      const failures = (this.#failures.get(key) ?? 0) + 1;
      this.#failures.set(key, failures);
      const wait = backoffMs(failures, this.#options.backoff?.baseMs ?? 1000, this.#options.backoff?.maxMs ?? 300_000, this.#options.random);
      this.#options.logger.warn({ key, failures, retryInMs: wait, error: describeApiError(error) }, 'reconcile failed; retrying');
      this.addAfter(key, wait);
    } finally {
      this.#active.delete(key);
      this.#running--;
      if (this.#dirty.delete(key)) this.add(key);
      this.#pump();
    }
  }
}
