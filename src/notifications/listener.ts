import type { NotifierError } from './errors.ts';
import type { QueuedEvent } from './sink.ts';

/** The outcome of one HTTP attempt: a status when the receiver answered, an error when it did not. */
export interface AttemptResult {
  readonly events: readonly QueuedEvent[];
  readonly durationMs: number;
  /** The HTTP status code, when the receiver answered. */
  readonly status?: number;
  /** The reason phrase that goes with `status` ("Service Unavailable"). */
  readonly statusText?: string;
  /** Why the attempt failed (`HttpStatusError` or `HttpRequestError`); absent on success. */
  readonly error?: NotifierError;
  /** When the attempt ended, milliseconds since the epoch. */
  readonly at: number;
}

/**
 * What an endpoint reports as events move through it: how the metrics and the status counters learn anything,
 * so the engine never imports a metrics library. Every method is optional, cheap and must not throw.
 */
export interface DeliveryListener {
  /** `count` events passed the filters and were queued. */
  queued?(count: number): void;
  /** One HTTP attempt ended (2xx: delivered; other status: failure; no answer: error). */
  attempt?(result: AttemptResult): void;
  /** Events ran out of retry budget; `reason` says which limit and the last error. */
  deadLettered?(events: readonly QueuedEvent[], reason: string): void;
  /** `count` queued events were dropped because the endpoint was removed or shut down before sending them. */
  discarded?(count: number): void;
  /** The endpoint stopped sending, queue kept, after failing for `retry.disableAfter`; `message` says how long and why. */
  autoDisabled?(message: string): void;
  /** `count` events were coalesced (api.md §11 `coalesce`): taken by the filters, not queued, never delivered. */
  coalesced?(count: number): void;
}

/** Whether an attempt's answer counts as success: any 2xx. */
export function isSuccess(result: AttemptResult): boolean {
  return result.status !== undefined && result.status >= 200 && result.status < 300;
}

/** Sends every callback to each listener in turn; a listener that throws does not stop the others. */
export function fanOutListener(...listeners: DeliveryListener[]): DeliveryListener {
  const each = (call: (l: DeliveryListener) => void): void => {
    for (const listener of listeners) {
      try {
        call(listener);
      } catch {
        // A listener's bug must never break delivery.
      }
    }
  };
  return {
    queued: (count) => each((l) => l.queued?.(count)),
    attempt: (result) => each((l) => l.attempt?.(result)),
    deadLettered: (events, reason) => each((l) => l.deadLettered?.(events, reason)),
    discarded: (count) => each((l) => l.discarded?.(count)),
    autoDisabled: (message) => each((l) => l.autoDisabled?.(message)),
    coalesced: (count) => each((l) => l.coalesced?.(count)),
  };
}
