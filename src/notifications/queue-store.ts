import type { QueuedEvent } from './sink.ts';

/**
 * Where one endpoint keeps what must outlive a delivery attempt: its dead letters always, and with a durable
 * journal (`persistent`) every event it holds. The queue calls a persistent store synchronously, so an ingest
 * request's appends for every endpoint fall into the caller's one transaction.
 */
export interface EndpointStore {
  /** Whether events are persisted (a journal) or only dead letters are kept (in memory). */
  readonly persistent: boolean;
  /** Persists that `events` wait for this endpoint; returns them numbered (`seq`; an event already numbered keeps it). */
  append(events: readonly QueuedEvent[]): QueuedEvent[];
  /** The events were delivered: they no longer wait for this endpoint. */
  ack(events: readonly QueuedEvent[]): void;
  /** The events ran out of retry budget: they move to this endpoint's dead letters with the reason. */
  deadLetter(events: readonly QueuedEvent[], reason: string): void;
  /** Moves every dead letter back to pending and returns them, oldest first, to be queued again (replay). */
  takeDeadLetters(): QueuedEvent[];
  /** Events that were waiting when the process last stopped, in their original order. */
  pending(): QueuedEvent[];
  /** The endpoint is gone: forget its pending events and dead letters. */
  drop(): void;
}

/** Opens the store of one endpoint by identity. */
export type StoreFactory = (endpoint: string) => EndpointStore;

// In-memory dead letters per endpoint: enough to investigate and replay an outage, bounded so a receiver that
// refuses everything forever cannot exhaust memory; beyond it the oldest are dropped (and counted).
const MEMORY_DEAD_LETTERS = 10_000;

/**
 * The store of an in-memory endpoint: events are not persisted, but the newest `capacity` dead letters are
 * kept so they can be replayed; `dropped` counts the ones pushed out by newer ones.
 */
export class MemoryStore implements EndpointStore {
  readonly persistent = false;
  #dead: QueuedEvent[] = [];
  #capacity: number;
  /** Dead letters pushed out by newer ones. */
  dropped = 0;

  constructor(capacity = MEMORY_DEAD_LETTERS) {
    this.#capacity = capacity;
  }

  append(events: readonly QueuedEvent[]): QueuedEvent[] {
    return [...events];
  }

  ack(): void {}

  deadLetter(events: readonly QueuedEvent[]): void {
    this.#dead.push(...events);
    const over = this.#dead.length - this.#capacity;
    if (over > 0) {
      this.#dead.splice(0, over);
      this.dropped += over;
    }
  }

  takeDeadLetters(): QueuedEvent[] {
    const taken = this.#dead;
    this.#dead = [];
    return taken;
  }

  pending(): QueuedEvent[] {
    return [];
  }

  drop(): void {
    this.#dead = [];
  }
}
