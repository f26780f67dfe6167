import type { Logger } from 'pino';
import type { EndpointSet } from '../notifications/endpoint-set.ts';

/** Settings of `EndpointRemovals`. */
export interface EndpointRemovalsOptions {
  endpoints: EndpointSet;
  logger: Logger;
  /** Called once per removed endpoint, after it closed, with how many queued events were discarded. */
  onRemoved?: (name: string, discarded: number) => void;
}

/**
 * Removes endpoints for a source (the file source, the reconciler) without waiting on them: `remove` takes an
 * endpoint out of routing at once, so a write that begins afterwards never queues for it, and its closing (the
 * attempt in flight ends, the queue is discarded) finishes in the background, after which `onRemoved` is called
 * and one line is logged (a warning when events were discarded). Removing a hundred endpoints therefore takes as
 * long as removing one, however slow their receivers are.
 */
export class EndpointRemovals {
  #options: EndpointRemovalsOptions;
  #closing = new Map<string, Promise<void>>();

  constructor(options: EndpointRemovalsOptions) {
    this.#options = options;
  }

  /** Takes the endpoint out now and closes it in the background; false when the set has no such endpoint. */
  remove(name: string): boolean {
    const { endpoints, logger, onRemoved } = this.#options;
    if (!endpoints.get(name)) return false;
    // EndpointSet.remove takes the endpoint out of the set and of routing before its first await.
    const closing = endpoints.remove(name).then(
      (discarded) => {
        onRemoved?.(name, discarded);
        (discarded > 0 ? logger.warn.bind(logger) : logger.info.bind(logger))({ endpoint: name, discarded }, 'endpoint removed');
      },
      (error: unknown) => logger.error({ endpoint: name, err: error }, 'closing a removed endpoint failed'),
    );
    const tracked = closing.finally(() => {
      if (this.#closing.get(name) === tracked) this.#closing.delete(name);
    });
    this.#closing.set(name, tracked);
    return true;
  }

  /**
   * Resolves once the removal of `name` still closing (if any) has finished. Await it before applying the same
   * name again: the old endpoint's clean-up drops what the store keeps under that name.
   */
  settled(name: string): Promise<void> {
    return this.#closing.get(name) ?? Promise.resolve();
  }

  /** Resolves once every removal started so far has finished (never rejects). */
  async idle(): Promise<void> {
    await Promise.all(this.#closing.values());
  }
}
