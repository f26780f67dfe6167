import type { buildConnector } from 'undici';
import { hostOf, type AddressGuard, type Resolver } from './address-guard.ts';
import { checkBatching, type CloudEventsOptions } from './cloud-events.ts';
import type { Event } from './event.ts';
import { SinkClosedError } from './errors.ts';
import { Coalescer, type CoalesceRound, type CoalesceSettings } from './coalescer.ts';
import { compileFilter, NO_FILTER, type EventMatcher, type FilterRules } from './filter.ts';
import { HttpSink, parseEndpointUrl, type TlsOptions } from './http-sink.ts';
import { fanOutListener, type DeliveryListener } from './listener.ts';
import { EndpointStats, type StatsSnapshot } from './endpoint-stats.ts';
import { EventQueue } from './queue.ts';
import { BreakerStrategy, ExponentialStrategy, type RetryStrategy } from './retry.ts';
import { RetryingSink, systemClock, type ClientErrorPolicy, type Clock } from './retrying-sink.ts';
import { MemoryStore, type EndpointStore } from './queue-store.ts';
import type { SigningAlgorithm } from './signing.ts';
import type { QueuedEvent } from './sink.ts';

/** How an endpoint retries: Distribution's breaker, or exponential backoff, plus an optional budget. */
export interface RetryConfig {
  strategy: 'Breaker' | 'Exponential';
  /** Cap of the exponential delay. */
  maxBackoffMs: number;
  /** Failed attempts before an event is dead-lettered; 0 = retry forever (Distribution). */
  maxAttempts: number;
  /** Age since acceptance before a failing event is dead-lettered; 0 = no limit. */
  maxAgeMs: number;
  /** What a 4xx other than 408, 409, 425 and 429 does: retried (Distribution) or dead-lettered at once. */
  clientErrors: ClientErrorPolicy;
  /** Failing without a success this long stops sending (`autoDisabled`), queue kept; 0 = never. */
  disableAfterMs: number;
}

/** Everything an endpoint needs, with every default resolved (see `endpointConfig`). */
export interface EndpointConfig {
  url: string;
  headers: readonly (readonly [string, string])[];
  timeoutMs: number;
  threshold: number;
  backoffMs: number;
  retry: RetryConfig;
  filter: FilterRules;
  maxBatchEvents: number;
  tls?: TlsOptions;
  signingKey?: Buffer;
  /** Send CloudEvents 1.0 (api.md §8); absent: Distribution's envelope. */
  cloudEvents?: CloudEventsOptions;
  /** How `signingKey` signs; absent = HMAC-SHA256. With Ed25519 `signingKey` is the 32-byte private key (seed). */
  signingAlgorithm?: SigningAlgorithm;
  disabled: boolean;
  /** api.md §11 `coalesce`: per window, only the first event per key is delivered; absent = nothing coalesced. */
  coalesce?: CoalesceSettings;
}

/** Distribution's defaults (timeout 1s, threshold 10, backoff 1s) and ours for the newer fields. */
export const ENDPOINT_DEFAULTS = Object.freeze({
  timeoutMs: 1000,
  threshold: 10,
  backoffMs: 1000,
  retry: Object.freeze({ strategy: 'Breaker', maxBackoffMs: 5 * 60_000, maxAttempts: 0, maxAgeMs: 0, clientErrors: 'Retry', disableAfterMs: 0 } satisfies RetryConfig),
  maxBatchEvents: 1,
});

/** What `endpointConfig` takes: a URL and any other fields, `retry`'s one by one. */
export type EndpointConfigInput = Partial<Omit<EndpointConfig, 'retry'>> & { url: string; retry?: Partial<RetryConfig> };

/** A full configuration from a URL and whichever fields (retry's too) are given; the rest take `ENDPOINT_DEFAULTS`. */
export function endpointConfig(given: EndpointConfigInput): EndpointConfig {
  return {
    headers: [],
    timeoutMs: ENDPOINT_DEFAULTS.timeoutMs,
    threshold: ENDPOINT_DEFAULTS.threshold,
    backoffMs: ENDPOINT_DEFAULTS.backoffMs,
    filter: NO_FILTER,
    maxBatchEvents: ENDPOINT_DEFAULTS.maxBatchEvents,
    disabled: false,
    ...given,
    retry: { ...ENDPOINT_DEFAULTS.retry, ...given.retry },
  };
}

