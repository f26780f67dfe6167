import { isSuccess, type AttemptResult, type DeliveryListener } from './listener.ts';

/** A plain snapshot of an endpoint's delivery counters: the counter fields of the resource's status. */
export interface StatsSnapshot {
  delivered: number;
  failures: number;
  errors: number;
  deadLettered: number;
  discarded: number;
  /** Events coalesced (api.md §11 `coalesce`): taken by the filters, never queued nor delivered. */
  coalesced: number;
  responses: { code: number; count: number }[];
  lastSuccessTime?: string;
  lastFailureTime?: string;
  lastError?: string;
  /** Failed attempts (non-2xx or no answer) since the last success. */
  consecutiveFailures: number;
}

// api.md: lastError holds at most 256 characters.
const MAX_ERROR_LENGTH = 256;

/** Counts what a `DeliveryListener` hears, for the status API and the resource's status. */
export class EndpointStats implements DeliveryListener {
  #delivered = 0;
  #failures = 0;
  #errors = 0;
  #deadLettered = 0;
  #discarded = 0;
  #coalesced = 0;
  #consecutive = 0;
  #responses = new Map<number, number>();
  #lastSuccess: number | undefined;
  #lastFailure: number | undefined;
  #lastError: string | undefined;

  attempt(result: AttemptResult): void {
    if (result.status !== undefined) this.#responses.set(result.status, (this.#responses.get(result.status) ?? 0) + 1);
    if (isSuccess(result)) {
      this.#delivered += result.events.length;
      this.#consecutive = 0;
      this.#lastSuccess = result.at;
      return;
    }
    if (result.status === undefined) this.#errors++;
    else this.#failures++;
    this.#consecutive++;
    this.#lastFailure = result.at;
    this.#lastError = truncate(result.error?.message ?? `${result.status} ${result.statusText ?? ''}`.trim());
  }

  deadLettered(events: readonly unknown[]): void {
    this.#deadLettered += events.length;
  }

  discarded(count: number): void {
    this.#discarded += count;
  }

  coalesced(count: number): void {
    this.#coalesced += count;
  }

  /** Adds counters carried over from before a restart (the resource's last written status), best effort. */
  seed(previous: Partial<Pick<StatsSnapshot, 'delivered' | 'failures' | 'errors' | 'deadLettered' | 'coalesced' | 'responses'>>): void {
    this.#delivered += previous.delivered ?? 0;
    this.#failures += previous.failures ?? 0;
    this.#errors += previous.errors ?? 0;
    this.#deadLettered += previous.deadLettered ?? 0;
    this.#coalesced += previous.coalesced ?? 0;
    for (const { code, count } of previous.responses ?? []) this.#responses.set(code, (this.#responses.get(code) ?? 0) + count);
  }

  /** The counters now, with times as RFC 3339 strings. */
  snapshot(): StatsSnapshot {
    return {
      delivered: this.#delivered,
      failures: this.#failures,
      errors: this.#errors,
      deadLettered: this.#deadLettered,
      discarded: this.#discarded,
      coalesced: this.#coalesced,
      responses: [...this.#responses].sort(([a], [b]) => a - b).map(([code, count]) => ({ code, count })),
      consecutiveFailures: this.#consecutive,
      ...(this.#lastSuccess !== undefined && { lastSuccessTime: rfc3339(this.#lastSuccess) }),
      ...(this.#lastFailure !== undefined && { lastFailureTime: rfc3339(this.#lastFailure) }),
      ...(this.#lastError !== undefined && { lastError: this.#lastError }),
    };
  }
}

/** A time as Kubernetes writes it: RFC 3339 in UTC, whole seconds (`2026-11-22T09:30:02Z`). */
export function rfc3339(ms: number): string {
  return new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z');
}

function truncate(text: string): string {
  return text.length <= MAX_ERROR_LENGTH ? text : `${text.slice(0, MAX_ERROR_LENGTH - 1)}…`;
}
