/**
 * The contract every stage of the engine implements (after docker/go-events):
 * - `write` resolves once the events are committed: delivered, queued or dead-lettered, depending on the sink.
 *   If it rejects, nothing is committed and the caller may retry, except with `SinkClosedError`, which is
 *   terminal and never retried.
 * - `close` flushes what the sink holds, then releases its resources; a write after close rejects with
 *   `SinkClosedError`, and so does a second close.
 */
import type { Event } from './event.ts';

/** Options of one write. */
export interface WriteOptions {
  /** Cuts a blocking write short (a retrying sink stops waiting); the write then rejects. */
  signal?: AbortSignal;
}

/** A destination for blocks of items (registry events, or queued events below a queue). */
export interface Sink<T = Event> {
  /** Commits the items or rejects; see the module comment for what each outcome means. */
  write(items: readonly T[], options?: WriteOptions): Promise<void>;
  /** Flushes and releases the sink; a second call rejects with `SinkClosedError`. */
  close(): Promise<void>;
}

/** An event as it waits in an endpoint's queue: its wire JSON, its id, and when the engine accepted it. */
export interface QueuedEvent {
  /** The registry's event id (used for the signature's `webhook-id`). */
  readonly id: string;
  /** The event's JSON, exactly as it goes on the wire. */
  readonly json: string;
  /** Milliseconds since the epoch at which the engine accepted the event; never decreases along a queue. */
  readonly acceptedAt: number;
  /** Position in the durable journal, when there is one. */
  readonly seq?: number;
}
