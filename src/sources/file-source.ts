import { statSync, watch, type FSWatcher } from 'node:fs';
import { readdir, readFile, stat } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import type { Logger } from 'pino';
import { parseNotificationEndpointsYaml, type ParsedEndpoint } from '../api/notification-endpoint.ts';
import type { EndpointConfig } from '../notifications/endpoint.ts';
import type { EndpointSet } from '../notifications/endpoint-set.ts';
import { EndpointRemovals } from './endpoint-removals.ts';
import { FileSecretReader } from './file-secrets.ts';
import { prepareEndpoint } from './prepare-endpoint.ts';
import { readyStateForError } from './ready-state.ts';
import type { EndpointSource, ReadyState } from './source.ts';

/** Settings of a `FileSource`. */
export interface FileSourceOptions {
  /** YAML files and directories (their `*.yaml` / `*.yml` files, not recursive). */
  paths: readonly string[];
  secretsDir: string | undefined;
  /** `REGISTRY_NOTIFIER_SECRET_*` variables: secret values with no file in `secretsDir`. */
  secretEnv?: Readonly<Record<string, string>>;
  endpoints: EndpointSet;
  logger: Logger;
  /** Called after an endpoint was removed (metrics forget its series). */
  onRemoved?: (name: string, discarded: number) => void;
  /** Wait this long after a change before reloading, so an editor's several writes count once. */
  debounceMs?: number;
}

// Editors and `kubectl cp` write in several steps; one reload after the burst is enough, and still well
// within the second the issue allows.
const DEFAULT_DEBOUNCE_MS = 100;

/**
 * Standalone endpoints: `NotificationEndpoint` documents in YAML files, followed live. A change is applied
 * within about a second, busy or not: new endpoints are added, changed ones updated in place (queue kept),
 * removed ones taken out of routing at once (their closing finishes in the background). An invalid document
 * is reported (log and `states()`) and skipped: the valid ones keep working, and an endpoint whose document
 * turns invalid keeps running its last good configuration. `close()` waits for removals still closing.
 */
export class FileSource implements EndpointSource {
  #options: FileSourceOptions;
  #secrets: FileSecretReader;
  #removals: EndpointRemovals;
  #states = new Map<string, ReadyState>();
  #applied = new Map<string, { key: string; origin: string }>(); // name -> JSON of the configuration in force, its file
  #watchers: FSWatcher[] = [];
  #timer: NodeJS.Timeout | undefined;
  #reloading: Promise<void> = Promise.resolve();
  #ready = false;
  #complete = false;
  #closed = false;

