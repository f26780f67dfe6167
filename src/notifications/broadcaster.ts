import { SinkClosedError } from './errors.ts';
import type { Event } from './event.ts';
import type { Sink, WriteOptions } from './sink.ts';

/**
 * Writes every block to every sink it holds, all sinks at once, so a slow sink never delays the others' start.
 * Sinks are added and removed at any time; a write works on the list as it was when the write began. A sink
 * that reports itself closed is dropped. Reliability is the sinks' job: put a queue in front of anything slow.
 */
export class Broadcaster implements Sink<Event> {
  #sinks = new Set<Sink<Event>>();
  #closed = false;

  /** Adds a sink; it receives every block written from now on. Adding a sink twice has no further effect. */
  add(sink: Sink<Event>): void {
    if (this.#closed) throw new SinkClosedError('broadcaster');
    this.#sinks.add(sink);
  }

  /** Removes a sink without closing it (its owner decides); returns whether it was present. */
  remove(sink: Sink<Event>): boolean {
    return this.#sinks.delete(sink);
  }

  /** How many sinks are attached. */
  get size(): number {
    return this.#sinks.size;
  }

  /**
   * Writes the block to every sink and resolves when all accepted it. Rejects with the first error of a sink
   * that failed (after every sink has settled); a sink that rejects with `SinkClosedError` is dropped instead.
   */
  async write(events: readonly Event[], options?: WriteOptions): Promise<void> {
    if (this.#closed) throw new SinkClosedError('broadcaster');
    if (events.length === 0) return;
    const sinks = [...this.#sinks];
    const results = await Promise.allSettled(sinks.map((sink) => sink.write(events, options)));
    let failure: unknown;
    results.forEach((result, i) => {
      if (result.status === 'fulfilled') return;
      if (result.reason instanceof SinkClosedError) this.#sinks.delete(sinks[i]!);
      else failure ??= result.reason;
    });
    if (failure !== undefined) throw failure;
  }

  /** Closes every sink (each flushes) and refuses further writes; a second close rejects with `SinkClosedError`. */
  async close(): Promise<void> {
    if (this.#closed) throw new SinkClosedError('broadcaster');
    this.#closed = true;
    const sinks = [...this.#sinks];
    this.#sinks.clear();
    await Promise.allSettled(sinks.map((sink) => sink.close()));
  }
}
