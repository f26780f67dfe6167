import type { Logger } from 'pino';
import {
  NOTIFICATION_ENDPOINT_RESOURCE as R,
  parseNotificationEndpoint,
  referencedSecrets,
} from '../api/notification-endpoint.ts';
import type { ClusterApi, NotificationEndpointObject } from '../k8s/cluster-api.ts';
import { ApiCallError, describeApiError } from '../k8s/errors.ts';
import type { ReconcileResult } from '../k8s/work-queue.ts';
import type { EndpointConfig } from '../notifications/endpoint.ts';
import type { EndpointSet } from '../notifications/endpoint-set.ts';
import { SecretNotFoundError } from '../sources/endpoint-config.ts';
import { EndpointRemovals } from '../sources/endpoint-removals.ts';
import { prepareEndpoint } from '../sources/prepare-endpoint.ts';
import { readyStateForError } from '../sources/ready-state.ts';
import { grantNarrowed, repositoryGrant, sameGrant } from '../sources/repository-grant.ts';
import type { ReadyState } from '../sources/source.ts';
import { engineActions, pendingRequests, type EndpointActions } from './requested-actions.ts';
import type { StatusWriter } from './status-writer.ts';
import { NotifierError } from '../notifications/errors.ts';

/** Settings of an `EndpointReconciler`. */
export interface ReconcilerOptions {
  api: ClusterApi;
  endpoints: EndpointSet;
  status: StatusWriter;
  logger: Logger;
  /** Called after an endpoint was removed because its object is gone (metrics forget its series). */
  onRemoved?: (key: string, discarded: number) => void;
  /**
   * `--tenancy namespace` (api.md §9): each endpoint receives only the repositories its Namespace's annotation
   * grants; without a grant it does not run (NoRepositoryGrant). Default off: every endpoint may receive every event.
   */
  tenancy?: boolean;
  /** What annotation requests (replay, resume) do to a running endpoint; default the engine's (`engineActions`). */
  actions?: EndpointActions;
  /**
   * Reads the object by `namespace/name`; default a GET from the API server. The controller reads its informers'
   * cache, as controller-runtime does: no request per reconcile, so 10,000 endpoints sync at start in seconds and a
   * resync costs the API server nothing.
   */
  read?: (namespace: string, name: string) => Promise<NotificationEndpointObject | undefined> | NotificationEndpointObject | undefined;
  /**
   * Whether a new endpoint starts its counters from its stored status (best effort across restarts); default on.
   * Off with a shared database: it keeps the cluster's counters, and a seeded count would be reported to it again.
   */
  carryCounters?: boolean;
}

/** A Secret is missing: the reconcile is retried with backoff (and at once when the Secret appears). */
export class SecretPendingError extends NotifierError {
  constructor(message: string, options?: ErrorOptions) {
    super('ERR_SECRET_PENDING', message, options);
  }
}

/**
 * Makes the delivery engine match one NotificationEndpoint (after Flux's reconcilers): reads the object by key
 * (the latest the cache or the API server has, never the watch event's copy), validates what the schema cannot (reserved headers, Secrets that must
 * exist), adds or updates the endpoint in place (its queue kept) or removes it when the object is gone, and
 * in one `finally` records the outcome, whatever it was, in the status and as Events. An invalid spec is
 * terminal (Ready=False, not retried; the last valid configuration keeps running); a missing Secret or a
 * failed API call is recorded too (SecretNotFound, ReconcileFailed) and retried with backoff. With tenancy, the
 * Namespace's repository grant is read fresh first and becomes part of the endpoint's filter, where events are
 * routed: a withdrawn grant removes the endpoint (NoRepositoryGrant, not retried), and a narrowed one starts it
 * again with an empty queue, so nothing queued under the wider grant is delivered. Once an endpoint runs (or its
 * last valid configuration does), the requests its annotations carry (replay, resume) are handled once each, by the
 * replica that writes status, which records each value handled in status with a Normal Event.
 */
