// Server-side dry runs of plain manifests against the test kube-apiserver, over its REST API.
//
// The manifests go out as the very JSON they render to (what `kubectl create --dry-run=server` sends): no typed
// client model sits in between, so nothing can be dropped or renamed on the way. The server's answer is the object
// it would store; `droppedFields` compares it with what was sent, because a 1.20 API server silently prunes
// unknown fields (a typo such as `readOnlyRootFileSystem` would otherwise pass unnoticed).
import { Agent, fetch } from 'undici';
import type { TestCluster } from '../support/envtest.ts';
import type { Manifest } from './render.ts';

/** Where a kind lives in the API: its resource (plural) name and whether it is namespaced. */
interface ResourceInfo {
  name: string;
  namespaced: boolean;
}

/** The result of one dry-run create. */
export interface DryRunResult {
  /** "Kind namespace/name". */
  object: string;
  status: number;
  /** The object as the server would store it (2xx), or its Status message (otherwise). */
  stored?: Record<string, unknown>;
  message?: string;
}

/** A small REST client for one TestCluster (admin token). */
export class DryRunClient {
  readonly #cluster: TestCluster;
  readonly #dispatcher: Agent;
  readonly #discovery = new Map<string, Promise<Map<string, ResourceInfo>>>();

  constructor(cluster: TestCluster) {
    this.#cluster = cluster;
    this.#dispatcher = new Agent({ connect: { ca: cluster.caPem } });
  }

  /** GET/POST/... `path` as admin; returns the status and the parsed JSON body. */
  async request(method: string, path: string, body?: unknown): Promise<{ status: number; body: Record<string, unknown> }> {
    const res = await fetch(`${this.#cluster.server}${path}`, {
      method,
      headers: { authorization: `Bearer ${this.#cluster.adminToken}`, 'content-type': 'application/json', accept: 'application/json' },
      ...(body !== undefined && { body: JSON.stringify(body) }),
      dispatcher: this.#dispatcher,
      signal: AbortSignal.timeout(20_000),
    });
    const text = await res.text();
    return { status: res.status, body: text ? (JSON.parse(text) as Record<string, unknown>) : {} };
  }

  /** Creates `object` with `?dryRun=All`: admission, defaulting and validation run, nothing is stored. */
  async dryRunCreate(object: Manifest): Promise<DryRunResult> {
    const label = `${object.kind} ${object.metadata.namespace ? `${object.metadata.namespace}/` : ''}${object.metadata.name}`;
    const resource = await this.#resource(object.apiVersion, object.kind);
    if (!resource) return { object: label, status: 404, message: `the server does not serve ${object.kind} in ${object.apiVersion}` };
    const base = object.apiVersion.includes('/') ? `/apis/${object.apiVersion}` : `/api/${object.apiVersion}`;
    const scope = resource.namespaced ? `/namespaces/${object.metadata.namespace ?? 'default'}` : '';
    const { status, body } = await this.request('POST', `${base}${scope}/${resource.name}?dryRun=All&fieldManager=packaging-test`, object);
    return status < 300 ? { object: label, status, stored: body } : { object: label, status, message: String(body.message ?? JSON.stringify(body)) };
  }

  /** Creates `object` for real (namespaces, fixtures); a 409 AlreadyExists counts as done. */
  async create(object: Manifest): Promise<void> {
    const resource = await this.#resource(object.apiVersion, object.kind);
    if (!resource) throw new Error(`the server does not serve ${object.kind} in ${object.apiVersion}`);
    const base = object.apiVersion.includes('/') ? `/apis/${object.apiVersion}` : `/api/${object.apiVersion}`;
    const scope = resource.namespaced ? `/namespaces/${object.metadata.namespace ?? 'default'}` : '';
    const { status, body } = await this.request('POST', `${base}${scope}/${resource.name}`, object);
    if (status >= 300 && status !== 409) throw new Error(`creating ${object.kind} ${object.metadata.name}: ${status} ${String(body.message)}`);
  }

  /** Forgets discovery (after installing CRDs). */
  refreshDiscovery(): void {
    this.#discovery.clear();
  }

  async close(): Promise<void> {
    await this.#dispatcher.close();
  }

  async #resource(apiVersion: string, kind: string): Promise<ResourceInfo | undefined> {
    let list = this.#discovery.get(apiVersion);
    if (!list) {
      list = (async () => {
        const path = apiVersion.includes('/') ? `/apis/${apiVersion}` : `/api/${apiVersion}`;
        const { status, body } = await this.request('GET', path);
        const resources = status === 200 ? ((body.resources ?? []) as { name: string; kind: string; namespaced: boolean }[]) : [];
        return new Map(resources.filter((r) => !r.name.includes('/')).map((r) => [r.kind, { name: r.name, namespaced: r.namespaced }]));
      })();
      this.#discovery.set(apiVersion, list);
    }
    return (await list).get(kind);
  }
}

/**
 * Paths of `sent` whose value the server did not keep in `stored` (pruned as unknown, or changed): `[]` when every
 * field sent is in the stored object. Defaults the server adds are fine; scalars compare as strings, since the
 * server may print a quantity or an int-or-string differently from the manifest.
 */
export function droppedFields(sent: unknown, stored: unknown, path = ''): string[] {
  if (Array.isArray(sent)) {
    if (!Array.isArray(stored)) return [`${path} (an array, stored as ${typeof stored})`];
    if (stored.length !== sent.length) return [`${path} (${sent.length} items sent, ${stored.length} stored)`];
    return sent.flatMap((item, i) => droppedFields(item, stored[i], `${path}[${i}]`));
  }
  if (sent !== null && typeof sent === 'object') {
    if (stored === null || typeof stored !== 'object' || Array.isArray(stored)) return [`${path} (missing)`];
    return Object.entries(sent).flatMap(([key, value]) =>
      key in stored ? droppedFields(value, (stored as Record<string, unknown>)[key], `${path}.${key}`) : [`${path}.${key}`],
    );
  }
  return sent === null || String(sent) === String(stored) ? [] : [`${path} (sent ${JSON.stringify(sent)}, stored ${JSON.stringify(stored)})`];
}
