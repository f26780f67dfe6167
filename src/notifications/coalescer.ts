import type { Event } from './event.ts';

/** What an endpoint coalesces (api.md §11 `coalesce`): the actions it applies to, and how long a window lasts. */
export interface CoalesceSettings {
  /** Only events with one of these actions are coalesced; others always go through. */
  readonly actions: readonly string[];
  /** A window's length in milliseconds, counted from the event that opened it (> 0). */
  readonly windowMs: number;
}

/** Settings of a `Coalescer`. */
export interface CoalescerOptions {
  /** Keys remembered at most; over it the oldest window ends early. Default `MAX_COALESCE_KEYS`. */
  maxKeys?: number;
}

/**
 * Keys remembered per endpoint at most. A key is an action, a repository name (up to 255 characters in
 * Distribution) and a tag or digest: at most about 0.5 KiB, so an endpoint's coalescer stays under about 5 MiB
 * however many images are pulled within a window.
 */
export const MAX_COALESCE_KEYS = 10_000;

/**
 * The coalescing key of an event: (action, target.repository, target.tag if non-empty else target.digest); undefined
 * for an event that has no repository or neither a tag nor a digest (it cannot be told apart, so it is never
 * coalesced).
 */
export function coalesceKey(event: Event): string | undefined {
  const { repository, tag, digest } = event.target;
  if (typeof repository !== 'string' || repository === '') return undefined;
  // A tag and a digest cannot collide (a tag never holds ':'), but the key says which one it is anyway.
  if (typeof tag === 'string' && tag !== '') return JSON.stringify([event.action, repository, 't', tag]);
  if (typeof digest === 'string' && digest !== '') return JSON.stringify([event.action, repository, 'd', digest]);
  return undefined;
}

/**
 * One endpoint's coalescing state (api.md §11): per key, a fixed window that opens at the first event delivered
 * for it and lasts `windowMs`; later events with that key inside the window are coalesced (not delivered). The
 * window does not slide: duplicates never extend it, so a steady stream of pulls gives one event per window.
 * Memory is bounded: windows that ended are forgotten as new ones are recorded, and past `maxKeys` the oldest
 * window ends early (its next event is delivered, never dropped unaccounted). Decisions are two-phase (`round`,
 * then `commit`), so a request that is refused opens no window. Synchronous, in memory, never throws.
 */
export class Coalescer {
  readonly settings: CoalesceSettings;
  readonly #actions: ReadonlySet<string>;
  readonly #maxKeys: number;
  /** Key -> when its window opened. */
  readonly #windows = new Map<string, number>();
  // Windows in opening order, oldest at #head, so expiry and the cap never scan the map (a Map iterated from its
  // start after many deletions walks their holes). An entry whose key opened again later is skipped when reached.
  #order: { key: string; opened: number }[] = [];
  #head = 0;
  #forgotten = 0;

  constructor(settings: CoalesceSettings, options: CoalescerOptions = {}) {
    this.settings = settings;
    this.#actions = new Set(settings.actions);
    this.#maxKeys = Math.max(1, options.maxKeys ?? MAX_COALESCE_KEYS);
  }

  /** Keys remembered now (windows opened and not yet forgotten). */
  get size(): number {
    return this.#windows.size;
  }

  /** Windows ended early so far because `maxKeys` was reached. */
  get forgotten(): number {
    return this.#forgotten;
  }

  /**
   * Starts deciding one request's events at time `at` (the request's acceptance time). The round's decisions use
   * the windows committed so far plus the keys the round itself opened; nothing is remembered until `commit`.
   * `onCoalesced` hears the round's count of coalesced events when it is committed (if any).
   */
  round(at: number, onCoalesced?: (count: number) => void): CoalesceRound {
    return new CoalesceRound(this, at, onCoalesced);
  }

  /** Whether an event with this action is subject to coalescing. */
  covers(action: string): boolean {
    return this.#actions.has(action);
  }

  /** Whether the key's window is open at `at`. */
  isOpen(key: string, at: number): boolean {
    const opened = this.#windows.get(key);
    return opened !== undefined && at < opened + this.settings.windowMs && at >= opened;
  }

  /** Records windows opened at `at` (keeping one already open, e.g. opened by a concurrent request), then applies the bounds. */
  record(keys: Iterable<string>, at: number): void {
    this.#expire(at);
    for (const key of keys) {
      if (this.isOpen(key, at)) continue;
      this.#windows.set(key, at);
      this.#order.push({ key, opened: at });
    }
    while (this.#windows.size > this.#maxKeys && this.#head < this.#order.length) {
      if (this.#forget(this.#shift())) this.#forgotten++;
    }
  }

  // Oldest first: stop at the first window still open (later ones opened no earlier, as acceptance times only grow).
  #expire(at: number): void {
    while (this.#head < this.#order.length) {
      const oldest = this.#order[this.#head]!;
      if (oldest.opened + this.settings.windowMs > at) return;
      this.#forget(this.#shift());
    }
  }

  // Forgets the entry's window unless its key opened again since; says whether it did.
  #forget(entry: { key: string; opened: number }): boolean {
    if (this.#windows.get(entry.key) !== entry.opened) return false;
    this.#windows.delete(entry.key);
    return true;
  }

  #shift(): { key: string; opened: number } {
    const entry = this.#order[this.#head++]!;
    if (this.#head >= 1024 && this.#head * 2 >= this.#order.length) {
      this.#order = this.#order.slice(this.#head);
      this.#head = 0;
    }
    return entry;
  }
}

/**
 * The coalescing decisions for one request and one endpoint (see `Coalescer.round`). `admit` says per event whether
 * it goes through; `commit` (once the request's events are committed) records the windows the admitted events opened
 * and reports how many were coalesced. A round that is never committed leaves no trace.
 */
export class CoalesceRound {
  readonly #coalescer: Coalescer;
  readonly #at: number;
  readonly #onCoalesced: ((count: number) => void) | undefined;
  readonly #opened = new Set<string>();
  #coalesced = 0;
  #committed = false;

  constructor(coalescer: Coalescer, at: number, onCoalesced?: (count: number) => void) {
    this.#coalescer = coalescer;
    this.#at = at;
    this.#onCoalesced = onCoalesced;
  }

  /** Events of this round coalesced so far. */
  get coalesced(): number {
    return this.#coalesced;
  }

  /** True: deliver the event (it opens its key's window, or is not coalesced at all); false: it is coalesced. */
  admit(event: Event): boolean {
    if (!this.#coalescer.covers(event.action)) return true;
    const key = coalesceKey(event);
    if (key === undefined) return true;
    if (this.#opened.has(key) || this.#coalescer.isOpen(key, this.#at)) {
      this.#coalesced++;
      return false;
    }
    this.#opened.add(key);
    return true;
  }

  /** Records the round's windows and reports its coalesced count; a second call does nothing. */
  commit(): void {
    if (this.#committed) return;
    this.#committed = true;
    if (this.#opened.size > 0) this.#coalescer.record(this.#opened, this.#at);
    if (this.#coalesced > 0) this.#onCoalesced?.(this.#coalesced);
  }
}
