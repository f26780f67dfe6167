import type { Logger } from 'pino';
import type { Condition } from '../api/notification-endpoint.ts';
import { currentReadiness, delivering, NOT_RUNNING, statusCounters, type EndpointView } from '../status/endpoint-status.ts';
import type { Endpoint } from '../notifications/endpoint.ts';
import { rfc3339 } from '../notifications/endpoint-stats.ts';
import type { ReadyState } from '../sources/source.ts';
import { describeApiError } from '../k8s/errors.ts';
import { EventRecorder } from '../k8s/event-recorder.ts';
import type { ClusterApi, NotificationEndpointObject, StatusPatch } from '../k8s/cluster-api.ts';
import type { HandledField, HandledFields } from './requested-actions.ts';

/** Settings of a `StatusWriter`. */
export interface StatusWriterOptions {
  api: ClusterApi;
  logger: Logger;
  /** Counters are written at most this often, and only when they changed (`--status-interval`). */
  intervalMs: number;
  /** How often Delivering transitions are looked for (cheap: no API call unless one happened). Default 1 s. */
  checkMs?: number;
  /**
   * Status writes per second at most, over all endpoints, for Delivering transitions (first) and counters (the
   * stalest first); default 20. Ready transitions, a new generation and handled requests are written at once.
   */
  maxWritesPerSecond?: number;
  /** What status shows of a running endpoint; default the endpoint itself (a shared database gives cluster-wide counters). */
  view?: (endpoint: Endpoint) => EndpointView;
  /** Whether this process writes status now (the elected leader among replicas); default always. */
  writes?: () => boolean;
  /** Endpoints a periodic check looks at, at most (the next ones each time, round the ring); default 500. */
  lookedAtPerTick?: number;
  /**
   * How long the final write on shutdown may take; default 5 s. The Events still queued are then sent for what is
   * left of it, and for at least 1 s.
   */
  finalWriteBudgetMs?: number;
  /** Sends the Events, off the status path; default a recorder of its own over `api` (stopped by `stop`). */
  events?: EventRecorder;
  now?: () => Date;
}

// The API server is shared with everything else in the cluster: 10,000 endpoints must not mean 1,000 counter
// writes a second. Writes beyond this rate wait for a later tick and then carry the freshest counters and
// conditions; Ready's transitions are written at once, so `kubectl wait` is never held up by counters.
const MAX_WRITES_PER_SECOND = 20;
// Endpoints looked at per tick at most (see #slice): about 15-30 ms of a tick's work.
const LOOKED_AT_PER_TICK = 500;
// Status writes of one tick in flight at once (never two of one endpoint).
const PARALLEL_WRITES = 4;
// How long the final write on shutdown may take (transitions first, then the stalest counters).
const FINAL_WRITE_BUDGET_MS = 5_000;
// The Events of the final write (and any still queued) are sent for what is left of its budget, and at least this.
const EVENT_FLUSH_MIN_MS = 1_000;

interface Tracked {
  object: NotificationEndpointObject;
  ready: ReadyState;
  endpoint: Endpoint | undefined;
  conditions: Condition[];
  /** JSON of the counters last written. */
  counters: string | undefined;
  /** The signing public key last written (Ed25519), so a new one is written at once. */
  publicKey: string | undefined;
  lastCountersWrite: number;
  /** Requests handled in this process (annotation values) whose status write has not succeeded yet. */
  handled: HandledFields;
  /**
   * Requests this process wrote into status, until an observed object shows them: reconciles read a cache that can
   * predate the write, and must not take the request for one not handled yet (and act on it twice).
   */
  written: HandledFields;
}

/**
 * Writes each NotificationEndpoint's status through the `/status` subresource (api.md §2): conditions at once
 * on a transition, counters at most every interval and only when they changed, the values of handled requests
 * (`lastHandledReplayAt`, `lastHandledResumeAt`) at once, and a Kubernetes Event for every transition and every
 * handled request so `kubectl describe` tells the story. Events are queued to an `EventRecorder` once the write
 * succeeded: a write never waits for them. Write failures are logged and retried on the next tick; they never
 * block reconciling or delivery.
 */
