import type { Logger } from 'pino';
import {
  NOTIFICATION_ENDPOINT_RESOURCE as R,
  parseNotificationEndpoint,
  referencedSecrets,
} from '../api/notification-endpoint.ts';
import type { ReconcileResult } from '../k8s/work-queue.ts';
import type { EndpointSet } from '../notifications/endpoint-set.ts';
import { SecretNotFoundError } from '../sources/endpoint-config.ts';
import { prepareEndpoint } from '../sources/prepare-endpoint.ts';
import { readyStateForError } from '../sources/ready-state.ts';
import type { ReadyState } from '../sources/source.ts';
import type { ClusterApi } from '../k8s/cluster-api.ts';
import type { StatusWriter } from './status-writer.ts';

/** Settings of an `EndpointReconciler`. */
export interface ReconcilerOptions {
  api: ClusterApi;
  endpoints: EndpointSet;
  status: StatusWriter;
  logger: Logger;
  /** Called after an endpoint was removed because its object is gone (metrics forget its series). */
  onRemoved?: (key: string, discarded: number) => void;
}

/** A Secret is missing: the reconcile is retried with backoff (and at once when the Secret appears). */
export class SecretPendingError extends Error {
  /** Stable identifier. */
  readonly code = 'ERR_SECRET_PENDING';
}

/**
 * Makes the delivery engine match one NotificationEndpoint (after Flux's reconcilers): reads the object by key
 * (never the watch event's copy), validates what the schema cannot (reserved headers, Secrets that must
 * exist), adds or updates the endpoint in place (its queue kept) or removes it when the object is gone, then
 * writes the status. An invalid spec is terminal (Ready=False, not retried; the last valid configuration
 * keeps running); a missing Secret or an API failure is retried with backoff.
 */
export class EndpointReconciler {
  #options: ReconcilerOptions;

  constructor(options: ReconcilerOptions) {
    this.#options = options;
  }

  /** Reconciles `namespace/name`. */
  async reconcile(key: string): Promise<ReconcileResult> {
    const { api, endpoints, status, logger } = this.#options;
    const [namespace = '', name = ''] = key.split('/');
    const object = await api.getEndpoint(namespace, name);
    if (!object || object.metadata?.deletionTimestamp) {
      status.forget(key);
      if (endpoints.get(key)) {
        const discarded = await endpoints.remove(key);
        this.#options.onRemoved?.(key, discarded);
        (discarded > 0 ? logger.warn.bind(logger) : logger.info.bind(logger))({ endpoint: key, discarded }, 'endpoint removed');
      }
      return {};
    }
    let ready: ReadyState;
    let retry: Error | undefined;
    try {
      const { spec } = parseNotificationEndpoint({ apiVersion: R.apiVersion, kind: R.kind, metadata: { name, namespace }, spec: object.spec });
      const secrets = await this.#secrets(namespace, object.spec);
      const prepared = await prepareEndpoint(spec, namespace, { read: (_ns, secret) => secrets.get(secret) }, endpoints);
      const { config } = prepared;
      const fresh = endpoints.get(key) === undefined;
      const what = endpoints.apply(key, config);
      // Counters carry across restarts, best effort: the first time we run the endpoint, start from its status.
      if (fresh && object.status) endpoints.get(key)?.seedStats(object.status);
      logger.info({ endpoint: key, generation: object.metadata?.generation }, `endpoint ${what}`);
      ready = prepared.ready;
    } catch (error) {
      const running = endpoints.get(key) ? '; the last valid configuration keeps running' : '';
      const state = readyStateForError(error);
      if (!state) throw error; // an API failure: the work queue retries with backoff
      ready = { ...state, message: `${state.message ?? ''}${running}` };
      if (error instanceof SecretNotFoundError) retry = new SecretPendingError(state.message);
      logger.warn({ endpoint: key, reason: ready.reason, error: ready.message }, 'endpoint not ready');
    }
    await status.observe(key, object, ready, endpoints.get(key));
    if (retry) throw retry;
    return {};
  }

  /** Reads every Secret the spec references (each once), fresh from the API. */
  async #secrets(namespace: string, spec: unknown): Promise<Map<string, ReadonlyMap<string, Buffer>>> {
    const secrets = new Map<string, ReadonlyMap<string, Buffer>>();
    for (const name of referencedSecrets(spec)) {
      const secret = await this.#options.api.getSecret(namespace, name);
      if (secret) secrets.set(name, secret);
    }
    return secrets;
  }
}
