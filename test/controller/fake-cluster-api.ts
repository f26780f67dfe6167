// An in-memory ClusterApi for controller unit tests: objects and Secrets the test puts in, lists of them, watches the
// test writes events into, status patches applied with JSON merge-patch semantics (null deletes, lists replace),
// Events recorded, failures and stalls on demand. The one place controller tests swap the Kubernetes API.
import type { KubernetesObject } from '@kubernetes/client-node';
import type {
  ClusterApi,
  ListResult,
  ListWatch,
  NotificationEndpointObject,
  StatusPatch,
  WatchOptions,
} from '../../src/k8s/cluster-api.ts';

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

/** The collections the controller lists and watches. */
export type Resource = 'notificationendpoints' | 'secrets' | 'namespaces';

/** One watch connection the controller opened on the fake: the test writes events into it, or ends it. */
export class FakeWatch {
  readonly resource: Resource;
  readonly namespace: string | undefined;
  readonly options: WatchOptions;
  readonly controller = new AbortController();
  #onEvent: (type: string, object: KubernetesObject) => void;
  #done: (error: unknown) => void;
  #ended = false;

  constructor(resource: Resource, namespace: string | undefined, options: WatchOptions, onEvent: (type: string, object: KubernetesObject) => void, done: (error: unknown) => void) {
    this.resource = resource;
    this.namespace = namespace;
    this.options = options;
    this.#onEvent = onEvent;
    this.#done = done;
    // As client-node does: an abort ends the connection with an AbortError.
    this.controller.signal.addEventListener('abort', () => this.end(new DOMException('This operation was aborted', 'AbortError')), { once: true });
  }

  /** Whether the connection is still open. */
  get open(): boolean {
    return !this.#ended;
  }

  /** Sends one event (a copy of `object`), as the server would; nothing once the watch ended. */
  send(type: string, object: object): void {
    if (!this.#ended) this.#onEvent(type, structuredClone(object) as KubernetesObject);
  }

  /** Ends the connection: normally (the server's timeout) or with `error`. */
  end(error: unknown = null): void {
    if (this.#ended) return;
    this.#ended = true;
    this.#done(error);
  }
}

export class FakeClusterApi implements ClusterApi {
  readonly objects = new Map<string, NotificationEndpointObject>();
  /** Secrets by `namespace/name`: their data, and a resourceVersion the lists report. */
  readonly secretData = new Map<string, Map<string, Buffer>>();
  readonly secretVersions = new Map<string, string>();
  /** Namespaces by name: their annotations (what tenancy reads) and a resourceVersion. */
  readonly namespaceObjects = new Map<string, { annotations: Record<string, string> | undefined; resourceVersion: string }>();
  /** Every getNamespace call, by name. */
  readonly namespaceGets: string[] = [];
  /** The next getNamespace calls throw these, in order. */
  namespaceGetErrors: Error[] = [];
  /** Every list call, as `resource` or `resource in namespace`. */
  readonly lists: string[] = [];
  /** Every watch opened, in order. */
  readonly watches: FakeWatch[] = [];
  /** The resourceVersion lists answer with. */
  listVersion = '100';
  #watchWaiters: { resource: Resource; namespace: string | undefined; from: number; resolve: (watch: FakeWatch) => void }[] = [];
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
  /** The most patches of one object that were on the wire at the same time, by key (1: they never overlapped). */
  readonly peakPatchesInFlight = new Map<string, number>();
  #patchesInFlight = new Map<string, number>();

  /** Stores an object as the API server would: a resourceVersion and (default) generation 1. */
  put(object: NotificationEndpointObject): NotificationEndpointObject {
    const stored = structuredClone(object);
    stored.metadata = { generation: 1, resourceVersion: '1', ...stored.metadata };
    this.objects.set(`${stored.metadata.namespace}/${stored.metadata.name}`, stored);
    return structuredClone(stored);
  }

  putSecret(namespace: string, name: string, data: Record<string, string>, resourceVersion = '1'): void {
    this.secretData.set(`${namespace}/${name}`, new Map(Object.entries(data).map(([k, v]) => [k, Buffer.from(v)])));
    this.secretVersions.set(`${namespace}/${name}`, resourceVersion);
  }

  /** Stores a Namespace with these annotations (none: undefined), as getNamespace and the namespace lists report it. */
  putNamespace(name: string, annotations?: Record<string, string>, resourceVersion = '1'): KubernetesObject {
    this.namespaceObjects.set(name, { annotations, resourceVersion });
    return this.#namespace(name)!;
  }

  #namespace(name: string): KubernetesObject | undefined {
    const stored = this.namespaceObjects.get(name);
    if (!stored) return undefined;
    return { metadata: { name, resourceVersion: stored.resourceVersion, ...(stored.annotations && { annotations: { ...stored.annotations } }) } };
  }

  /** Resolves with the next watch of `resource` in `namespace` (undefined: all namespaces) opened from now on, or already since watch number `from`. */
  nextWatch(resource: Resource, namespace?: string, from = this.watches.length): Promise<FakeWatch> {
    const opened = this.watches.slice(from).find((w) => w.resource === resource && w.namespace === namespace);
    if (opened) return Promise.resolve(opened);
    return new Promise((resolve) => this.#watchWaiters.push({ resource, namespace, from, resolve }));
  }

  endpoints(namespace: string | undefined): ListWatch<NotificationEndpointObject> {
    return this.#listWatch('notificationendpoints', namespace, () =>
      [...this.objects.values()].filter((o) => namespace === undefined || o.metadata?.namespace === namespace).map((o) => structuredClone(o)));
  }

  secrets(namespace: string | undefined): ListWatch<KubernetesObject> {
    return this.#listWatch('secrets', namespace, () =>
      [...this.secretData.keys()]
        .map((key) => key.split('/') as [string, string])
        .filter(([ns]) => namespace === undefined || ns === namespace)
        .map(([ns, name]) => ({ metadata: { name, namespace: ns, resourceVersion: this.secretVersions.get(`${ns}/${name}`) ?? '1' } })));
  }