export class StatusWriter {
  #options: StatusWriterOptions;
  #tracked = new Map<string, Tracked>();
  #timer: NodeJS.Timeout | undefined;
  #writing: Promise<void> = Promise.resolve();
  /** The last write queued per endpoint: writes of one endpoint run one after the other, never side by side. */
  #chains = new Map<string, Promise<void>>();
  #tokens: number;
  #refilled: number;
  #recorder: EventRecorder;
  /** Whether any tracked endpoint holds `written` values (so losing the election clears them once). */
  #remembersWrites = false;
  /** Where the next tick's slice starts, when there are more endpoints than a tick looks at. */
  #cursor = 0;

  constructor(options: StatusWriterOptions) {
    this.#options = options;
    this.#recorder = options.events ?? new EventRecorder({ api: options.api, logger: options.logger });
    this.#tokens = this.#rate;
    this.#refilled = this.#clock();
  }

  get #rate(): number {
    return this.#options.maxWritesPerSecond ?? MAX_WRITES_PER_SECOND;
  }

  #clock(): number {
    return (this.#options.now?.() ?? new Date()).getTime();
  }

  /** Whether this process writes status now (the elected leader among replicas): only then does it act on requests. */
  get writing(): boolean {
    return this.#options.writes?.() ?? true;
  }

  /**
   * The request value last handled for `field`: handled in this process (its status write may still be pending), else
   * as the stored status says; undefined for an endpoint not tracked.
   */
  handled(key: string, field: HandledField): string | undefined {
    this.#forgetWrittenUnlessWriting();
    const tracked = this.#tracked.get(key);
    return tracked && (tracked.handled[field] ?? tracked.written[field] ?? tracked.object.status?.[field]);
  }

  // What this process wrote stands only while it writes status: once another replica was elected, that one may have
  // handled a newer request, and the stored status (not what this one remembers) says what was handled last.
  #forgetWrittenUnlessWriting(): void {
    if (!this.#remembersWrites || this.writing) return;
    for (const tracked of this.#tracked.values()) tracked.written = {};
    this.#remembersWrites = false;
  }

  /**
   * Records a handled request: its value goes into status at once (a failed write is retried on the next tick, and
   * `handled` says it was handled meanwhile), then a Normal Event saying what was done is queued (not waited for).
   * An untracked key is ignored.
   */
  async recordHandled(key: string, fields: HandledFields, reason: string, message: string): Promise<void> {
    const tracked = this.#tracked.get(key);
    if (!tracked) return;
    tracked.handled = { ...tracked.handled, ...fields };
    await this.#serial(key, () => this.#write(key, false));
    this.#recorder.record(tracked.object, 'Normal', reason, message);
  }

  /** Readiness of every tracked endpoint, by `namespace/name`. */
  states(): ReadonlyMap<string, ReadyState> {
    return new Map([...this.#tracked].map(([key, t]) => [key, t.ready]));
  }

  /** Records the outcome of a reconcile and writes the status now if a condition or the generation changed. */
  async observe(key: string, object: NotificationEndpointObject, ready: ReadyState, endpoint: Endpoint | undefined): Promise<void> {
    const previous = this.#tracked.get(key);
    if (previous) {
      // Updated in place: a write in flight records what it wrote into this same record, so the write queued
      // behind it compares against what is stored, not against a copy taken before.
      Object.assign(previous, { object, ready, endpoint });
      for (const field of Object.keys(previous.written) as HandledField[]) {
        if (object.status?.[field] === previous.written[field]) delete previous.written[field];
      }
    } else {
      // Seeded from the stored status so transition times survive a restart.
      this.#tracked.set(key, {
        object, ready, endpoint, conditions: object.status?.conditions ?? [], counters: undefined, lastCountersWrite: 0,
        publicKey: object.status?.signingPublicKey, handled: {}, written: {},
      });
    }
    // A first observation (a new endpoint, or every endpoint after a restart) is written at once only when Ready,
    // the generation or a request differs from what is stored; its counters then wait for the rate like any others.
    await this.#serial(key, () => this.#write(key, false));
  }

  /** Stops tracking an endpoint (its object was deleted). */
  forget(key: string): void {
    this.#tracked.delete(key);
  }

  /** Starts the periodic checks. */
  start(): void {
    const check = this.#options.checkMs ?? 1000;
    this.#timer ??= setInterval(() => void this.tick(), check);
    this.#timer.unref();
  }

  /**
   * Stops the periodic checks and writes changed statuses once more (the final write on shutdown): transitions
   * first, then counters stalest first, for at most the final-write budget (5 s); then sends the Events still
   * queued for what is left of it (at least 1 s) and drops the rest.
   */
  async stop(): Promise<void> {
    clearInterval(this.#timer);
    this.#timer = undefined;
    const started = performance.now();
    await this.tick(true);
    const left = (this.#options.finalWriteBudgetMs ?? FINAL_WRITE_BUDGET_MS) - (performance.now() - started);
    await this.#recorder.stop(Math.max(left, EVENT_FLUSH_MIN_MS));
  }

  /**
   * Writes statuses whose conditions changed, then counters that changed and are due, as the rate allows (with
   * `force`, the last write on shutdown: every change, due or not, for at most 5 s).
   */
  tick(force = false): Promise<void> {
    this.#writing = this.#writing.then(async () => {
      if (this.#options.writes && !this.#options.writes()) {
        this.#forgetWrittenUnlessWriting();
        return;
      }
      const now = this.#clock();
      this.#tokens = Math.min(this.#rate, this.#tokens + ((now - this.#refilled) / 1000) * this.#rate);
      this.#refilled = now;
      const keys = this.#slice(force);
      // Transitions first (Ready's at once, Delivering's as the rate allows); then counters as the rate allows,
      // stalest first, so every endpoint gets its turn.
      const transitions = new Set(keys.filter((key) => this.#transition(key)));
      const counters = keys.filter((key) => !transitions.has(key)).sort((a, b) => (this.#tracked.get(a)?.lastCountersWrite ?? 0) - (this.#tracked.get(b)?.lastCountersWrite ?? 0));
      // The final write on shutdown is not held to the rate, but to a time budget: 10,000 endpoints would otherwise
      // mean 10,000 writes between SIGTERM and the exit (minutes), for counters that are best effort anyway.
      const deadline = performance.now() + (this.#options.finalWriteBudgetMs ?? FINAL_WRITE_BUDGET_MS);
      await this.#each([...transitions], force, () => force && performance.now() > deadline);
      await this.#each(counters, force, () => (force ? performance.now() > deadline : this.#tokens < 1));
    });
    return this.#writing;
  }

  /**
   * The endpoints this tick looks at: every one up to `LOOKED_AT_PER_TICK` (and all on shutdown), else the next ones
   * round the ring from where the last tick stopped. Looking at one costs tens of microseconds (its conditions and
   * counters): at 10,000 endpoints, looking at every one every second took a third of a core while nothing changed.
   * Beyond that many, each is looked at every endpoints / 500 ticks (10,000: every 20 s); writes stay bounded by the rate.
   */
  #slice(force: boolean): string[] {
    const all = [...this.#tracked.keys()];
    const count = this.#options.lookedAtPerTick ?? LOOKED_AT_PER_TICK;
    if (force || all.length <= count) return all;
    const start = this.#cursor % all.length;
    this.#cursor = (start + count) % all.length;
    const slice = all.slice(start, start + count);
    return slice.length < count ? slice.concat(all.slice(0, count - slice.length)) : slice;
  }

  // A few writes side by side: one at a time, an API server answering in 200 ms (10,000 endpoints being created)
  // would hold the writes to 5 a second, whatever the rate allows. Each key's writes stay one after another.
  async #each(keys: readonly string[], force: boolean, enough: () => boolean): Promise<void> {
    let next = 0;
    const writer = async (): Promise<void> => {
      while (next < keys.length && !enough()) {
        const key = keys[next++]!;
        await this.#serial(key, () => this.#write(key, force));
      }
    };
    await Promise.all(Array.from({ length: Math.min(PARALLEL_WRITES, keys.length) }, writer));
  }

  /** Whether the endpoint's conditions (as they would be written now) differ in a transition from what is stored. */
  #transition(key: string): boolean {
    const tracked = this.#tracked.get(key);
    if (!tracked) return false;
    const generation = tracked.object.metadata?.generation;
    return transitionOf(this.#conditions(tracked, new Date(this.#clock()), generation)) !== transitionOf(tracked.conditions) ||
      tracked.object.status?.observedGeneration !== generation || Object.keys(tracked.handled).length > 0;
  }

  // Without this, a tick that comes while a reconcile's write is in flight would compare against the conditions
  // from before that write, send the same transition again and record its Event twice (or write an older
  // Ready after a newer one).
  #serial(key: string, work: () => Promise<void>): Promise<void> {
    const run = (this.#chains.get(key) ?? Promise.resolve()).then(work);
    const tail = run.catch(() => {});
    this.#chains.set(key, tail);
    void tail.then(() => {
      if (this.#chains.get(key) === tail) this.#chains.delete(key);
    });
    return run;
  }

  async #write(key: string, force: boolean): Promise<void> {
    const tracked = this.#tracked.get(key);
    if (!tracked) return; // forgotten while the write waited its turn
    if (this.#options.writes && !this.#options.writes()) return; // another replica writes status
    const now = this.#options.now?.() ?? new Date();
    const generation = tracked.object.metadata?.generation;
    const conditions = this.#conditions(tracked, now, generation);
    const counters = countersOf(this.#view(tracked.endpoint), tracked.publicKey !== undefined);
    // A transition (a condition's status or reason, a new generation, or a request handled) is written at once; a
    // changed message or counter waits for the interval, so a long outage does not write every second.
    // So is a new signing public key (a rotated Secret): receivers fetch it from here to verify the next attempts.
    const keyChanged = 'signingPublicKey' in counters && (counters.signingPublicKey ?? undefined) !== tracked.publicKey;
    const { handled } = tracked;
    // Ready's transitions are what `kubectl wait` and people wait for: at once. Delivering's follow the receiver
    // (10,000 endpoints of one receiver that comes back all change together): before counters, within the rate.
    const urgent = transitionOf(conditions.slice(0, 1)) !== transitionOf(tracked.conditions.filter((c) => c.type === 'Ready')) ||
      tracked.object.status?.observedGeneration !== generation || keyChanged || Object.keys(handled).length > 0;
    const transition = urgent || transitionOf(conditions) !== transitionOf(tracked.conditions);
    const changed = JSON.stringify(counters) !== tracked.counters || JSON.stringify(conditions) !== JSON.stringify(tracked.conditions);
    const due = force || now.getTime() - tracked.lastCountersWrite >= this.#options.intervalMs;
    if (!transition && !(changed && due)) return;
    if (!urgent && !force) {
      // Bounded by the rate: a Delivering transition waits for a token, counters only also for the interval.
      if (this.#tokens < 1) return;
      this.#tokens -= 1;
    }
    const [namespace, name] = [tracked.object.metadata?.namespace ?? '', tracked.object.metadata?.name ?? ''];
    const patch: StatusPatch = { ...(generation !== undefined && { observedGeneration: generation }), conditions, ...counters, ...handled };
    try {
      await this.#options.api.patchStatus(namespace, name, patch);
    } catch (error) {
      this.#options.logger.warn({ endpoint: key, error: describeApiError(error) }, 'status write failed; retrying on the next tick');
      return;
    }
    const before = tracked.conditions;
    tracked.conditions = conditions;
    tracked.counters = JSON.stringify(counters);
    tracked.lastCountersWrite = now.getTime();
    if ('signingPublicKey' in counters) tracked.publicKey = counters.signingPublicKey ?? undefined;
    // Written: from now on the stored status says it (a later patch never carries an old value over a newer one).
    if (tracked.handled === handled) tracked.handled = {};
    if (Object.keys(handled).length > 0) {
      tracked.written = { ...tracked.written, ...handled };
      this.#remembersWrites = true;
    }
    tracked.object = { ...tracked.object, status: { ...tracked.object.status, ...(generation !== undefined && { observedGeneration: generation }), conditions, ...handled } };
    this.#events(tracked.object, before, conditions);
  }

  #conditions(tracked: Tracked, now: Date, generation: number | undefined): Condition[] {
    // AutoDisabled is this process's engine state (retry.disableAfter), seen on the tick like Delivering.
    const ready = currentReadiness(tracked.ready, tracked.endpoint);
    // Nothing runs for an endpoint whose spec was refused or whose Secret is missing: the receiver's side is unknown.
    const view = this.#view(tracked.endpoint);
    const deliveringNow = view ? delivering(view.stats()) : NOT_RUNNING;
    const make = (type: string, status: Condition['status'], reason: string, message: string | undefined): Condition => {
      const old = tracked.conditions.find((c) => c.type === type);
      return {
        type,
        status,
        ...(generation !== undefined && { observedGeneration: generation }),
        // Kubernetes keeps the time of the last change of status, not of every reason or message change.
        lastTransitionTime: old && old.status === status ? old.lastTransitionTime : rfc3339(now.getTime()),
        reason,
        ...(message !== undefined && message !== '' && { message: message.slice(0, 32_768) }),
      };
    };
    return [
      make('Ready', ready.ready ? 'True' : 'False', ready.reason, ready.message),
      make('Delivering', deliveringNow.status, deliveringNow.reason, deliveringNow.message),
    ];
  }

  #view(endpoint: Endpoint | undefined): EndpointView | undefined {
    return endpoint && (this.#options.view ? this.#options.view(endpoint) : endpoint);
  }

  // Queued, not awaited: the write (and the reconcile or tick behind it) goes on while the recorder sends them.
  #events(object: NotificationEndpointObject, before: Condition[], after: Condition[]): void {
    const find = (list: Condition[], type: string): Condition | undefined => list.find((c) => c.type === type);
    const record = (type: 'Normal' | 'Warning', reason: string, message: string): void => this.#recorder.record(object, type, reason, message);
    const [oldReady, newReady] = [find(before, 'Ready'), find(after, 'Ready')];
    if (newReady && (oldReady?.status !== newReady.status || oldReady.reason !== newReady.reason)) {
      if (newReady.status === 'True') record('Normal', newReady.reason, 'endpoint is live in the delivery engine');
      else record('Warning', newReady.reason, newReady.message ?? newReady.reason);
    }
    // Into or out of Unknown (NotRunning) is told by the Ready Event; only the receiver's own transitions are told here.
    const [oldDelivering, newDelivering] = [find(before, 'Delivering'), find(after, 'Delivering')];
    if (newDelivering?.status === 'False' && oldDelivering?.status !== 'False') {
      record('Warning', 'Failing', newDelivering.message ?? 'delivery is failing');
    } else if (newDelivering?.status === 'True' && oldDelivering?.status === 'False') {
      record('Normal', 'Recovered', 'the receiver accepts events again');
    }
  }
}

function transitionOf(conditions: readonly Condition[]): string {
  return JSON.stringify(conditions.map((c) => [c.type, c.status, c.reason, c.observedGeneration]));
}

function countersOf(endpoint: EndpointView | undefined, hadPublicKey: boolean): StatusPatch {
  if (!endpoint) return {};
  // A merge patch removes a field set to null: insecureSkipVerify disappears from status once verification is on,
  // a signingPublicKey written before once the endpoint no longer signs with Ed25519.
  return { insecureSkipVerify: null, ...(hadPublicKey && { signingPublicKey: null }), ...statusCounters(endpoint) };
}
