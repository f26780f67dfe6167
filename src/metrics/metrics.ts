/**
 * The Prometheus metrics of api.md section 5: Distribution 3.x's `registry_notifications_*` names, so its
 * dashboards and alerts keep working, plus ours under `registry_notifier_`. The delivery engine never imports
 * prom-client: it reports through the `DeliveryListener` that `listenerFor` hands out.
 */
import { STATUS_CODES } from 'node:http';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { isSuccess, type AttemptResult, type DeliveryListener } from '../notifications/listener.ts';
import type { QueuedEvent } from '../notifications/sink.ts';

/** What the scrape-time gauges read about one endpoint (an `EndpointStatus` fits). */
export interface EndpointSample {
  /** The endpoint's identity: the `endpoint` label. */
  readonly name: string;
  /** Events queued and not yet delivered; undefined where another replica reports it (a shared database). */
  readonly pending: number | undefined;
  /** Whether the endpoint runs as configured (its Ready condition). */
  readonly ready: boolean;
  /** The Ready condition's reason (`AutoDisabled` sets `registry_notifier_auto_disabled`); absent counts as not. */
  readonly reason?: string;
}

/** Lists every known endpoint at scrape time; called once per scrape. */
export type EndpointsProvider = () => Iterable<EndpointSample>;

/** Options of `Metrics`. */
export interface MetricsOptions {
  /** Same as calling `setEndpointsProvider` later. */
  endpoints?: EndpointsProvider;
  /**
   * Whether the two histograms carry the `endpoint` label (default true, api.md section 5); false gives one of each
   * for the whole process, so an endpoint adds only its counters and gauges (`--endpoint-histograms=false`).
   */
  endpointHistograms?: boolean;
}

/** The `type` label values of `registry_notifications_events_total` (Distribution's). */
export const EVENT_TYPES = ['Events', 'Successes', 'Failures', 'Errors'] as const;

// Buckets are the bulk of /metrics: each histogram series set is the buckets + `+Inf` + `_sum` + `_count`, per
// endpoint by default, so every bucket here costs one series per endpoint. Eight each keep an endpoint at 22
// histogram series (was 35), with bounds where decisions are made rather than evenly spread.
// Per POST: a loopback or same-cluster answer takes a few milliseconds (0.005, 0.025), a healthy remote receiver
// tens to hundreds (0.1, 0.25, 0.5), Distribution's default timeout is 1s, and a slow receiver with a raised
// timeout takes seconds (2.5, 10); anything longer is only told apart by `_sum` (and lands in `+Inf`).
/** Upper bounds (seconds) of `registry_notifier_delivery_duration_seconds`. */
export const DELIVERY_BUCKETS: readonly number[] = [0.005, 0.025, 0.1, 0.25, 0.5, 1, 2.5, 10];
// Accepted to delivered: milliseconds when all is well (0.01, 0.1), seconds through retries and batching (1, 10),
// then a minute, 5 and 15 minutes and an hour through a receiver's outage (retry backoff reaches minutes); one
// bucket a decade is enough to tell "immediate" from "after retries" from "after an outage".
/** Upper bounds (seconds) of `registry_notifier_event_latency_seconds`. */
export const LATENCY_BUCKETS: readonly number[] = [0.01, 0.1, 1, 10, 60, 300, 900, 3600];

/** What is known about one endpoint's series, so `forgetEndpoint` can remove every one of them. */
interface EndpointSeries {
  /** Set by `forgetEndpoint`: listeners handed out before then stop recording. */
  forgotten: boolean;
  /** `code` label values seen in `registry_notifications_status_total`. */
  codes: Set<string>;
}

/**
 * Every metric of the process in a private `Registry` (never prom-client's global one), with the default
 * process metrics. Recording is synchronous, cheap and never throws; label values are only endpoint
 * identities and status codes, never URLs or event ids, and `forgetEndpoint` keeps their number bounded: an
 * endpoint adds 9 series, 22 more with per-endpoint histograms, and one per status code it was answered with.
 */
export class Metrics {
  /** The private registry: register further metrics here, never on the global one. */
  readonly registry = new Registry();
  #endpoints: EndpointsProvider = () => [];
  #series = new Map<string, EndpointSeries>();
  #events: Counter<'type' | 'endpoint'>;
  #pending: Gauge<'endpoint'>;
  #status: Counter<'code' | 'endpoint'>;
  #ingestRequests: Counter<'code'>;
  #ingestEvents: Counter;
  #ingestDuplicates: Counter;
  #deadLettered: Counter<'endpoint'>;
  #discarded: Counter<'endpoint'>;
  #coalesced: Counter<'endpoint'>;
  #storage: Gauge<'backend'>;
  #duration: Histogram<'endpoint'>;
  #latency: Histogram<'endpoint'>;
  #endpointHistograms: boolean;

