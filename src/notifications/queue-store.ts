import type { QueuedEvent } from './sink.ts';

/** Events one endpoint owes, in queue order. */
export interface Route {
  readonly endpoint: string;
  readonly events: readonly QueuedEvent[];
}

/**
 * Where accepted events are kept until delivered: in memory, or a durable journal. `commit` is the one step
 * that makes a request's events owed, all of them or none; the queues get them only after it returned, so a
 * refused request leaves nothing behind. An event routed to several endpoints is the same object in each route
 * and is stored once.
 */
export interface QueueBackend {
  /** Whether what is committed outlives the process. */
  readonly persistent: boolean;
  /**
   * Records, all or nothing, that each route's endpoint owes its events, and returns the routes with their
   * events as stored (numbered `seq` by a journal). Throws (or rejects) when it could not: then nothing is owed.
   */
  commit(routes: readonly Route[]): readonly Route[] | Promise<readonly Route[]>;
  /** The store of one endpoint by identity. */
  storeFor(endpoint: string): EndpointStore;
}

/**
 * What one endpoint keeps beyond its in-memory queue: its dead letters always, and with a journal what it owes.
 * Recording never throws into delivery: a store that cannot write (a full disk) keeps the record and retries,
 * so a delivered event is never sent again because its acknowledgement could not be stored.
 */
export interface EndpointStore {
  /** The events were delivered: they no longer wait for this endpoint. */
  ack(events: readonly QueuedEvent[]): void;
  /** The events ran out of retry budget: they move to this endpoint's dead letters with the reason. */
  deadLetter(events: readonly QueuedEvent[], reason: string): void;
  /** Moves every dead letter back to pending and returns them, oldest first, to be queued again (replay). */
  takeDeadLetters(): QueuedEvent[];
  /** Events that were owed when the process last stopped, in their original order. */
  pending(): QueuedEvent[];
  /** The endpoint is gone: forget its pending events and dead letters. */
  drop(): void;
}

// In-memory dead letters per endpoint: enough to investigate and replay an outage, bounded so a receiver that
// refuses everything forever cannot exhaust memory; beyond it the oldest are dropped (and counted).
const MEMORY_DEAD_LETTERS = 10_000;

/**
 * The store of an in-memory endpoint: events are not persisted, but the newest `capacity` dead letters are
 * kept so they can be replayed; `dropped` counts the ones pushed out by newer ones.
 */
export class MemoryStore implements EndpointStore {
  #dead: QueuedEvent[] = [];
  #capacity: number;
  /** Dead letters pushed out by newer ones. */
  dropped = 0;

  constructor(capacity = MEMORY_DEAD_LETTERS) {
    this.#capacity = capacity;
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

/** Queues in memory only: commits at once, and each endpoint keeps its newest dead letters for replay. */
export class MemoryBackend implements QueueBackend {
  readonly persistent = false;

  commit(routes: readonly Route[]): readonly Route[] {
    return routes;
  }

  storeFor(): EndpointStore {
    return new MemoryStore();
  }
}
