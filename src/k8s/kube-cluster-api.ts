import {
  CoreV1Api,
  CustomObjectsApi,
  PatchStrategy,
  setHeaderOptions,
  Watch,
  type CoreV1Event,
  type KubeConfig,
  type KubernetesObject,
} from '@kubernetes/client-node';
import { NOTIFICATION_ENDPOINT_RESOURCE as R, REPOSITORIES_ANNOTATION } from '../api/notification-endpoint.ts';
import type { ClusterApi, ListResult, ListWatch, NotificationEndpointObject, StatusPatch } from './cluster-api.ts';
import { withDeadline } from './deadline.ts';
import { statusCode } from './errors.ts';

/** The component name on Events and the field manager on writes. */
export const COMPONENT = 'registry-notifier';

// Transient API failures (conflict, throttling, 5xx) are retried this many times in place before the caller's
// own backoff takes over.
const ATTEMPTS = 3;

// client-node ends a watch after 30 s without data; the server sends a bookmark only about once a minute, so an
// idle watch would reconnect every 30 s from a resourceVersion that never moves, and relist after every etcd
// compaction. Longer than the server's own watch timeout (the informer asks for 300 s + up to 60 s of jitter),
// so that timeout ends watches, and this one only a connection that went silent.
export const WATCH_INACTIVITY_MS = 420_000;

/**
 * `ClusterApi` over client-node: NotificationEndpoints (get, list, watch) and their status subresource, Secrets
 * (get; list and watch as identities), Namespaces (get, list, watch as identity and grant annotation) and Events. Every call but a watch has the 30 s deadline of `withDeadline`;
 * a watch ends at the server's timeout, or after `WATCH_INACTIVITY_MS` without data.
 */
export class KubeClusterApi implements ClusterApi {
  #custom: CustomObjectsApi;
  #core: CoreV1Api;
  #watch: Watch;

