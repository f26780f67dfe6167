import { EndpointRefusedError } from './address-guard.ts';
import type { CoalesceRound } from './coalescer.ts';
import { Endpoint, type EndpointConfig, type EndpointOptions } from './endpoint.ts';
import { QueueFullError, SinkClosedError } from './errors.ts';
import { incomingEvent, type Event, type IncomingEvent } from './event.ts';
import { MemoryBackend, type Committed, type QueueBackend, type Route } from './queue-store.ts';
import { systemClock } from './retrying-sink.ts';
import type { QueuedEvent } from './sink.ts';

/** Queue limits checked before a request is committed (the ingest answers 503 over them). */
export interface PendingLimits {
  perEndpoint: number;
  total: number;
}

/** Settings of an `EndpointSet`: every endpoint's options, plus what the set itself owns. */
export interface EndpointSetOptions extends EndpointOptions {
  /** Gives each new endpoint its listener (per-endpoint metrics); default `listener`. */
  listenerFor?: (name: string) => EndpointOptions['listener'];
  /** Where accepted events are kept until delivered; default in memory. */
  backend?: QueueBackend;
  /** Over these, `accept` refuses with `QueueFullError`; default unbounded. */
  limits?: PendingLimits;
}

/** What `accept` did: how many events were committed for at least one endpoint, and which were already committed before. */
export interface Acceptance {
  /** Events committed for at least one endpoint (the others matched no endpoint's filters, or were duplicates). */
  routed: number;
  /** Ids the backend found already committed (a resend that reached another replica first): not queued again. */
  duplicates: readonly string[];
}

const UNBOUNDED: PendingLimits = Object.freeze({ perEndpoint: Number.POSITIVE_INFINITY, total: Number.POSITIVE_INFINITY });

/**
 * The live endpoints, keyed by identity, and the fan-out to them (Distribution's broadcaster): what the
 * standalone file source and the Kubernetes controller drive. `apply` creates or updates in place, `remove`
 * takes one out at once; `accept` hands a request's events to every endpoint whose filters take them, all of
 * them or none.
 */
export class EndpointSet {
  #endpoints = new Map<string, Endpoint>();
  #options: EndpointSetOptions;
  #backend: QueueBackend;
  #limits: PendingLimits;
  #now: () => number;
  #lastAcceptedAt = 0;
  #closing = false;
  // Requests hand their committed events to the queues in the order they called `accept`, even when a commit
  // is asynchronous and a later one finishes first.
  #turn: Promise<void> = Promise.resolve();

  constructor(options: EndpointSetOptions = {}) {
    this.#options = options;
    this.#backend = options.backend ?? new MemoryBackend();
    this.#limits = options.limits ?? UNBOUNDED;
    this.#now = (options.clock ?? systemClock).now;
  }

  /**
   * Checks an endpoint URL against the SSRF guard before it is applied, resolving a host name now: rejects
   * with `EndpointRefusedError` when an address is refused. A name that does not resolve yet passes (the
   * connect-time check still applies).
   */
  async vet(url: string): Promise<void> {
    const { guard, resolve } = this.#options;
    if (!guard) return;
    try {
      await guard.checkUrl(url, resolve);
    } catch (error) {
      if (error instanceof EndpointRefusedError) throw error;
    }
  }

