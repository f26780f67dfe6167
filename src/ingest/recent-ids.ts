import { createHash } from 'node:crypto';

// The registry's ids are 36-character UUIDs, but a client may send an id as long as the body allows: a longer
// id is remembered by its SHA-256 ("sha256:" + 64 hex digits = 71 characters, so it never equals an id kept
// as it is), which keeps each entry small whatever was sent.
const MAX_KEPT_LENGTH = 64;

/**
 * Remembers the most recent event ids, up to a fixed number, oldest forgotten first: duplicate suppression in
 * bounded memory. The registry resends an event whose delivery it thinks failed; within the window the ingest
 * recognises it and does not queue it twice. Each entry costs at most about 200 bytes, whatever the id's
 * length (long ids are kept as a digest).
 */
export class RecentIds {
  #capacity: number;
  #ids = new Set<string>();

  constructor(capacity: number) {
    this.#capacity = capacity;
  }

  /** Whether the id was remembered. */
  has(id: string): boolean {
    return this.#ids.has(key(id));
  }

  /** Remembers the id (as the newest), forgetting the oldest beyond capacity. */
  add(id: string): void {
    const k = key(id);
    this.#ids.delete(k);
    this.#ids.add(k);
    if (this.#ids.size > this.#capacity) {
      const oldest = this.#ids.values().next().value;
      if (oldest !== undefined) this.#ids.delete(oldest);
    }
  }

  /** Forgets the id (its events were not queued after all). */
  delete(id: string): void {
    this.#ids.delete(key(id));
  }

  /** How many ids are remembered. */
  get size(): number {
    return this.#ids.size;
  }
}

function key(id: string): string {
  return id.length <= MAX_KEPT_LENGTH ? id : `sha256:${createHash('sha256').update(id).digest('hex')}`;
}
