import type { KubernetesObject } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import { backoffMs, realDelay, type Delay } from './backoff.ts';
import type { ListWatch } from './cluster-api.ts';
import { describeApiError, statusCode } from './errors.ts';

/** A change the informer saw; `DELETED` carries the last known object. */
export type InformerEvent = 'ADDED' | 'MODIFIED' | 'DELETED';

/** Settings of an `Informer`. */
export interface InformerOptions<T extends KubernetesObject> {
  /** Human name for logs, e.g. `notificationendpoints`. */
  name: string;
  /** The collection to list and watch (from the `ClusterApi`). */
  source: ListWatch<T>;
  onEvent: (type: InformerEvent, object: T) => void;
  logger: Logger;
  delay?: Delay;
  random?: () => number;
  /** First retry wait after a failure, and the cap; defaults 1 s and 30 s. */
  backoff?: { baseMs: number; maxMs: number };
}

// The server closes a watch after this long (plus jitter) so connections are refreshed now and then.
const WATCH_TIMEOUT_SECONDS = 300;
// A watch that ends sooner than this without a single event counts as a failure (else a server that closes
// every watch at once would be hammered).
const MIN_HEALTHY_WATCH_MS = 1000;

/**
 * The object without `metadata.managedFields` (server-side apply's bookkeeping, often larger than the spec, never
 * read here), as controller-runtime's caches keep it: 10,000 cached endpoints are 10,000 of them.
 */
function withoutManagedFields<T extends KubernetesObject>(object: T): T {
  if (object.metadata?.managedFields !== undefined) delete object.metadata.managedFields;
  return object;
}

/**
 * List-then-watch cache of one resource (after client-go's reflector): lists, then watches from the list's
 * resourceVersion (with bookmarks); a 410 Gone — the version was compacted away — makes it list again and
 * report what changed meanwhile, deletions included (objects are cached without their managedFields); any other failure is retried with capped, jittered
 * exponential backoff that resets as soon as the watch makes progress. The delay is injectable so tests need
 * no real waiting.
 */
export class Informer<T extends KubernetesObject> {
  #options: InformerOptions<T>;
  #cache = new Map<string, T>();
  #resourceVersion = '';
  #synced = false;
  #syncWaiters: (() => void)[] = [];
  #stop = new AbortController();
  #watch: AbortController | undefined;
  #loop: Promise<void> | undefined;
  #failures = 0;
  #expired = 0;

  constructor(options: InformerOptions<T>) {
    this.#options = options;
  }

  /** Starts listing and watching in the background. */
  start(): void {
    this.#loop ??= this.#run();
  }