export class EndpointReconciler {
  #options: ReconcilerOptions;
  #removals: EndpointRemovals;
  #actions: EndpointActions;

  constructor(options: ReconcilerOptions) {
    this.#options = options;
    this.#actions = options.actions ?? engineActions(options.endpoints);
    this.#removals = new EndpointRemovals({
      endpoints: options.endpoints,
      logger: options.logger,
      ...(options.onRemoved && { onRemoved: options.onRemoved }),
    });
  }

  /** Reconciles `namespace/name`; rejects when it must be retried. */
  async reconcile(key: string): Promise<ReconcileResult> {
    const { api, endpoints, status } = this.#options;
    const [namespace = '', name = ''] = key.split('/');
    // A failed read has no object to be recorded on (Flux does the same): the work queue logs it and retries.
    const object = await (this.#options.read ? this.#options.read(namespace, name) : api.getEndpoint(namespace, name));
    if (!object || object.metadata?.deletionTimestamp) {
      status.forget(key);
      // Out of routing now; the attempt in flight ends and the queue is discarded in the background.
      this.#removals.remove(key);
      return {};
    }
    let ready: ReadyState | undefined;
    try {
      ready = await this.#configure(key, namespace, name, object);
    } catch (error) {
      const failure = this.#failure(key, error);
      const url = (object.spec as { url?: unknown } | undefined)?.url;
      ready = typeof url === 'string' ? { ...failure.ready, url } : failure.ready;
      if (failure.retry) throw failure.retry;
    } finally {
      // The one place the outcome is recorded: conditions and counters in status, an Event on a transition.
      if (ready) await status.observe(key, object, ready, endpoints.get(key));
    }
    if (endpoints.get(key)) await this.#handleRequests(key, object);
    return {};
  }

  /** Resolves once every endpoint removed so far has closed (and `onRemoved` was called for it). */
  idle(): Promise<void> {
    return this.#removals.idle();
  }

  async #configure(key: string, namespace: string, name: string, object: NotificationEndpointObject): Promise<ReadyState> {
    const { endpoints, logger } = this.#options;
    // First, so a grant change applies even when the rest of the spec fails (an invalid spec keeps the last
    // valid configuration running, but never with a grant wider than the Namespace's current one).
    const grant = this.#options.tenancy ? await this.#grant(key, namespace) : undefined;
    const { spec } = parseNotificationEndpoint({ apiVersion: R.apiVersion, kind: R.kind, metadata: { name, namespace }, spec: object.spec });
    const secrets = await this.#secrets(namespace, object.spec);
    const prepared = await prepareEndpoint(spec, namespace, { read: (_ns, secret) => secrets.get(secret) }, endpoints);
    const { ready } = prepared;
    const config = grant ? withGrant(prepared.config, grant) : prepared.config;
    await this.#removals.settled(key); // deleted and created again (or its grant narrowed): the old one's clean-up goes first
    const fresh = endpoints.get(key) === undefined;
    const what = endpoints.apply(key, config);
    // Counters carry across restarts, best effort: the first time we run the endpoint, start from its status.
    if (fresh && object.status && this.#options.carryCounters !== false) endpoints.get(key)?.seedStats(object.status);
    logger.info({ endpoint: key, generation: object.metadata?.generation }, `endpoint ${what}`);
    return ready;
  }

  /**
   * The repository grant of the endpoint's Namespace, read fresh, and applied to the running endpoint at once:
   * none (`NoRepositoryGrantError`) removes it, discarding its queue and dead letters; a narrowed one (a glob taken
   * away) removes it too, to be created again empty; a wider one updates it in place, queue kept. A failed read
   * rejects with `ApiCallError` (retried with backoff; the running endpoint keeps its last grant meanwhile).
   */
  async #grant(key: string, namespace: string): Promise<readonly string[]> {
    const { api, endpoints, logger } = this.#options;
    let object;
    try {
      object = await api.getNamespace(namespace);
    } catch (error) {
      throw new ApiCallError(`reading Namespace ${namespace}`, error);
    }
    let grant: readonly string[];
    try {
      grant = repositoryGrant(namespace, object?.metadata?.annotations);
    } catch (error) {
      if (this.#removals.remove(key)) logger.warn({ endpoint: key, namespace }, 'repository grant withdrawn: endpoint stopped, its pending events and dead letters discarded');
      throw error;
    }
    const running = endpoints.get(key);
    const before = running?.config.filter.grant;
    if (running && !sameGrant(before, grant)) {
      if (grantNarrowed(before, grant)) {
        this.#removals.remove(key);
        logger.warn({ endpoint: key, namespace, before, grant }, 'repository grant narrowed: endpoint restarted, its pending events and dead letters discarded');
      } else {
        endpoints.apply(key, withGrant(running.config, grant));
        logger.info({ endpoint: key, namespace, before, grant }, 'repository grant widened');
      }
    }
    return grant;
  }

  /**
   * Handles the object's requests not handled yet, one after the other, and records each value in status. Only the
   * replica that writes status acts (the others would replay a shared database's dead letters a second time); a
   * replica that starts writing status looks for requests left (`Controller.handleRequestsLeft`). An action that
   * fails rejects, so the reconcile is retried with backoff; an endpoint gone meanwhile leaves the request pending.
   */
  async #handleRequests(key: string, object: NotificationEndpointObject): Promise<void> {
    const { status, logger } = this.#options;
    if (!status.writing) return;
    for (const { action, value } of pendingRequests(object, (field) => status.handled(key, field))) {
      let outcome: string | undefined;
      try {
        outcome = await action.run(this.#actions, key);
      } catch (error) {
        logger.warn({ endpoint: key, annotation: action.annotation, value, error: error instanceof Error ? error.message : String(error) }, 'requested action failed; retrying with backoff');
        throw error;
      }
      if (outcome === undefined) continue;
      logger.info({ endpoint: key, annotation: action.annotation, value }, `${action.reason}: ${outcome}`);
      await status.recordHandled(key, { [action.handled]: value }, action.reason, `${outcome} (${action.annotation}: ${value})`);
    }
  }

  /** The Ready state a failed reconcile records, and the error to retry with (none when it is terminal). */
  #failure(key: string, error: unknown): { ready: ReadyState; retry?: Error } {
    const { endpoints, logger } = this.#options;
    const running = endpoints.get(key) ? '; the last valid configuration keeps running' : '';
    const known = readyStateForError(error);
    if (!known) {
      // Not about the endpoint (an API call failed): recorded, and the work queue retries it with backoff.
      const message = `${describeApiError(error)}; retrying with backoff${running}`;
      return { ready: { ready: false, reason: 'ReconcileFailed', message }, retry: error instanceof Error ? error : new Error(String(error)) };
    }
    const ready = { ...known, message: `${known.message ?? ''}${running}` };
    logger.warn({ endpoint: key, reason: ready.reason, error: ready.message }, 'endpoint not ready');
    if (error instanceof SecretNotFoundError) return { ready, retry: new SecretPendingError(known.message ?? '', { cause: error }) };
    return { ready };
  }

  /** Reads every Secret the spec references (each once), fresh from the API. */
  async #secrets(namespace: string, spec: unknown): Promise<Map<string, ReadonlyMap<string, Buffer>>> {
    const secrets = new Map<string, ReadonlyMap<string, Buffer>>();
    for (const name of referencedSecrets(spec)) {
      let secret: ReadonlyMap<string, Buffer> | undefined;
      try {
        secret = await this.#options.api.getSecret(namespace, name);
      } catch (error) {
        throw new ApiCallError(`reading Secret ${name}`, error);
      }
      if (secret) secrets.set(name, secret);
    }
    return secrets;
  }
}

// The configuration with the Namespace's grant in its filter: the engine ANDs it with the endpoint's own rules.
function withGrant(config: EndpointConfig, grant: readonly string[]): EndpointConfig {
  return { ...config, filter: { ...config.filter, grant } };
}