/** Why and since when an endpoint stopped sending on its own (`retry.disableAfter`). */
export interface AutoDisabled {
  /** When it stopped, milliseconds since the epoch. */
  readonly since: number;
  /** How long it failed and the last error (never a URL's credentials or a header value). */
  readonly message: string;
}

/** Process-wide settings shared by every endpoint. */
export interface EndpointOptions {
  /** Hears every endpoint's traffic (metrics); the endpoint's own counters are kept regardless. */
  listener?: DeliveryListener;
  userAgent?: string;
  clock?: Clock;
  random?: () => number;
  /** The SSRF policy: IP-literal URLs are checked when configured, every connection when it is made. */
  guard?: AddressGuard;
  /** Resolves host names for the guard (tests stub it). */
  resolve?: Resolver;
  /** Replaces undici's connector for every endpoint (tests that must not dial). */
  dial?: buildConnector.connector;
}

/**
 * One webhook target, composed as in Distribution: filter -> queue -> retrying sink -> HTTP sink. The filter
 * (`matches`) is asked before anything is committed; `enqueue` takes what was committed and never blocks or
 * fails until the endpoint is closed; events reach the receiver in order, retried until delivered (or
 * dead-lettered when a retry budget is set). `update` changes every setting in place without losing or
 * reordering what is queued. `store` keeps its dead letters (and acknowledges deliveries to a journal); what it
 * owed when the process last stopped is queued first.
 */
export class Endpoint {
  /** The endpoint's identity (`namespace/name` in the cluster, `name` standalone). */
  readonly name: string;
  #config: EndpointConfig;
  #options: EndpointOptions;
  #stats = new EndpointStats();
  #listener: DeliveryListener;
  #queue: EventQueue;
  #matches: EventMatcher;
  #coalescer: Coalescer | undefined;
  #retrying: RetryingSink;
  #store: EndpointStore;
  #autoDisabled: AutoDisabled | undefined;

  constructor(name: string, config: EndpointConfig, options: EndpointOptions = {}, store: EndpointStore = new MemoryStore()) {
    checkConfig(config, options.guard);
    this.name = name;
    this.#config = config;
    this.#options = options;
    this.#listener = options.listener ? fanOutListener(this.#stats, options.listener) : this.#stats;
    this.#store = store;
    this.#retrying = this.#downstream(config);
    this.#queue = new EventQueue(this.#retrying, {
      maxBatchEvents: config.maxBatchEvents,
      paused: config.disabled,
      listener: { queued: (n) => this.#listener.queued?.(n), discarded: (n) => this.#listener.discarded?.(n) },
      store,
    });
    this.#matches = compileFilter(config.filter);
    this.#coalescer = coalescerFor(config);
    store.attach(this.#queue);
  }

  /** The configuration in force. */
  get config(): EndpointConfig {
    return this.#config;
  }

  /**
   * Set while the endpoint stopped sending on its own after failing for `retry.disableAfter` (its queue is kept
   * and still takes events); cleared by `resume()` or by `update` with a configuration that differs.
   */
  get autoDisabled(): AutoDisabled | undefined {
    return this.#autoDisabled;
  }

