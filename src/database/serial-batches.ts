/**
 * Hands queued items to `call` in batches, one call at a time and in the order they were added: the items added in
 * the turn of the event loop that started a run go in its first call, those added while a call runs (or while the
 * next waits for its spacing) in the next, at most `max` per call. `call` must not reject; it resolves with the
 * items of its batch to try again, which go back at the front of the queue (usually none).
 */
export class SerialBatches<T> {
  #max: number;
  #call: (batch: T[]) => Promise<readonly T[]>;
  #spacingMs: number;
  #queue: T[] = [];
  #running: Promise<void> | undefined;
  #lastStart = -Infinity;

  /**
   * `spacingMs`: calls start at least this far apart (default 0). A call that comes after a quiet spell starts at
   * once, and so does a full one; under a steady trickle (one event at a time from one registry) each call takes
   * what arrived meanwhile, and the database does one round trip (and one commit) per spacing instead of one per item.
   */
  constructor(max: number, call: (batch: T[]) => Promise<readonly T[]>, spacingMs = 0) {
    this.#max = max;
    this.#call = call;
    this.#spacingMs = spacingMs;
  }

  /** Queues `item` for the next call. */
  add(item: T): void {
    this.#queue.push(item);
    this.#running ??= this.#run();
  }

  /** Resolves once every item added so far went through a call that did not hand it back. */
  async drained(): Promise<void> {
    while (this.#running) await this.#running;
  }

  // The run ends in the same turn that finds the queue empty, not in a callback chained on it: an item added by a
  // continuation of the last call (which runs before any such callback) would otherwise wait with no run to take it.
  async #run(): Promise<void> {
    await new Promise((resolve) => setImmediate(resolve));
    for (;;) {
      const wait = this.#lastStart + this.#spacingMs - performance.now();
      if (wait > 0 && this.#queue.length < this.#max) await new Promise((resolve) => setTimeout(resolve, wait));
      if (this.#queue.length === 0) {
        this.#running = undefined;
        return;
      }
      const batch = this.#queue.splice(0, this.#max);
      this.#lastStart = performance.now();
      this.#queue.unshift(...(await this.#call(batch)));
    }
  }
}