  /** Resolves once the first list has been delivered (or the informer was stopped). */
  waitForSync(): Promise<void> {
    if (this.#synced || this.#stop.signal.aborted) return Promise.resolve();
    return new Promise((resolve) => this.#syncWaiters.push(resolve));
  }

  /** Whether the first list has been delivered. */
  get synced(): boolean {
    return this.#synced;
  }

  /** The cached object with this `namespace/name` key. */
  get(key: string): T | undefined {
    return this.#cache.get(key);
  }

  /** Every cached object. */
  list(): T[] {
    return [...this.#cache.values()];
  }

  /** Stops watching; idempotent. */
  async stop(): Promise<void> {
    this.#stop.abort();
    this.#watch?.abort();
    for (const resolve of this.#syncWaiters.splice(0)) resolve();
    await this.#loop;
  }

  async #run(): Promise<void> {
    const { logger, name } = this.#options;
    while (!this.#stop.signal.aborted) {
      try {
        if (this.#resourceVersion === '') await this.#relist();
        await this.#watchOnce();
      } catch (error) {
        if (this.#stop.signal.aborted) break;
        if (statusCode(error) === 410) {
          // One expiry is normal (compaction) and relists at once; expiries in a row without a single event in
          // between (a misbehaving proxy) back off like failures, so list-then-watch never spins.
          this.#expired++;
          logger.info({ resource: name, inARow: this.#expired }, 'watch expired (410 Gone); listing again');
          this.#resourceVersion = '';
          if (this.#expired > 1) {
            await (this.#options.delay ?? realDelay)(backoffMs(this.#expired - 1, this.#options.backoff?.baseMs ?? 1000, this.#options.backoff?.maxMs ?? 30_000, this.#options.random), this.#stop.signal);
          }
          continue;
        }
        this.#failures++;
        const wait = backoffMs(this.#failures, this.#options.backoff?.baseMs ?? 1000, this.#options.backoff?.maxMs ?? 30_000, this.#options.random);
        const log = statusCode(error) === 403 ? logger.error.bind(logger) : logger.warn.bind(logger);
        log({ resource: name, failures: this.#failures, retryInMs: wait, error: describeApiError(error) }, 'list/watch failed; retrying');
        await (this.#options.delay ?? realDelay)(wait, this.#stop.signal);
      }
    }
  }

  async #relist(): Promise<void> {
    const { items, resourceVersion } = await this.#options.source.list();
    const fresh = new Map(items.map((item) => [keyOf(item), withoutManagedFields(item)]));
    const previous = this.#cache;
    this.#cache = fresh;
    this.#resourceVersion = resourceVersion;
    this.#failures = 0;
    for (const [key, object] of fresh) {
      const before = previous.get(key);
      if (!before) this.#options.onEvent('ADDED', object);
      else if (before.metadata?.resourceVersion !== object.metadata?.resourceVersion) this.#options.onEvent('MODIFIED', object);
    }
    for (const [key, object] of previous) if (!fresh.has(key)) this.#options.onEvent('DELETED', object);
    if (!this.#synced) {
      this.#synced = true;
      for (const resolve of this.#syncWaiters.splice(0)) resolve();
    }
  }

  /** One watch connection; resolves when it ends normally or the informer stops, rejects on failure (410 included). */
  async #watchOnce(): Promise<void> {
    const started = Date.now();
    const stop = this.#stop.signal;
    let progressed = false;
    let failure: unknown;
    let controller: AbortController | undefined;
    let settled = false;
    await new Promise<void>((resolve) => {
      const settle = (): void => {
        settled = true;
        stop.removeEventListener('abort', settle);
        resolve();
      };
      // A watch hands out the connection's AbortController only once the response has started, and gives up on a
      // silent server only after its inactivity timeout (minutes): stopping must not wait for either.
      stop.addEventListener('abort', settle, { once: true });
      const options = {
        resourceVersion: this.#resourceVersion,
        allowWatchBookmarks: true,
        timeoutSeconds: WATCH_TIMEOUT_SECONDS + Math.floor((this.#options.random ?? Math.random)() * 60),
      };
      const onEvent = (type: string, object: T): void => {
        if (settled) return; // a late event of a watch already given up
        if (type === 'ERROR') {
          // The server reports an expired resourceVersion as an ERROR event carrying a Status.
          failure ??= Object.assign(new Error(`watch error: ${(object as { message?: string }).message ?? 'unknown'}`), {
            statusCode: (object as { code?: number }).code,
          });
          controller?.abort(); // if the controller is not known yet, it is aborted as soon as it is
          return;
        }
        const rv = object.metadata?.resourceVersion;
        if (rv) this.#resourceVersion = rv;
        progressed = true;
        this.#failures = 0;
        this.#expired = 0;
        if (type === 'BOOKMARK') return;
        const key = keyOf(object);
        if (type === 'DELETED') {
          this.#cache.delete(key);
          this.#options.onEvent('DELETED', object);
        } else if (type === 'ADDED' || type === 'MODIFIED') {
          const kept = withoutManagedFields(object);
          this.#cache.set(key, kept);
          this.#options.onEvent(type, kept);
        }
      };
      const done = (error: unknown): void => {
        if (error && !isTimeout(error)) failure ??= error;
        settle();
      };
      this.#options.source
        .watch(options, onEvent, done)
        .then((c) => {
          controller = c;
          if (settled || failure !== undefined) c.abort();
          else this.#watch = c;
        })
        .catch(done);
    });
    this.#watch = undefined;
    if (stop.aborted) return;
    if (failure !== undefined) throw failure;
    if (!progressed && Date.now() - started < MIN_HEALTHY_WATCH_MS) throw new Error('watch closed at once');
  }
}

/** The cache key of an object: `namespace/name`, or `name` for cluster-scoped objects. */
export function keyOf(object: KubernetesObject): string {
  const { namespace, name } = object.metadata ?? {};
  return namespace ? `${namespace}/${name}` : `${name}`;
}

function isTimeout(error: unknown): boolean {
  return error instanceof Error && (error.name === 'TimeoutError' || error.name === 'AbortError');
}