  constructor(options: FileSourceOptions) {
    this.#options = options;
    this.#secrets = new FileSecretReader(options.secretsDir, options.secretEnv);
    this.#removals = new EndpointRemovals({
      endpoints: options.endpoints,
      logger: options.logger,
      ...(options.onRemoved && { onRemoved: options.onRemoved }),
    });
  }

  get ready(): boolean {
    return this.#ready;
  }

  mayForget(name: string): boolean {
    return this.#ready && this.#complete && !this.#states.has(name);
  }

  states(): ReadonlyMap<string, ReadyState> {
    return this.#states;
  }

  async start(): Promise<void> {
    await this.reload();
    this.#ready = true;
    for (const path of this.#options.paths) this.#watch(path);
    if (this.#options.secretsDir) this.#watch(this.#options.secretsDir, true);
  }

  async close(): Promise<void> {
    this.#closed = true;
    clearTimeout(this.#timer);
    for (const watcher of this.#watchers) watcher.close();
    this.#watchers = [];
    await this.#reloading;
    await this.#removals.idle();
  }

  /** Reads every file again and applies the differences; reloads never overlap. */
  reload(): Promise<void> {
    this.#reloading = this.#reloading.then(() => this.#reload()).catch((error: unknown) => {
      this.#options.logger.error({ err: error }, 'reloading endpoint files failed');
    });
    return this.#reloading;
  }

  async #reload(): Promise<void> {
    const { documents, unreadable, uncertain, complete } = await this.#readAll();
    this.#complete = complete;
    const states = new Map<string, ReadyState>();
    const wanted = new Map<string, { config: EndpointConfig; origin: string }>();
    for (const { endpoint, origin } of documents) {
      if (states.has(endpoint.name)) {
        states.set(`${endpoint.name}@${origin}`, invalid(`duplicate endpoint name ${endpoint.name}; the first definition (${states.get(endpoint.name)?.origin ?? 'unknown'}) is used`, origin));
        continue;
      }
      try {
        const { config, ready } = await prepareEndpoint(endpoint.spec, undefined, this.#secrets, this.#options.endpoints);
        wanted.set(endpoint.name, { config, origin });
        states.set(endpoint.name, { ...ready, origin });
      } catch (error) {
        states.set(endpoint.name, { ...stateForError(error, origin), url: endpoint.spec.url });
      }
    }
    // A refused document must not overwrite the state of a valid one of the same name (a duplicate).
    for (const [key, state] of unreadable) states.set(states.has(key) ? `${key}@${state.origin ?? ''}` : key, state);
    await this.#apply(wanted, states, uncertain);
    this.#states = states;
  }

  async #apply(
    wanted: Map<string, { config: EndpointConfig; origin: string }>,
    states: Map<string, ReadyState>,
    uncertain: (origin: string) => boolean,
  ): Promise<void> {
    const { endpoints, logger } = this.#options;
    // Removals first, and all at once: each endpoint leaves routing now and closes in the background, so a slow
    // receiver's attempt in flight delays neither the other removals nor the rest of the reload.
    for (const [name, { origin }] of [...this.#applied]) {
      if (wanted.has(name)) continue;
      const state = states.get(name);
      // Invalid now, or its file unreadable (a half-written edit, a YAML syntax error): keep running the last
      // good configuration rather than drop its queue.
      if (!state && uncertain(origin)) {
        states.set(name, invalid(`${origin} cannot be read or parsed; the last good configuration keeps running`, origin));
        logger.warn({ endpoint: name, origin }, 'endpoint file unreadable; keeping its last good configuration');
        continue;
      }
      if (state && !state.ready && state.reason !== 'Disabled') {
        logger.warn({ endpoint: name, reason: state.reason, error: state.message }, 'endpoint invalid; keeping its last good configuration');
        continue;
      }
      this.#removals.remove(name);
      this.#applied.delete(name);
    }
    for (const [name, { config, origin }] of wanted) {
      const key = JSON.stringify(config);
      const applied = this.#applied.get(name);
      if (applied?.key === key) {
        applied.origin = origin;
        continue;
      }
      try {
        await this.#removals.settled(name); // removed by an earlier reload and back already: its clean-up goes first
        const what = endpoints.apply(name, config);
        this.#applied.set(name, { key, origin });
        logger.info({ endpoint: name, origin }, `endpoint ${what}`);
      } catch (error) {
        states.set(name, stateForError(error, origin));
      }
    }
    for (const [name, state] of states) {
      if (!state.ready && state.reason !== 'Disabled') logger.warn({ endpoint: name, reason: state.reason, origin: state.origin, error: state.message }, 'endpoint not ready');
    }
  }

  /**
   * Every document of every file; `unreadable` holds the refused ones, and `uncertain` says whether a file may
   * hold endpoints that could not be identified (unreadable, or a document without a readable name).
   */
  async #readAll(): Promise<{
    documents: { endpoint: ParsedEndpoint; origin: string }[];
    unreadable: Map<string, ReadyState>;
    uncertain: (origin: string) => boolean;
    /** Every file was read and every document identified. */
    complete: boolean;
  }> {
    const documents: { endpoint: ParsedEndpoint; origin: string }[] = [];
    const unreadable = new Map<string, ReadyState>();
    const doubtful = new Set<string>(); // resolved files and directories
    const files = await this.#files(unreadable, doubtful);
    // Read side by side, handled in order: one file at a time, each read waits its turn behind the delivery
    // work of a busy process, and a reload of hundreds of files would take that many turns.
    const texts = await Promise.all(files.map((file) => readFile(file, 'utf8').catch((error: NodeJS.ErrnoException) => error)));
    for (const [i, file] of files.entries()) {
      const text = texts[i];
      if (typeof text !== 'string') {
        unreadable.set(`file:${file}`, invalid(`cannot read: ${text?.code ?? 'error'}`, file));
        doubtful.add(resolve(file));
        continue;
      }
      const { endpoints, errors } = parseNotificationEndpointsYaml(text, file);
      for (const endpoint of endpoints) documents.push({ endpoint, origin: file });
      for (const { index, name, error } of errors) {
        if (name === undefined) doubtful.add(resolve(file));
        // the error's message already starts with its path
        const key = name === undefined ? `${file}#${index}` : unreadable.has(name) ? `${name}@${file}#${index}` : name;
        unreadable.set(key, invalid(error.message, `${file} document ${index + 1}`));
      }
    }
    const uncertain = (origin: string): boolean => doubtful.has(resolve(origin)) || doubtful.has(dirname(resolve(origin)));
    return { documents, unreadable, uncertain, complete: doubtful.size === 0 };
  }

  async #files(unreadable: Map<string, ReadyState>, doubtful: Set<string>): Promise<string[]> {
    const files: string[] = [];
    for (const path of this.#options.paths) {
      try {
        if ((await stat(path)).isDirectory()) {
          const names = (await readdir(path)).filter((n) => /\.ya?ml$/.test(n) && !n.startsWith('.')).sort();
          files.push(...names.map((n) => join(path, n)));
        } else files.push(path);
      } catch (error) {
        unreadable.set(`path:${path}`, invalid(`cannot read: ${(error as NodeJS.ErrnoException).code ?? 'error'}`, path));
        doubtful.add(resolve(path));
      }
    }
    return files;
  }

  #watch(path: string, recursive = false): void {
    const target = resolve(path);
    const schedule = (): void => {
      if (this.#closed) return;
      clearTimeout(this.#timer);
      this.#timer = setTimeout(() => void this.reload(), this.#options.debounceMs ?? DEFAULT_DEBOUNCE_MS);
    };
    // A file is watched through its directory: editors and Kubernetes replace files rather than write them.
    let isDir = recursive;
    try {
      isDir ||= statSync(target).isDirectory();
    } catch {
      // Missing now: watch its directory, so it is picked up when it appears.
    }
    const dir = isDir ? target : dirname(target);
    const name = basename(target);
    try {
      const watcher = watch(dir, { recursive }, (_event, changed) => {
        // `..data` and its siblings: Kubernetes swaps a mounted ConfigMap's files by renaming a symlink.
        if (isDir || changed === null || changed === name || changed.startsWith('..')) schedule();
      });
      watcher.on('error', (error) => this.#options.logger.warn({ err: error, path }, 'watching stopped'));
      this.#watchers.push(watcher);
    } catch (error) {
      this.#options.logger.warn({ err: error, path }, 'cannot watch; changes need a restart');
    }
  }
}

function invalid(message: string, origin?: string): ReadyState {
  return { ready: false, reason: 'InvalidSpec', message, ...(origin !== undefined && { origin }) };
}

function stateForError(error: unknown, origin?: string): ReadyState {
  return readyStateForError(error, origin) ?? invalid(error instanceof Error ? error.message : String(error), origin);
}
