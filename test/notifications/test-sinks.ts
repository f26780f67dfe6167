// In-memory sinks for engine tests: a recorder whose next outcomes the test scripts, and a fake clock.
import { EventEmitter } from 'node:events';
import type { Endpoint } from '../../src/notifications/endpoint.ts';
import { SinkClosedError } from '../../src/notifications/errors.ts';
import type { Event } from '../../src/notifications/event.ts';
import { MemoryStore, type QueueBackend } from '../../src/notifications/queue-store.ts';
import type { Clock } from '../../src/notifications/retrying-sink.ts';
import type { QueuedEvent, Sink, WriteOptions } from '../../src/notifications/sink.ts';

/** Events as a queue holds them once accepted: their JSON, accepted at `acceptedAt` (default now). */
export function queued(events: readonly Event[], acceptedAt = Date.now()): QueuedEvent[] {
  return events.map((event) => ({ id: event.id, json: JSON.stringify(event), acceptedAt }));
}

/** What an `EndpointSet` does for one endpoint: the events its filters take, queued (in memory, no commit). */
export function send(endpoint: Endpoint, events: readonly Event[]): void {
  endpoint.enqueue(queued(events.filter((event) => endpoint.matches(event))));
}

/**
 * An in-memory backend whose stores record each endpoint asking for a permit (`EndpointStore.permit`), the step
 * right before every attempt: `asked` names the endpoints that were about to send, in order, with no traffic.
 */
export function permitRecordingBackend(): QueueBackend & { asked: string[]; storeFor(endpoint: string): MemoryStore } {
  const asked: string[] = [];
  return {
    asked,
    commit: (routes) => ({ routes, duplicates: [] }),
    storeFor: (endpoint) => Object.assign(new MemoryStore(), { permit: async () => void asked.push(endpoint) }),
  };
}

/** Records every write; `fail(n)` makes the next n writes reject; `hold()` blocks writes until `release()`. */
export class RecordingSink<T> implements Sink<T> {
  readonly writes: T[][] = [];
  attempts = 0;
  closed = false;
  #failures = 0;
  #held: Promise<void> | undefined;
  #release: (() => void) | undefined;
  #events = new EventEmitter();

  /** Everything written successfully, flattened in order. */
  get items(): T[] {
    return this.writes.flat();
  }

  /** Makes the next `n` writes reject with an Error. */
  fail(n: number): this {
    this.#failures = n;
    return this;
  }

  /** Makes writes wait until `release()`. */
  hold(): this {
    this.#held = new Promise((resolve) => (this.#release = resolve));
    return this;
  }

  /** Lets held writes go on. */
  release(): void {
    this.#release?.();
    this.#held = undefined;
  }

  async write(items: readonly T[], _options?: WriteOptions): Promise<void> {
    if (this.closed) throw new SinkClosedError('recording sink');
    this.attempts++;
    this.#events.emit('attempt');
    if (this.#held) await this.#held;
    if (this.#failures > 0) {
      this.#failures--;
      throw new Error('scripted failure');
    }
    this.writes.push([...items]);
    this.#events.emit('write');
  }

  /** Resolves once `count` items were written (event-driven), or rejects after `timeoutMs`. */
  waitForItems(count: number, timeoutMs = 5000): Promise<void> {
    return this.#waitUntil('write', () => this.items.length >= count, timeoutMs, () => `${this.items.length}/${count} items`);
  }

  /** Resolves once `count` attempts were made. */
  waitForAttempts(count: number, timeoutMs = 5000): Promise<void> {
    return this.#waitUntil('attempt', () => this.attempts >= count, timeoutMs, () => `${this.attempts}/${count} attempts`);
  }

  #waitUntil(event: string, done: () => boolean, timeoutMs: number, what: () => string): Promise<void> {
    if (done()) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const check = (): void => {
        if (!done()) return;
        clearTimeout(timer);
        this.#events.off(event, check);
        resolve();
      };
      const timer = setTimeout(() => {
        this.#events.off(event, check);
        reject(new Error(`timed out waiting: ${what()}`));
      }, timeoutMs);
      this.#events.on(event, check);
    });
  }

  async close(): Promise<void> {
    if (this.closed) throw new SinkClosedError('recording sink');
    this.closed = true;
  }
}

/** A clock whose sleeps advance virtual time at once (unless aborted first), recording each wait. */
export function fakeClock(start = 1_000_000): Clock & { sleeps: number[]; advance(ms: number): void } {
  let now = start;
  const sleeps: number[] = [];
  return {
    sleeps,
    now: () => now,
    advance: (ms) => void (now += ms),
    sleep: async (ms, signal) => {
      if (signal.aborted) throw signal.reason;
      sleeps.push(ms);
      now += ms;
    },
  };
}