  constructor(kc: KubeConfig) {
    this.#custom = kc.makeApiClient(CustomObjectsApi);
    this.#core = kc.makeApiClient(CoreV1Api);
    this.#watch = new Watch(kc);
    Object.assign(this.#watch, { requestTimeoutMs: WATCH_INACTIVITY_MS });
  }

  endpoints(namespace: string | undefined): ListWatch<NotificationEndpointObject> {
    const { group, version, plural } = R;
    return this.#listWatch<NotificationEndpointObject>(
      `/apis/${group}/${version}${namespace ? `/namespaces/${namespace}` : ''}/${plural}`,
      async () => listResult(await withDeadline('list notificationendpoints', () => namespace
        ? this.#custom.listNamespacedCustomObject({ group, version, namespace, plural })
        : this.#custom.listClusterCustomObject({ group, version, plural }))),
      (object) => object,
    );
  }

  secrets(namespace: string | undefined): ListWatch<KubernetesObject> {
    return this.#listWatch<KubernetesObject>(
      namespace ? `/api/v1/namespaces/${namespace}/secrets` : '/api/v1/secrets',
      async () => listResult(await withDeadline('list secrets', () => (namespace
        ? this.#core.listNamespacedSecret({ namespace })
        : this.#core.listSecretForAllNamespaces()))),
      // Only a Secret's identity matters to the informer: the data stays out of its cache (memory, and no
      // secret value lingers where it is not needed).
      ({ metadata }) => ({ metadata: { name: metadata?.name, namespace: metadata?.namespace, resourceVersion: metadata?.resourceVersion } }),
    );
  }

  namespaces(name: string | undefined): ListWatch<KubernetesObject> {
    // One namespace: the collection narrowed to it by name, so a ClusterRole with resourceNames allows list and watch.
    const query: Record<string, string> = name === undefined ? {} : { fieldSelector: `metadata.name=${name}` };
    return this.#listWatch<KubernetesObject>(
      '/api/v1/namespaces',
      async () => listResult(await withDeadline('list namespaces', () => this.#core.listNamespace(query))),
      reduceNamespace,
      query,
    );
  }

  async getNamespace(name: string): Promise<KubernetesObject | undefined> {
    const namespace = await notFoundAsUndefined(() => withDeadline('get namespace', () => this.#core.readNamespace({ name })));
    return namespace && reduceNamespace(namespace);
  }

  #listWatch<T extends KubernetesObject>(path: string, list: () => Promise<ListResult<unknown>>, reduce: (object: T) => T, query: Record<string, string> = {}): ListWatch<T> {
    return {
      list: async () => {
        const { items, resourceVersion } = await list();
        return { items: (items as T[]).map(reduce), resourceVersion };
      },
      watch: (options, onEvent, done) =>
        this.#watch.watch(path, { ...query, ...options }, (type: string, object: T) => {
          // ERROR carries a Status and BOOKMARK only a resourceVersion: passed on as sent.
          onEvent(type, type === 'ERROR' || type === 'BOOKMARK' ? object : reduce(object));
        }, done),
    };
  }

  async getEndpoint(namespace: string, name: string): Promise<NotificationEndpointObject | undefined> {
    return notFoundAsUndefined(() =>
      withDeadline('get notificationendpoint', () =>
        this.#custom.getNamespacedCustomObject({ group: R.group, version: R.version, plural: R.plural, namespace, name }) as Promise<NotificationEndpointObject>,
      ),
    );
  }

  async patchStatus(namespace: string, name: string, status: StatusPatch): Promise<void> {
    // A merge patch carries no resourceVersion: it cannot conflict with a concurrent spec change, and the
    // status it writes names the generation it describes (observedGeneration).
    await retried(() =>
      notFoundAsUndefined(() =>
        withDeadline('patch notificationendpoint status', () =>
          this.#custom.patchNamespacedCustomObjectStatus(
            { group: R.group, version: R.version, plural: R.plural, namespace, name, body: { status }, fieldManager: COMPONENT },
            setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
          ),
        ),
      ),
    );
  }

  async getSecret(namespace: string, name: string): Promise<ReadonlyMap<string, Buffer> | undefined> {
    const secret = await notFoundAsUndefined(() => withDeadline('get secret', () => this.#core.readNamespacedSecret({ namespace, name })));
    if (!secret) return undefined;
    const data = new Map<string, Buffer>();
    for (const [key, value] of Object.entries(secret.data ?? {})) data.set(key, Buffer.from(value, 'base64'));
    for (const [key, value] of Object.entries(secret.stringData ?? {})) data.set(key, Buffer.from(value, 'utf8'));
    return data;
  }

  async recordEvent(object: NotificationEndpointObject, type: 'Normal' | 'Warning', reason: string, message: string): Promise<void> {
    const now = new Date();
    const namespace = object.metadata?.namespace ?? 'default';
    const event: CoreV1Event = {
      metadata: { generateName: `${object.metadata?.name ?? 'endpoint'}.`, namespace },
      involvedObject: {
        apiVersion: R.apiVersion,
        kind: R.kind,
        name: object.metadata?.name,
        namespace,
        uid: object.metadata?.uid,
        resourceVersion: object.metadata?.resourceVersion,
      },
      type,
      reason,
      message: message.slice(0, 1024),
      source: { component: COMPONENT },
      reportingComponent: COMPONENT,
      firstTimestamp: now,
      lastTimestamp: now,
      count: 1,
    };
    await withDeadline('create event', () => this.#core.createNamespacedEvent({ namespace, body: event }));
  }
}

// Only what tenancy reads stays in memory: the identity and the grant annotation (not labels, status or other
// annotations, such as kubectl's last-applied copy of the whole object).
function reduceNamespace({ metadata }: KubernetesObject): KubernetesObject {
  const grant = metadata?.annotations?.[REPOSITORIES_ANNOTATION];
  return {
    metadata: {
      name: metadata?.name,
      resourceVersion: metadata?.resourceVersion,
      ...(grant !== undefined && { annotations: { [REPOSITORIES_ANNOTATION]: grant } }),
    },
  };
}

function listResult(list: { items?: unknown[]; metadata?: { resourceVersion?: string } }): ListResult<unknown> {
  return { items: list.items ?? [], resourceVersion: list.metadata?.resourceVersion ?? '' };
}

async function notFoundAsUndefined<T>(call: () => Promise<T>): Promise<T | undefined> {
  try {
    return await call();
  } catch (error) {
    if (statusCode(error) === 404) return undefined;
    throw error;
  }
}

async function retried<T>(call: () => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await call();
    } catch (error) {
      const code = statusCode(error);
      const transient = code === 409 || code === 429 || (code !== undefined && code >= 500);
      if (!transient || attempt >= ATTEMPTS) throw error;
      await new Promise((resolve) => setTimeout(resolve, 100 * attempt));
    }
  }
}
