// An in-memory ClusterApi for controller unit tests: objects and Secrets the test puts in, status patches applied
// with JSON merge-patch semantics (null deletes, lists replace), Events recorded, failures and stalls on demand.
import type { ClusterApi, NotificationEndpointObject, StatusPatch } from '../../src/k8s/cluster-api.ts';

export interface RecordedEvent {
  key: string;
  type: 'Normal' | 'Warning';
  reason: string;
  message: string;
}

export interface RecordedPatch {
  key: string;
  status: StatusPatch;
}

/** An error shaped like client-node's ApiException (the code is what callers branch on). */
export function apiError(code: number): Error {
  return Object.assign(new Error(`HTTP-Code: ${code}\nMessage: failed`), { code });
}

export class FakeClusterApi implements ClusterApi {
  readonly objects = new Map<string, NotificationEndpointObject>();
  readonly secrets = new Map<string, Map<string, Buffer>>();
  /** Patches the "server" applied, in order. */
  readonly patches: RecordedPatch[] = [];
  /** Patches sent, applied or not (a stalled or failed one included). */
  readonly patchCalls: RecordedPatch[] = [];
  readonly events: RecordedEvent[] = [];
  readonly gets: string[] = [];
  /** The next getEndpoint calls throw these, in order. */
  getErrors: Error[] = [];
  /** The next patchStatus calls throw these, in order. */
  patchErrors: Error[] = [];
  /** While set, patchStatus waits for it before applying. */
  patchGate: Promise<void> | undefined;

  /** Stores an object as the API server would: a resourceVersion and (default) generation 1. */
  put(object: NotificationEndpointObject): NotificationEndpointObject {
    const stored = structuredClone(object);
    stored.metadata = { generation: 1, resourceVersion: '1', ...stored.metadata };
    this.objects.set(`${stored.metadata.namespace}/${stored.metadata.name}`, stored);
    return structuredClone(stored);
  }

  putSecret(namespace: string, name: string, data: Record<string, string>): void {
    this.secrets.set(`${namespace}/${name}`, new Map(Object.entries(data).map(([k, v]) => [k, Buffer.from(v)])));
  }

  async getEndpoint(namespace: string, name: string): Promise<NotificationEndpointObject | undefined> {
    this.gets.push(`${namespace}/${name}`);
    const error = this.getErrors.shift();
    if (error) throw error;
    const object = this.objects.get(`${namespace}/${name}`);
    return object && structuredClone(object);
  }

  async patchStatus(namespace: string, name: string, status: StatusPatch): Promise<void> {
    const key = `${namespace}/${name}`;
    this.patchCalls.push({ key, status: structuredClone(status) });
    await this.patchGate;
    const error = this.patchErrors.shift();
    if (error) throw error;
    this.patches.push({ key, status: structuredClone(status) });
    const object = this.objects.get(key);
    if (object) object.status = mergePatch(object.status ?? {}, status) as NotificationEndpointObject['status'];
  }

  async getSecret(namespace: string, name: string): Promise<ReadonlyMap<string, Buffer> | undefined> {
    return this.secrets.get(`${namespace}/${name}`);
  }

  async recordEvent(object: NotificationEndpointObject, type: 'Normal' | 'Warning', reason: string, message: string): Promise<void> {
    this.events.push({ key: `${object.metadata?.namespace}/${object.metadata?.name}`, type, reason, message });
  }
}

/** RFC 7386 JSON merge patch. */
export function mergePatch(target: unknown, patch: unknown): unknown {
  if (typeof patch !== 'object' || patch === null || Array.isArray(patch)) return structuredClone(patch);
  const result: Record<string, unknown> =
    typeof target === 'object' && target !== null && !Array.isArray(target) ? { ...(target as Record<string, unknown>) } : {};
  for (const [key, value] of Object.entries(patch)) {
    if (value === null) delete result[key];
    else result[key] = mergePatch(result[key], value);
  }
  return result;
}