  constructor(options: MetricsOptions = {}) {
    if (options.endpoints) this.#endpoints = options.endpoints;
    this.#endpointHistograms = options.endpointHistograms ?? true;
    const histogramLabels = this.#endpointHistograms ? (['endpoint'] as const) : [];
    const registers = [this.registry];
    const endpoints = (): Iterable<EndpointSample> => this.#endpoints();
    collectDefaultMetrics({ register: this.registry });
    this.#events = new Counter({
      name: 'registry_notifications_events_total',
      help: 'Events by type: Events queued for the endpoint; Successes, Failures, Errors: events in attempts with that outcome.',
      labelNames: ['type', 'endpoint'],
      registers,
    });
    this.#pending = new Gauge({
      name: 'registry_notifications_pending_total',
      help: 'Events queued for the endpoint and not yet delivered.',
      labelNames: ['endpoint'],
      registers,
      collect() {
        this.reset(); // endpoints that are gone disappear from the output
        for (const endpoint of endpoints()) if (endpoint.pending !== undefined) this.set({ endpoint: endpoint.name }, endpoint.pending);
      },
    });
    this.#status = new Counter({
      name: 'registry_notifications_status_total',
      help: 'Attempts that got an answer, by HTTP status as Distribution writes it ("202 Accepted").',
      labelNames: ['code', 'endpoint'],
      registers,
    });
    this.#ingestRequests = new Counter({
      name: 'registry_notifier_ingest_requests_total',
      help: 'Requests to the ingest, by the HTTP status it answered.',
      labelNames: ['code'],
      registers,
    });
    this.#ingestEvents = new Counter({
      name: 'registry_notifier_ingest_events_total',
      help: 'Events accepted by the ingest (duplicates excluded).',
      registers,
    });
    this.#ingestDuplicates = new Counter({
      name: 'registry_notifier_ingest_duplicates_total',
      help: 'Events the ingest dropped because their id was seen recently.',
      registers,
    });
    this.#deadLettered = new Counter({
      name: 'registry_notifier_dead_lettered_total',
      help: 'Events that ran out of retry budget (retry.maxAttempts or retry.maxAge).',
      labelNames: ['endpoint'],
      registers,
    });
    this.#duration = new Histogram({
      name: 'registry_notifier_delivery_duration_seconds',
      help: 'Duration of each POST to the endpoint, answered or not.',
      labelNames: histogramLabels,
      buckets: [...DELIVERY_BUCKETS],
      registers,
    });
    this.#latency = new Histogram({
      name: 'registry_notifier_event_latency_seconds',
      help: 'Time from an event being accepted to it being delivered (2xx), per event.',
      labelNames: histogramLabels,
      buckets: [...LATENCY_BUCKETS],
      registers,
    });
    new Gauge({
      name: 'registry_notifier_endpoints',
      help: 'Known endpoints, by whether they are Ready.',
      labelNames: ['ready'],
      registers,
      collect() {
        let ready = 0;
        let notReady = 0;
        for (const endpoint of endpoints()) {
          if (endpoint.ready) ready++;
          else notReady++;
        }
        this.set({ ready: 'true' }, ready);
        this.set({ ready: 'false' }, notReady);
      },
    });
    new Gauge({
      name: 'registry_notifier_auto_disabled',
      help: 'Whether the endpoint stopped sending on its own after failing for retry.disableAfter (1) or not (0); per process.',
      labelNames: ['endpoint'],
      registers,
      collect() {
        this.reset(); // endpoints that are gone disappear from the output
        for (const endpoint of endpoints()) this.set({ endpoint: endpoint.name }, endpoint.reason === 'AutoDisabled' ? 1 : 0);
      },
    });
    this.#storage = new Gauge({
      name: 'registry_notifier_storage_available',
      help: 'Whether the queue backend took the last request it was given (1) or refused it (0: a full disk, an unreachable database); set when the server starts.',
      labelNames: ['backend'],
      registers,
    });
    this.#discarded = new Counter({
      name: 'registry_notifier_discarded_total',
      help: 'Queued events dropped because the endpoint was removed or shut down before sending them.',
      labelNames: ['endpoint'],
      registers,
    });
    this.#coalesced = new Counter({
      name: 'registry_notifier_coalesced_total',
      help: 'Events not delivered because spec.coalesce folded them into an earlier event with the same action, repository and tag or digest within its window.',
      labelNames: ['endpoint'],
      registers,
    });
  }

  /** The Content-Type of `render`'s output (Prometheus text format 0.0.4). */
  get contentType(): string {
    return this.registry.contentType;
  }

  /** Every metric in the Prometheus text format; rejects only if the endpoints provider throws. */
  render(): Promise<string> {
    return this.registry.metrics();
  }

  /** Sets what the pending and endpoints gauges read at each scrape, replacing the previous provider. */
  setEndpointsProvider(provider: EndpointsProvider): void {
    this.#endpoints = provider;
  }

  /**
   * The listener that records one endpoint's traffic; its counters start at 0 so `rate()` works from the
   * first scrape. A listener handed out before `forgetEndpoint(endpoint)` records nothing afterwards.
   */
  listenerFor(endpoint: string): DeliveryListener {
    let series = this.#series.get(endpoint);
    if (!series) {
      series = { forgotten: false, codes: new Set() };
      this.#series.set(endpoint, series);
      for (const type of EVENT_TYPES) this.#events.inc({ type, endpoint }, 0);
      this.#deadLettered.inc({ endpoint }, 0);
      this.#discarded.inc({ endpoint }, 0);
      this.#coalesced.inc({ endpoint }, 0);
    }
    const own = series;
    return {
      queued: (count) => {
        if (!own.forgotten) this.#events.inc({ type: 'Events', endpoint }, count);
      },
      attempt: (result) => {
        if (!own.forgotten) this.#attempt(endpoint, own, result);
      },
      deadLettered: (events) => {
        if (!own.forgotten) this.#deadLettered.inc({ endpoint }, events.length);
      },
      discarded: (count) => {
        if (!own.forgotten) this.#discarded.inc({ endpoint }, count);
      },
      coalesced: (count) => {
        if (!own.forgotten) this.#coalesced.inc({ endpoint }, count);
      },
    };
  }

  /** Removes every series labelled with this endpoint and mutes its listeners; call once it is deleted. */
  forgetEndpoint(endpoint: string): void {
    const series = this.#series.get(endpoint);
    this.#series.delete(endpoint);
    if (series) series.forgotten = true;
    for (const type of EVENT_TYPES) this.#events.remove({ type, endpoint });
    for (const code of series?.codes ?? []) this.#status.remove({ code, endpoint });
    for (const metric of [this.#pending, this.#deadLettered, this.#discarded, this.#coalesced]) metric.remove({ endpoint });
    if (this.#endpointHistograms) for (const metric of [this.#duration, this.#latency]) metric.remove({ endpoint });
  }

  /** Counts one ingest request by the numeric HTTP status it was answered with. */
  ingestRequest(code: number): void {
    this.#ingestRequests.inc({ code: String(Math.trunc(code)) });
  }

  /** Counts `n` events accepted by the ingest. */
  ingestEvents(n: number): void {
    if (n > 0) this.#ingestEvents.inc(n);
  }

  /** Records whether the queue backend (`memory`, `journal`, `postgres`) stores what the ingest gives it now. */
  storageAvailable(backend: string, available: boolean): void {
    this.#storage.set({ backend }, available ? 1 : 0);
  }

  /** Counts `n` events the ingest dropped as duplicates. */
  ingestDuplicates(n: number): void {
    if (n > 0) this.#ingestDuplicates.inc(n);
  }

  #attempt(endpoint: string, series: EndpointSeries, result: AttemptResult): void {
    const events = result.events.length;
    const histogram = this.#endpointHistograms ? { endpoint } : {};
    this.#duration.observe(histogram, Math.max(0, result.durationMs) / 1000);
    if (result.status === undefined) {
      this.#events.inc({ type: 'Errors', endpoint }, events);
      return;
    }
    const code = statusCode(result.status, result.statusText);
    series.codes.add(code);
    this.#status.inc({ code, endpoint });
    if (!isSuccess(result)) {
      this.#events.inc({ type: 'Failures', endpoint }, events);
      return;
    }
    this.#events.inc({ type: 'Successes', endpoint }, events);
    for (const event of result.events) this.#latency.observe(histogram, latencySeconds(event, result.at));
  }
}

/** Distribution's `code` label: Go's `resp.Status`, e.g. "503 Service Unavailable". */
function statusCode(status: number, statusText: string | undefined): string {
  return `${status} ${statusText ?? STATUS_CODES[status] ?? 'Unknown'}`.trim();
}

function latencySeconds(event: QueuedEvent, deliveredAt: number): number {
  return Math.max(0, deliveredAt - event.acceptedAt) / 1000;
}
