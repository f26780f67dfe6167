import type { KubernetesObject } from '@kubernetes/client-node';
import type { NotificationEndpointStatus } from '../api/notification-endpoint.ts';

/** A NotificationEndpoint as the API server returns it; `spec` is unvalidated. */
export interface NotificationEndpointObject extends KubernetesObject {
  spec?: unknown;
  status?: NotificationEndpointStatus;
}

/** A status patch: fields to set, or `null` to clear one (JSON merge patch). */
export type StatusPatch = { [K in keyof NotificationEndpointStatus]?: NotificationEndpointStatus[K] | null };

/** What the controller needs of the Kubernetes API (a port, so reconcile logic is tested without a server); `KubeClusterApi` implements it with client-node. */
export interface ClusterApi {
  /** The object as stored now, or undefined when it does not exist. */
  getEndpoint(namespace: string, name: string): Promise<NotificationEndpointObject | undefined>;
  /** Merge-patches the status subresource; a deleted object is not an error. */
  patchStatus(namespace: string, name: string, status: StatusPatch): Promise<void>;
  /** The Secret's decoded data, or undefined when it does not exist. */
  getSecret(namespace: string, name: string): Promise<ReadonlyMap<string, Buffer> | undefined>;
  /** Records a Kubernetes Event about the object (best effort: failures are the caller's to log). */
  recordEvent(object: NotificationEndpointObject, type: 'Normal' | 'Warning', reason: string, message: string): Promise<void>;
}
