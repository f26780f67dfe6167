import type { QueuedEvent } from './sink.ts';

/** Events one endpoint owes, in queue order. */
export interface Route {
  readonly endpoint: string;
  readonly events: readonly QueuedEvent[];
}

/** What a commit did: the routes to queue in this process, and the ids it found already stored (not queued again). */
export interface Committed {
  /** The routes with their events as stored (numbered by a journal); empty when the backend feeds the queues itself. */
  readonly routes: readonly Route[];
  /** Ids of events another request (on any replica) already committed: dropped from every route. */
  readonly duplicates: readonly string[];
}

/**
 * Where accepted events are kept until delivered: in memory, a durable journal, or a database shared by
 * replicas. `commit` is the one step that makes a request's events owed, all of them or none; the queues get
 * them only after it returned, so a refused request leaves nothing behind. An event routed to several
 * endpoints is the same object in each route and is stored once.
 */
export interface QueueBackend {
  /** Records, all or nothing, that each route's endpoint owes its events; throws (or rejects) when it could not: then nothing is owed. */
  commit(routes: readonly Route[]): Committed | Promise<Committed>;
  /** The store of one endpoint by identity. */
  storeFor(endpoint: string): EndpointStore;
}

/**
 * An endpoint's queue as its store sees it. A store that feeds the queue itself (a replica that pages a
 * shared database) pushes pages, learns when the queue ran dry, and resets it when this process may no longer
 * deliver for the endpoint (its lease was taken over): what the queue held is then simply forgotten here.
 */
export interface QueueWindow {
  /** Appends committed events at the tail, in order. */
  push(events: readonly QueuedEvent[]): void;
  /** Events in memory, the batch in flight included. */
  readonly pending: number;
  /** `listener` is called now if the queue is empty, and each time it becomes empty. */
  onDrain(listener: () => void): void;
  /** Forgets everything in memory and stops the attempt in flight; nothing is acknowledged or counted as discarded. */
  reset(): void;
}

/**
 * What one endpoint keeps beyond its in-memory queue: its dead letters always, and with a journal what it owes.
 * Recording never throws into delivery: a store that cannot write (a full disk) keeps the record and retries,
 * so a delivered event is never sent again because its acknowledgement could not be stored.
 */
export interface EndpointStore {
  /** Called once with the endpoint's queue: a journal puts back what was owed; a database store starts feeding it. */
  attach(window: QueueWindow): void;
  /** The endpoint is closing: stop adding to its queue (what is in it still drains, acknowledged). Optional. */
  detach?(): void;
  /** The endpoint closed: nothing more happens for it in this process (a database store writes the outcomes reached, then gives its lease up). Optional. */
  closed?(): void | Promise<void>;
  /** Events owed in all, where the store knows better than the queue in memory (a shared database); undefined while it does not know yet. Optional. */
  backlog?(): number | undefined;
  /**
   * Before each attempt: resolves when an attempt taking up to `timeoutMs` may start (this process holds the
   * endpoint long enough to finish it), or when `signal` aborts. Optional: without it every attempt may start.
   */
  permit?(timeoutMs: number, signal: AbortSignal): Promise<void>;
  /** The attempt `permit` let start has ended, answered or not (a store handing the endpoint over waits for it). Optional. */
  attempted?(): void;
  /** The events were delivered: they no longer wait for this endpoint. */
  ack(events: readonly QueuedEvent[]): void;
  /** The events ran out of retry budget: they move to this endpoint's dead letters with the reason. */
  deadLetter(events: readonly QueuedEvent[], reason: string): void;
  /** Moves every dead letter back to pending and returns them, oldest first, to be queued again (replay). */
  takeDeadLetters(): QueuedEvent[];
  /**
   * Replay where the store queues the dead letters itself (a shared database: the endpoint's owner, on whichever
   * replica, fetches them); resolves with how many. Optional: without it `takeDeadLetters` is used.
   */
  replay?(): Promise<number>;
  /** The endpoint is gone: forget its pending events and dead letters (resolves once forgotten, never rejects). */
  drop(): void | Promise<void>;
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

  attach(): void {}

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

  drop(): void {
    this.#dead = [];
  }
}

/** Queues in memory only: commits at once, and each endpoint keeps its newest dead letters for replay. */
export class MemoryBackend implements QueueBackend {

  commit(routes: readonly Route[]): Committed {
    return { routes, duplicates: [] };
  }

  storeFor(): EndpointStore {
    return new MemoryStore();
  }
}
