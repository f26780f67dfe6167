/**
 * Remembers the most recent event ids, up to a fixed number, oldest forgotten first: duplicate suppression in
 * bounded memory. The registry resends an event whose delivery it thinks failed; within the window the ingest
 * recognises it and does not queue it twice.
 */
export class RecentIds {
  #capacity: number;
  #ids = new Set<string>();

  constructor(capacity: number) {
    this.#capacity = capacity;
  }

  /** Whether the id was remembered. */
  has(id: string): boolean {
    return this.#ids.has(id);
  }

  /** Remembers the id (as the newest), forgetting the oldest beyond capacity. */
  add(id: string): void {
    this.#ids.delete(id);
    this.#ids.add(id);
    if (this.#ids.size > this.#capacity) {
      const oldest = this.#ids.values().next().value;
      if (oldest !== undefined) this.#ids.delete(oldest);
    }
  }

  /** Forgets the id (its events were not queued after all). */
  delete(id: string): void {
    this.#ids.delete(id);
  }

  /** How many ids are remembered. */
  get size(): number {
    return this.#ids.size;
  }
}
