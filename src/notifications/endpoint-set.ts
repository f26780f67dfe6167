import { EndpointRefusedError } from './address-guard.ts';
import { Broadcaster } from './broadcaster.ts';
import { Endpoint, type EndpointConfig, type EndpointOptions } from './endpoint.ts';
import type { StoreFactory } from './queue-store.ts';
import type { Event } from './event.ts';

/** Why a block of events may not be accepted now. */
export interface Refusal {
  /** The endpoint over its limit, or undefined when the total is over. */
  endpoint?: string;
  pending: number;
  limit: number;
}

/** Queue limits checked before a write (the ingest answers 503 over them). */
export interface PendingLimits {
  perEndpoint: number;
  total: number;
}

/**
 * The live set of endpoints behind one broadcaster, keyed by identity: what the standalone file source and
 * the Kubernetes controller drive. `apply` creates or updates in place, `remove` takes one out; a write goes
 * to every endpoint, and only the endpoints present when the write began.
 */
export class EndpointSet {
  #broadcaster = new Broadcaster();
  #endpoints = new Map<string, Endpoint>();
  #options: EndpointOptions;
  #listenerFor: ((name: string) => EndpointOptions['listener']) | undefined;

  #stores: StoreFactory | undefined;

  /**
   * `listenerFor` gives each new endpoint its listener (per-endpoint metrics); `stores` its store (the
   * journal; default in memory).
   */
  constructor(options: EndpointOptions = {}, listenerFor?: (name: string) => EndpointOptions['listener'], stores?: StoreFactory) {
    this.#options = options;
    this.#listenerFor = listenerFor;
    this.#stores = stores;
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
    const listener = this.#listenerFor?.(name) ?? this.#options.listener;
    const store = this.#stores?.(name);
    const endpoint = new Endpoint(name, config, { ...this.#options, ...(listener && { listener }), ...(store && { store }) });
    this.#endpoints.set(name, endpoint);
    this.#broadcaster.add(endpoint);
    return 'created';
  }

  /**
   * Takes the endpoint out at once: it receives nothing more, its pending events are discarded and reported
   * through its listener's `discarded`. Resolves to how many were discarded (0 if it was unknown).
   */
  async remove(name: string): Promise<number> {
    const endpoint = this.#endpoints.get(name);
    if (!endpoint) return 0;
    this.#endpoints.delete(name);
    this.#broadcaster.remove(endpoint);
    await endpoint.close({ signal: AbortSignal.abort() });
    endpoint.dropStore();
    return endpoint.discarded;
  }

  /** Moves the endpoint's dead letters back into its queue; how many, or undefined for an unknown endpoint. */
  replay(name: string): number | undefined {
    return this.#endpoints.get(name)?.replayDeadLetters();
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

  /** Whether `events` fit under the limits for every endpoint that would queue them; the refusal if not. */
  check(events: readonly Event[], limits: PendingLimits): Refusal | undefined {
    let total = 0;
    let adding = 0;
    for (const endpoint of this.#endpoints.values()) {
      const n = endpoint.matching(events);
      total += endpoint.pending;
      adding += n;
      if (n > 0 && endpoint.pending + n > limits.perEndpoint) {
        return { endpoint: endpoint.name, pending: endpoint.pending, limit: limits.perEndpoint };
      }
    }
    if (adding > 0 && total + adding > limits.total) return { pending: total, limit: limits.total };
    return undefined;
  }

  /** Writes the block to every endpoint; resolves once each has queued what its filters let through. */
  write(events: readonly Event[]): Promise<void> {
    return this.#broadcaster.write(events);
  }

  /**
   * Stops taking events and lets every endpoint deliver until its queue is empty or `signal` aborts; returns
   * what each endpoint still held and discarded.
   */
  async close(signal?: AbortSignal): Promise<Map<string, number>> {
    const endpoints = this.list();
    const left = new Map<string, number>();
    // Endpoints stay listed (status, pending gauges) while they drain; they take no new events meanwhile.
    await Promise.all(
      endpoints.map(async (endpoint) => {
        this.#broadcaster.remove(endpoint);
        await endpoint.close(signal ? { signal } : {});
        left.set(endpoint.name, endpoint.discarded);
      }),
    );
    this.#endpoints.clear();
    await this.#broadcaster.close();
    return left;
  }
}
