import { CoordinationV1Api, V1MicroTime, type KubeConfig, type V1Lease } from '@kubernetes/client-node';
import { withDeadline } from './deadline.ts';
import { statusCode } from './errors.ts';
import type { LeaseLock, LeaseRecord, ObservedLease } from './leader-election.ts';

// A leader election round must end well within the renew deadline: a hung call counts as a failed round.
const CALL_TIMEOUT_MS = 5_000;

/** `LeaseLock` on a `coordination.k8s.io/v1` Lease through client-node; updates are replaces with the resourceVersion read. */
export class KubeLeaseLock implements LeaseLock {
  readonly description: string;
  #api: CoordinationV1Api;
  #namespace: string;
  #name: string;

  constructor(kubeConfig: KubeConfig, namespace: string, name: string) {
    this.#api = kubeConfig.makeApiClient(CoordinationV1Api);
    this.#namespace = namespace;
    this.#name = name;
    this.description = `${namespace}/${name}`;
  }

  async get(): Promise<ObservedLease | undefined> {
    try {
      const lease = await withDeadline('get lease', () => this.#api.readNamespacedLease({ namespace: this.#namespace, name: this.#name }), CALL_TIMEOUT_MS);
      return { record: toRecord(lease), resourceVersion: lease.metadata?.resourceVersion ?? '' };
    } catch (error) {
      if (statusCode(error) === 404) return undefined;
      throw error;
    }
  }

  async create(record: LeaseRecord): Promise<string> {
    const body: V1Lease = { metadata: { name: this.#name, namespace: this.#namespace }, spec: toSpec(record) };
    const created = await withDeadline('create lease', () => this.#api.createNamespacedLease({ namespace: this.#namespace, body }), CALL_TIMEOUT_MS);
    return created.metadata?.resourceVersion ?? '';
  }

  async update(record: LeaseRecord, resourceVersion: string): Promise<string> {
    const body: V1Lease = { metadata: { name: this.#name, namespace: this.#namespace, resourceVersion }, spec: toSpec(record) };
    const replaced = await withDeadline('replace lease', () => this.#api.replaceNamespacedLease({ namespace: this.#namespace, name: this.#name, body }), CALL_TIMEOUT_MS);
    return replaced.metadata?.resourceVersion ?? '';
  }
}

function toSpec(record: LeaseRecord): NonNullable<V1Lease['spec']> {
  return {
    holderIdentity: record.holderIdentity,
    leaseDurationSeconds: record.leaseDurationSeconds,
    // MicroTime: the API server insists on six fractional digits, which a plain Date does not write.
    acquireTime: new V1MicroTime(record.acquireTime.getTime()),
    renewTime: new V1MicroTime(record.renewTime.getTime()),
    leaseTransitions: record.leaseTransitions,
  };
}

function toRecord(lease: V1Lease): LeaseRecord {
  const spec = lease.spec ?? {};
  const epoch = new Date(0);
  return {
    holderIdentity: spec.holderIdentity ?? '',
    leaseDurationSeconds: spec.leaseDurationSeconds ?? 0,
    acquireTime: spec.acquireTime ? new Date(spec.acquireTime) : epoch,
    renewTime: spec.renewTime ? new Date(spec.renewTime) : epoch,
    leaseTransitions: spec.leaseTransitions ?? 0,
  };
}
