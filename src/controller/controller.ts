import type { KubernetesObject } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import { referencedSecrets, REPOSITORIES_ANNOTATION } from '../api/notification-endpoint.ts';
import type { Delay } from '../k8s/backoff.ts';
import type { ClusterApi, NotificationEndpointObject } from '../k8s/cluster-api.ts';
import { Informer, keyOf } from '../k8s/informer.ts';
import { WorkQueue } from '../k8s/work-queue.ts';
import type { EndpointSet } from '../notifications/endpoint-set.ts';
import type { EndpointSource, ReadyState } from '../sources/source.ts';
import { EndpointReconciler } from './reconciler.ts';
import { pendingRequests, requestSignature, type EndpointActions } from './requested-actions.ts';
import { StatusWriter, type StatusWriterOptions } from './status-writer.ts';

// A periodic full reconcile catches what no watch event announced (a missed event, a Secret read that failed
// silently upstream): cheap (a GET per object), and rare enough not to matter to the API server.
const RESYNC_MS = 10 * 60_000;

/** Settings of a `Controller`. */
export interface ControllerOptions {
  /** The Kubernetes API: `KubeClusterApi` in production, an in-memory fake in tests. */
  api: ClusterApi;
  endpoints: EndpointSet;
  /** Namespaces to watch; empty = all. */
  namespaces: readonly string[];
  statusIntervalMs: number;
  logger: Logger;
  onRemoved?: (key: string, discarded: number) => void;
  /** Replaces the retry delay of informers and the work queue (tests). */
  delay?: Delay;
  /** Every endpoint is reconciled again this often, whatever the watches said (default 10 minutes). */
  resyncMs?: number;
  /** Status writes per second at most (`--status-rate`); see `StatusWriterOptions`. */
  maxStatusWritesPerSecond?: number;
  /** What status shows of a running endpoint (cluster-wide counters with a shared database). */
  statusView?: StatusWriterOptions['view'];
  /** Whether this replica writes status now (the elected leader); default always. */
  writesStatus?: () => boolean;
  /**
   * `--tenancy namespace` (api.md §9): Namespaces are watched too (the watched ones, or all), each endpoint
   * receives only the repositories its Namespace's annotation grants, and a changed annotation reconciles the
   * endpoints of that namespace. Default off.
   */
  tenancy?: boolean;
  /** What annotation requests (replay, resume) do; default the engine's (`engineActions`). */
  actions?: EndpointActions;
  /**
   * Whether a new endpoint starts its counters from its stored status (best effort across restarts); default on.
   * Off with a shared database: it keeps the cluster's counters, and a seeded count would be reported to it again.
   */
  carryCounters?: boolean;
}

// Reconciles side by side (each waits on the API server, not on this process).
const RECONCILE_CONCURRENCY = 16;

/**
 * Cluster mode's endpoint source: watches NotificationEndpoints (and the Secrets they reference) in all or
 * some namespaces and reconciles the live delivery engine, one key at a time. Ready once the initial list has
 * been reconciled. Spec changes (a new generation), a new value of a request annotation (replay, resume: they do
 * not change the generation), deletions, changes of referenced Secrets and (with tenancy) of a Namespace's
 * repository grant trigger a reconcile; our own status writes and other metadata changes do not.
 */
export class Controller implements EndpointSource {
  #options: ControllerOptions;
  #status: StatusWriter;
  #queue: WorkQueue;
  #reconciler: EndpointReconciler;
  #endpointInformers: Informer<NotificationEndpointObject>[] = [];
  #secretInformers: Informer<KubernetesObject>[] = [];
  #namespaceInformers: Informer<KubernetesObject>[] = [];
  /** With tenancy: each known Namespace's grant annotation as last seen (undefined: none); forgotten when it is deleted. */
  #grants = new Map<string, string | undefined>();
  /** Per endpoint, what a watch event must change to be reconciled: the generation and the request annotations. */
  #seen = new Map<string, string>();
  #ready = false;
  #closed = false;
  #resync: NodeJS.Timeout | undefined;