  /**
   * Sends again after `autoDisabled` (the `resume-requested-at` annotation's step): the queue goes, in order, to a
   * fresh retrying and HTTP sink, whose failing time starts from zero. Returns whether it was auto-disabled (false:
   * nothing changed). A `disabled` configuration stays paused. Throws `SinkClosedError` once the endpoint is closing.
   */
  resume(): boolean {
    if (this.#queue.closing) throw new SinkClosedError('endpoint');
    if (!this.#autoDisabled) return false;
    this.#autoDisabled = undefined;
    this.#replaceDownstream(this.#downstream(this.#config));
    if (!this.#config.disabled) this.#queue.resume();
    return true;
  }

  /** Events owed and not yet delivered: the queue's, or the store's count where it holds more (a shared database). */
  get pending(): number {
    return this.#store.backlog?.() ?? this.#queue.pending;
  }

  /** Events that were still queued when `close` gave up on them (0 before close). */
  get discarded(): number {
    return this.#queue.discarded;
  }

  /** Delivery counters so far. */
  stats(): StatsSnapshot {
    return this.#stats.snapshot();
  }

  /** Carries counters over from an earlier run (best effort); see `EndpointStats.seed`. */
  seedStats(previous: Parameters<EndpointStats['seed']>[0]): void {
    this.#stats.seed(previous);
  }

  /** Whether this endpoint's filters take the event (asked before anything is committed). */
  matches(event: Event): boolean {
    return this.#matches(event);
  }

  /**
   * The coalescing decisions for one request accepted at `at` (api.md §11), asked after `matches`; undefined when
   * the endpoint coalesces nothing. Its `commit` counts the coalesced events through the listener's `coalesced`.
   */
  coalescing(at: number): CoalesceRound | undefined {
    return this.#coalescer?.round(at, (count) => this.#listener.coalesced?.(count));
  }

  /** Whether the endpoint stopped taking events (it is being removed or shut down). */
  get closing(): boolean {
    return this.#queue.closing;
  }

  /**
   * Queues events that are already committed for this endpoint, in order, and returns at once; they were
   * filtered by `matches` before the commit. Throws `SinkClosedError` once the endpoint is closing.
   */
  enqueue(events: readonly QueuedEvent[]): void {
    this.#queue.push(events);
  }

  /**
   * Moves every dead letter back to the tail of the queue, oldest first; returns how many. Rejects with
   * `SinkClosedError` once the endpoint is closing (the dead letters stay where they are).
   */
  replayDeadLetters(): number | Promise<number> {
    if (this.#queue.closing) throw new SinkClosedError('endpoint');
    if (this.#store.replay) return this.#store.replay();
    const events = this.#store.takeDeadLetters();
    this.#queue.push(events);
    return events.length;
  }

  /** Forgets what the store keeps for this endpoint (it was deleted, not just stopped); resolves once it has. */
  async dropStore(): Promise<void> {
    await this.#store.drop();
  }

  /**
   * Applies a new configuration: filters apply to the next request; the queue stays as it is and its head goes
   * to the new receiver settings once the attempt in flight (if any) has ended. A configuration that differs in
   * anything ends `autoDisabled` (as `resume()` does); the same one applied again leaves it in place. Changed
   * `coalesce` settings start over with no window open (unchanged ones keep their windows).
   */
  update(config: EndpointConfig): void {
    checkConfig(config, this.#options.guard);
    const previous = this.#config;
    const resumed = this.#autoDisabled !== undefined && configKey(previous) !== configKey(config);
    // Everything that can throw is built before anything changes: a configuration refused here leaves the
    // endpoint as it was, and the same configuration applied again is tried again in full.
    const matches = compileFilter(config.filter);
    const coalescer = JSON.stringify(previous.coalesce) !== JSON.stringify(config.coalesce) ? coalescerFor(config) : this.#coalescer;
    const downstream = resumed || downstreamKey(previous) !== downstreamKey(config) ? this.#downstream(config) : undefined;
    this.#config = config;
    this.#matches = matches;
    this.#coalescer = coalescer;
    this.#queue.setMaxBatchEvents(config.maxBatchEvents);
    if (resumed) this.#autoDisabled = undefined;
    if (downstream) this.#replaceDownstream(downstream);
    if (config.disabled || this.#autoDisabled) this.#queue.pause();
    else this.#queue.resume();
  }

  /**
   * Stops taking events and keeps delivering until the queue is empty or `signal` aborts; what is left is
   * discarded and counted (`discarded`). A second close rejects with `SinkClosedError`.
   */
  async close(options: { signal?: AbortSignal } = {}): Promise<void> {
    this.#store.detach?.();
    try {
      await this.#queue.close(options);
    } finally {
      await this.#store.closed?.();
    }
  }

  #replaceDownstream(retrying: RetryingSink): void {
    this.#retrying = retrying;
    const old = this.#queue.setDestination(this.#retrying);
    old.close().catch(() => {});
  }

  /** Stops sending, queue kept, because `retrying` (the sink in use) failed for `retry.disableAfter`. */
  #disable(retrying: RetryingSink, message: string): void {
    if (retrying !== this.#retrying || this.#autoDisabled || this.#queue.closing) return;
    this.#autoDisabled = { since: (this.#options.clock ?? systemClock).now(), message };
    this.#queue.pause();
    this.#listener.autoDisabled?.(message);
  }

  #downstream(config: EndpointConfig): RetryingSink {
    const clock = this.#options.clock ?? systemClock;
    const http = new HttpSink({
      url: config.url,
      headers: config.headers,
      timeoutMs: config.timeoutMs,
      listener: this.#listener,
      now: clock.now,
      ...(config.tls && { tls: config.tls }),
      ...(config.signingKey && { signingKey: config.signingKey }),
      ...(config.cloudEvents && { cloudEvents: { ...config.cloudEvents, batch: config.maxBatchEvents > 1 } }),
      ...(config.signingAlgorithm && { signingAlgorithm: config.signingAlgorithm }),
      ...(this.#options.userAgent && { userAgent: this.#options.userAgent }),
      ...(this.#options.dial && { dial: this.#options.dial }),
      ...(this.#options.guard && { guard: this.#options.guard }),
      ...(this.#options.resolve && { resolve: this.#options.resolve }),
    });
    const retrying: RetryingSink = new RetryingSink(http, retryStrategy(config, this.#options.random), {
      budget: { maxAttempts: config.retry.maxAttempts, maxAgeMs: config.retry.maxAgeMs },
      clientErrors: config.retry.clientErrors,
      maxRetryAfterMs: config.retry.maxBackoffMs,
      disableAfterMs: config.retry.disableAfterMs,
      disable: (message) => this.#disable(retrying, message),
      deadLetter: (events, reason) => {
        this.#store.deadLetter(events, reason);
        this.#listener.deadLettered?.(events, reason);
      },
      ...(this.#store.permit && { permit: (signal: AbortSignal) => this.#store.permit!(config.timeoutMs, signal) }),
      ...(this.#store.attempted && { attempted: () => this.#store.attempted!() }),
      clock,
    });
    return retrying;
  }
}

function coalescerFor(config: EndpointConfig): Coalescer | undefined {
  return config.coalesce && config.coalesce.actions.length > 0 ? new Coalescer(config.coalesce) : undefined;
}

/**
 * Refuses a URL that cannot work or whose IP-literal or `localhost` host the guard refuses (`EndpointRefusedError`),
 * and CloudEvents binary mode with batching (`EndpointConfigError`).
 */
function checkConfig(config: EndpointConfig, guard: AddressGuard | undefined): void {
  parseEndpointUrl(config.url);
  guard?.assertHost(hostOf(config.url));
  if (config.cloudEvents) checkBatching(config.cloudEvents.mode, config.maxBatchEvents);
}

/** The strategy an endpoint's configuration asks for. */
export function retryStrategy(config: EndpointConfig, random?: () => number): RetryStrategy {
  return config.retry.strategy === 'Exponential'
    ? new ExponentialStrategy(config.backoffMs, config.retry.maxBackoffMs, random)
    : new BreakerStrategy(config.threshold, config.backoffMs);
}

/** The whole configuration, to tell a changed one from the same one applied again. */
function configKey(config: EndpointConfig): string {
  return JSON.stringify(config); // Buffers (TLS material, signing key) serialise through Buffer#toJSON
}

/** Everything below the queue; when it changes, the endpoint builds a new retrying + HTTP sink. */
function downstreamKey(config: EndpointConfig): string {
  const { filter: _filter, maxBatchEvents, disabled: _disabled, coalesce: _coalesce, ...rest } = config;
  // maxBatchEvents matters below the queue only for CloudEvents, where it chooses the single or the batch format.
  const batch = config.cloudEvents && { batch: maxBatchEvents > 1 };
  return JSON.stringify({ ...rest, ...batch }); // Buffers (TLS material, signing key) serialise through Buffer#toJSON
}
