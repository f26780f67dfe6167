import type { KubernetesObject } from '@kubernetes/client-node';
import type { NotificationEndpointStatus } from '../api/notification-endpoint.ts';

/** A NotificationEndpoint as the API server returns it; `spec` is unvalidated. */
export interface NotificationEndpointObject extends KubernetesObject {
  spec?: unknown;
  status?: NotificationEndpointStatus;
}

/** A status patch: fields to set, or `null` to clear one (JSON merge patch). */
export type StatusPatch = { [K in keyof NotificationEndpointStatus]?: NotificationEndpointStatus[K] | null };

/** What a list call returns: the objects and the collection's resourceVersion to watch from. */
export interface ListResult<T> {
  items: T[];
  resourceVersion: string;
}

/** The query of one watch request, as the informer chooses it. */
export interface WatchOptions {
  resourceVersion: string;
  allowWatchBookmarks: boolean;
  /** The server ends the watch after this long (a normal close, not a failure). */
  timeoutSeconds: number;
}

/**
 * One collection (a resource in one namespace, or in all) as list and watch calls, after client-go's ListWatch.
 * `list` settles within the API call deadline. `watch` opens one connection: `onEvent` gets each event in order
 * with its type as the server sent it (`ADDED`, `MODIFIED`, `DELETED`; `BOOKMARK` with only a resourceVersion;
 * `ERROR` with a Status), then `done` is called exactly once when the connection ends (null or undefined for a
 * normal close, else the error; an abort through the returned controller ends it as an `AbortError`). It
 * resolves with that controller once the response has started, and may reject instead when the request cannot
 * be made at all.
 */
export interface ListWatch<T extends KubernetesObject> {
  list(): Promise<ListResult<T>>;
  watch(options: WatchOptions, onEvent: (type: string, object: T) => void, done: (error: unknown) => void): Promise<AbortController>;
}

/**
 * What the controller needs of the Kubernetes API: a port, so the controller and its tests swap the whole API
 * in one place. `KubeClusterApi` implements it with client-node; tests use an in-memory fake.
 */
export interface ClusterApi {
  /** The object as stored now, or undefined when it does not exist. */
  getEndpoint(namespace: string, name: string): Promise<NotificationEndpointObject | undefined>;
  /** Merge-patches the status subresource; a deleted object is not an error. */
  patchStatus(namespace: string, name: string, status: StatusPatch): Promise<void>;
  /** The Secret's decoded data, or undefined when it does not exist. */
  getSecret(namespace: string, name: string): Promise<ReadonlyMap<string, Buffer> | undefined>;
  /** Records a Kubernetes Event about the object (best effort: failures are the caller's to log). */
  recordEvent(object: NotificationEndpointObject, type: 'Normal' | 'Warning', reason: string, message: string): Promise<void>;
  /** NotificationEndpoints in `namespace`, or in every namespace when it is undefined. */
  endpoints(namespace: string | undefined): ListWatch<NotificationEndpointObject>;
  /**
   * Secrets in `namespace` (or every namespace), reduced to their identity: name, namespace and resourceVersion,
   * never their data (the reconciler reads that fresh with `getSecret`).
   */
  secrets(namespace: string | undefined): ListWatch<KubernetesObject>;
  /**
   * The Namespace `name` reduced to its identity (name, resourceVersion) and the repository grant annotation
   * (`REPOSITORIES_ANNOTATION`), or undefined when it does not exist (tenancy, api.md §9).
   */
  getNamespace(name: string): Promise<KubernetesObject | undefined>;
  /**
   * Namespaces, reduced as `getNamespace` reduces them: every one, or only `name` (a list and watch narrowed by
   * the field selector `metadata.name=<name>`, which RBAC allows with that name in `resourceNames`).
   */
  namespaces(name: string | undefined): ListWatch<KubernetesObject>;
}