  /** `name` is the one namespace watched (the field selector), as `namespace` is for the other resources. */
  namespaces(name: string | undefined): ListWatch<KubernetesObject> {
    return this.#listWatch('namespaces', name, () =>
      [...this.namespaceObjects.keys()].filter((ns) => name === undefined || ns === name).map((ns) => this.#namespace(ns)!));
  }

  async getNamespace(name: string): Promise<KubernetesObject | undefined> {
    this.namespaceGets.push(name);
    const error = this.namespaceGetErrors.shift();
    if (error) throw error;
    return this.#namespace(name);
  }

  #listWatch<T extends KubernetesObject>(resource: Resource, namespace: string | undefined, items: () => T[]): ListWatch<T> {
    return {
      list: async (): Promise<ListResult<T>> => {
        this.lists.push(namespace ? `${resource} in ${namespace}` : resource);
        return { items: items(), resourceVersion: this.listVersion };
      },
      watch: async (options, onEvent, done) => {
        const watch = new FakeWatch(resource, namespace, options, onEvent as (type: string, object: KubernetesObject) => void, done);
        this.watches.push(watch);
        const index = this.watches.length - 1;
        for (const waiter of [...this.#watchWaiters]) {
          if (waiter.resource === resource && waiter.namespace === namespace && index >= waiter.from) {
            this.#watchWaiters.splice(this.#watchWaiters.indexOf(waiter), 1);
            waiter.resolve(watch);
          }
        }
        return watch.controller;
      },
    };
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
    const inFlight = (this.#patchesInFlight.get(key) ?? 0) + 1;
    this.#patchesInFlight.set(key, inFlight);
    this.peakPatchesInFlight.set(key, Math.max(this.peakPatchesInFlight.get(key) ?? 0, inFlight));
    try {
      await this.patchGate;
      const error = this.patchErrors.shift();
      if (error) throw error;
      this.patches.push({ key, status: structuredClone(status) });
      const object = this.objects.get(key);
      if (object) object.status = mergePatch(object.status ?? {}, status) as NotificationEndpointObject['status'];
    } finally {
      this.#patchesInFlight.set(key, this.#patchesInFlight.get(key)! - 1);
    }
  }

  async getSecret(namespace: string, name: string): Promise<ReadonlyMap<string, Buffer> | undefined> {
    return this.secretData.get(`${namespace}/${name}`);
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
