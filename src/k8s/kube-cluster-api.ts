import {
  CoreV1Api,
  CustomObjectsApi,
  PatchStrategy,
  setHeaderOptions,
  type CoreV1Event,
  type KubeConfig,
} from '@kubernetes/client-node';
import { NOTIFICATION_ENDPOINT_RESOURCE as R } from '../api/notification-endpoint.ts';
import type { ClusterApi, NotificationEndpointObject, StatusPatch } from './cluster-api.ts';
import { withDeadline } from './deadline.ts';
import { statusCode } from './errors.ts';

/** The component name on Events and the field manager on writes. */
export const COMPONENT = 'registry-notifier';

// Transient API failures (conflict, throttling, 5xx) are retried this many times in place before the caller's
// own backoff takes over.
const ATTEMPTS = 3;

/** `ClusterApi` over client-node: NotificationEndpoints, their status subresource, Secrets and Events. */
export class KubeClusterApi implements ClusterApi {
  #custom: CustomObjectsApi;
  #core: CoreV1Api;

  constructor(kc: KubeConfig) {
    this.#custom = kc.makeApiClient(CustomObjectsApi);
    this.#core = kc.makeApiClient(CoreV1Api);
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