  constructor(options: ControllerOptions) {
    this.#options = options;
    const { api, logger } = options;
    this.#status = new StatusWriter({
      api,
      logger: logger.child({ component: 'status' }),
      intervalMs: options.statusIntervalMs,
      ...(options.maxStatusWritesPerSecond !== undefined && { maxWritesPerSecond: options.maxStatusWritesPerSecond }),
      ...(options.statusView && { view: options.statusView }),
      ...(options.writesStatus && { writes: options.writesStatus }),
    });
    const reconciler = (this.#reconciler = new EndpointReconciler({
      api,
      endpoints: options.endpoints,
      status: this.#status,
      logger: logger.child({ component: 'reconciler' }),
      ...(options.onRemoved && { onRemoved: options.onRemoved }),
      ...(options.tenancy && { tenancy: true }),
      ...(options.actions && { actions: options.actions }),
      ...(options.carryCounters === false && { carryCounters: false }),
      read: (namespace, name) => this.#cached(`${namespace}/${name}`),
    }));
    this.#queue = new WorkQueue({
      handler: (key) => reconciler.reconcile(key),
      // Reconciles wait on the API server (a status write; Events go out behind it), not on this process: 10,000 endpoints
      // applied at once are Ready in seconds with 16 side by side, where 4 took minutes.
      concurrency: RECONCILE_CONCURRENCY,
      logger: logger.child({ component: 'work-queue' }),
      ...(options.delay && { delay: options.delay }),
    });
    this.#buildInformers();
  }

  get ready(): boolean {
    return this.#ready;
  }

  /** The informers' latest copy of the object; undefined once it is deleted. */
  #cached(key: string): NotificationEndpointObject | undefined {
    for (const informer of this.#endpointInformers) {
      const object = informer.get(key);
      if (object) return object;
    }
    return undefined;
  }

  states(): ReadonlyMap<string, ReadyState> {
    return this.#status.states();
  }

  mayForget(name: string): boolean {
    const namespace = name.split('/')[0] ?? '';
    const watched = this.#options.namespaces.length === 0 || this.#options.namespaces.includes(namespace);
    // An endpoint without a repository grant keeps nothing either: it would be discarded had it been running.
    const state = this.#status.states().get(name);
    return this.#ready && watched && (!state || state.reason === 'NoRepositoryGrant');
  }

  #informers(): Informer<KubernetesObject>[] {
    return [...this.#endpointInformers, ...this.#secretInformers, ...this.#namespaceInformers];
  }

  /** Lists and watches; resolves once every listed endpoint has been reconciled once. */
  async start(): Promise<void> {
    for (const informer of this.#informers()) informer.start();
    await Promise.all(this.#informers().map((i) => i.waitForSync()));
    await this.#queue.whenIdle();
    this.#status.start();
    this.#resync = setInterval(() => this.resync(), this.#options.resyncMs ?? RESYNC_MS);
    this.#resync.unref();
    this.#ready = !this.#closed;
    this.#options.logger.info({ endpoints: this.#options.endpoints.list().length, namespaces: this.#options.namespaces.length ? this.#options.namespaces : 'all', tenancy: this.#options.tenancy ? 'namespace' : 'none' }, 'controller synced');
  }

  /** Queues every known endpoint for a reconcile (what the periodic resync does). */
  resync(): void {
    for (const informer of this.#endpointInformers) for (const endpoint of informer.list()) this.#queue.add(keyOf(endpoint));
  }

  /**
   * Queues the endpoints whose watched copy carries a request (replay, resume) that its status does not show handled:
   * what a replica that just started writing status (the new leader) calls, since the others leave requests alone.
   */
  handleRequestsLeft(): void {
    for (const informer of this.#endpointInformers) {
      for (const endpoint of informer.list()) if (pendingRequests(endpoint).length > 0) this.#queue.add(keyOf(endpoint));
    }
  }

  /** Stops watching and reconciling, then waits for removed endpoints to finish closing; idempotent. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#ready = false;
    clearInterval(this.#resync);
    await Promise.all(this.#informers().map((i) => i.stop()));
    await this.#queue.stop();
    await this.#reconciler.idle();
  }

  /** The final status write, after the queues drained. */
  async finish(): Promise<void> {
    await this.#status.stop();
  }

  #buildInformers(): void {
    const { api, namespaces, logger, delay, tenancy } = this.#options;
    const scopes: (string | undefined)[] = namespaces.length > 0 ? [...namespaces] : [undefined];
    for (const namespace of scopes) {
      // Namespaces are cluster-scoped: all of them, or each watched one by name (what RBAC's resourceNames allows).
      if (tenancy) {
        this.#namespaceInformers.push(new Informer({
          name: namespace ? `namespace ${namespace}` : 'namespaces',
          source: api.namespaces(namespace),
          logger,
          ...(delay && { delay }),
          onEvent: (type, object) => this.#onNamespace(type, object),
        }));
      }
      const where = namespace ? ` in ${namespace}` : '';
      this.#endpointInformers.push(new Informer({
        name: `notificationendpoints${where}`,
        source: api.endpoints(namespace),
        logger,
        ...(delay && { delay }),
        onEvent: (type, object) => this.#onEndpoint(type, object),
      }));
      this.#secretInformers.push(new Informer({
        name: `secrets${where}`,
        source: api.secrets(namespace),
        logger,
        ...(delay && { delay }),
        onEvent: (_type, secret) => this.#onSecret(secret),
      }));
    }
  }

  #onEndpoint(type: 'ADDED' | 'MODIFIED' | 'DELETED', object: NotificationEndpointObject): void {
    const key = keyOf(object);
    const seen = `${object.metadata?.generation}/${requestSignature(object)}`;
    if (type === 'DELETED') this.#seen.delete(key);
    else if (type === 'MODIFIED' && this.#seen.get(key) === seen && !object.metadata?.deletionTimestamp) return; // status or other metadata only
    else this.#seen.set(key, seen);
    this.#queue.add(key);
  }

  // A changed grant reconciles the namespace's endpoints (their reconcile reads it fresh); other changes to the
  // Namespace (labels, status) do not. A deleted Namespace's endpoints are deleted with it; they are reconciled
  // anyway, so none outlives it, and its grant is forgotten.
  #onNamespace(type: 'ADDED' | 'MODIFIED' | 'DELETED', object: KubernetesObject): void {
    const namespace = object.metadata?.name;
    if (namespace === undefined) return;
    const grant = object.metadata?.annotations?.[REPOSITORIES_ANNOTATION];
    if (type === 'DELETED') this.#grants.delete(namespace);
    else if (this.#grants.has(namespace) && this.#grants.get(namespace) === grant) return;
    else this.#grants.set(namespace, grant);
    for (const informer of this.#endpointInformers) {
      for (const endpoint of informer.list()) if (endpoint.metadata?.namespace === namespace) this.#queue.add(keyOf(endpoint));
    }
  }

  #onSecret(secret: KubernetesObject): void {
    const namespace = secret.metadata?.namespace;
    const name = secret.metadata?.name;
    for (const informer of this.#endpointInformers) {
      for (const endpoint of informer.list()) {
        if (endpoint.metadata?.namespace === namespace && name !== undefined && referencedSecrets(endpoint.spec).includes(name)) this.#queue.add(keyOf(endpoint));
      }
    }
  }
}