  /** Creates the endpoint, or updates it in place (queue kept); says which. Throws on an invalid URL. */
  apply(name: string, config: EndpointConfig): 'created' | 'updated' {
    const existing = this.#endpoints.get(name);
    if (existing) {
      existing.update(config);
      return 'updated';
    }
    const listener = this.#options.listenerFor?.(name) ?? this.#options.listener;
    const endpoint = new Endpoint(name, config, { ...this.#options, ...(listener && { listener }) }, this.#backend.storeFor(name));
    this.#endpoints.set(name, endpoint);
    return 'created';
  }

  /**
   * Takes the endpoint out at once (it receives nothing from the next `accept` on, before this returns a
   * promise), then closes it: its pending events are discarded and reported through its listener's
   * `discarded`, and its store forgets them. Resolves to how many were discarded (0 if it was unknown).
   */
  async remove(name: string): Promise<number> {
    const endpoint = this.#endpoints.get(name);
    if (!endpoint) return 0;
    this.#endpoints.delete(name);
    await endpoint.close({ signal: AbortSignal.abort() });
    // Before this resolves: the endpoint created again under this name must not have its new events forgotten.
    await endpoint.dropStore();
    return endpoint.discarded;
  }

  /** Moves the endpoint's dead letters back into its queue; how many, or undefined for an unknown endpoint. */
  replay(name: string): number | Promise<number> | undefined {
    return this.#endpoints.get(name)?.replayDeadLetters();
  }

  /**
   * Sends again from an endpoint that stopped on its own after failing for `retry.disableAfter` (see
   * `Endpoint.resume`): true if it was auto-disabled, false if it was not, undefined for an unknown endpoint.
   */
  resume(name: string): boolean | undefined {
    return this.#endpoints.get(name)?.resume();
  }

  /** The endpoint with this identity, if present. */
  get(name: string): Endpoint | undefined {
    return this.#endpoints.get(name);
  }

  /** Every endpoint, in the order they were created. */
  list(): Endpoint[] {
    return [...this.#endpoints.values()];
  }

  /** Events pending over all endpoints. */
  get pending(): number {
    let total = 0;
    for (const endpoint of this.#endpoints.values()) total += endpoint.pending;
    return total;
  }

  /**
   * Hands a request's events to every endpoint whose filters take them, in three steps: route (each filter
   * asked once per event, then the endpoint's coalescing) and check the limits; commit every route in one step
   * of the backend; only then queue. A refusal (`QueueFullError` over a limit, `SinkClosedError` once `close`
   * began, or the backend's error) leaves
   * nothing queued or stored anywhere, opens no coalescing window and counts nothing as coalesced. An endpoint
   * removed while the commit ran gets nothing (its store forgets what was committed). Coalesced events are never
   * committed: they are counted (the listener's `coalesced`) once the request's commit succeeded.
   */
  async accept(events: readonly IncomingEvent[]): Promise<Acceptance> {
    // Closing endpoints take nothing: routing past them would answer for events queued nowhere.
    if (this.#closing) throw new SinkClosedError('endpoint set');
    const { routes, routed, rounds } = this.#route(events);
    if (routes.length === 0) {
      for (const round of rounds) round.commit(); // nothing opened a window: only counts to report
      return { routed, duplicates: [] };
    }
    const previous = this.#turn;
    let done!: () => void;
    this.#turn = new Promise<void>((resolve) => (done = resolve));
    try {
      let committed: Committed | undefined;
      let failure: { error: unknown } | undefined;
      try {
        committed = await this.#backend.commit(routes);
      } catch (error) {
        failure = { error };
      }
      await previous;
      if (failure) throw failure.error;
      // In acceptance order (after the previous request's turn), so windows open in the order events came.
      for (const round of rounds) round.commit();
      const { routes: owedHere = [], duplicates = [] } = committed ?? {};
      for (const { endpoint, events: owed } of owedHere) {
        const target = this.#endpoints.get(endpoint);
        if (target && !target.closing) target.enqueue(owed);
      }
      return { routed: routed - duplicates.length, duplicates };
    } finally {
      done();
    }
  }

  /** `accept` for events made in this process: each is serialised once with `JSON.stringify`. */
  write(events: readonly Event[]): Promise<Acceptance> {
    return this.accept(events.map(incomingEvent));
  }

  /**
   * Stops taking events (`accept` rejects with `SinkClosedError` from now on) and lets every endpoint deliver
   * until its queue is empty or `signal` aborts; returns what each endpoint still held and discarded.
   */
  async close(signal?: AbortSignal): Promise<Map<string, number>> {
    this.#closing = true;
    const endpoints = this.list();
    const left = new Map<string, number>();
    // Endpoints stay listed (status, pending gauges) while they drain; they take no new events meanwhile.
    await Promise.all(
      endpoints.map(async (endpoint) => {
        await endpoint.close(signal ? { signal } : {});
        left.set(endpoint.name, endpoint.discarded);
      }),
    );
    this.#endpoints.clear();
    return left;
  }

  /**
   * Each live endpoint's share of `events`, as one shared `QueuedEvent` per event, and the coalescing rounds to
   * commit once the routes are committed; throws over a limit.
   */
  #route(events: readonly IncomingEvent[]): { routes: Route[]; routed: number; rounds: CoalesceRound[] } {
    const acceptedAt = (this.#lastAcceptedAt = Math.max(this.#lastAcceptedAt, this.#now()));
    const queued: (QueuedEvent | undefined)[] = new Array(events.length);
    const routes: Route[] = [];
    const rounds: CoalesceRound[] = [];
    let total = 0;
    let adding = 0;
    let routed = 0;
    for (const endpoint of this.#endpoints.values()) {
      total += endpoint.pending;
      if (endpoint.closing) continue;
      const owed: QueuedEvent[] = [];
      const round = endpoint.coalescing(acceptedAt);
      if (round) rounds.push(round);
      events.forEach(({ event, json }, i) => {
        if (!endpoint.matches(event)) return;
        if (round && !round.admit(event)) return;
        if (queued[i] === undefined) routed++;
        owed.push((queued[i] ??= { id: event.id, json, acceptedAt }));
      });
      if (owed.length === 0) continue;
      if (endpoint.pending + owed.length > this.#limits.perEndpoint) {
        throw new QueueFullError(endpoint.pending, this.#limits.perEndpoint, endpoint.name);
      }
      adding += owed.length;
      routes.push({ endpoint: endpoint.name, events: owed });
    }
    if (adding > 0 && total + adding > this.#limits.total) throw new QueueFullError(total, this.#limits.total);
    return { routes, routed, rounds };
  }
}
