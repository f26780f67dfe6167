import type pg from 'pg';
import type { Logger } from 'pino';
import { describeDatabaseError, isDatabaseUnavailable } from './errors.ts';
import type { Lease } from './lease-keeper.ts';
import { SerialBatches } from './serial-batches.ts';

/** One endpoint's outcome reached under one lease: positions delivered, or dead-lettered with a reason. */
export interface Outcome {
  readonly endpoint: string;
  readonly lease: Lease;
  readonly positions: readonly number[];
  /** Set for a dead letter: why, and when (ms since the epoch). */
  readonly deadLetter?: { readonly reason: string; readonly at: number };
  /**
   * Whether the outcome may still be written after a failed try (`unavailable`: the database could not be reached,
   * rather than refusing the call): the endpoint still holds this lease (a lease lost or moved on means the next
   * owner sends these events again, so the outcome is given up).
   */
  current(unavailable: boolean): boolean;
  /** Called once: true when written, false when fenced off (another replica holds the lease now), undefined when given up. */
  settle(written: boolean | undefined): void;
}

/** Settings of an `OutcomeWriter`. */
export interface OutcomeWriterOptions {
  pool: pg.Pool;
  replicaId: string;
  logger: Logger;
  /** How long after a failed write (the database is down) it is tried again. */
  retryMs?: number;
}

// Outcomes written by one call at most: a call stays short, and whatever queued meanwhile goes in the next one.
const MAX_PER_CALL = 512;
const RETRY_MS = 1_000;
// Calls start at least this far apart: one registry posting one event at a time would otherwise cost a commit per
// delivered event beside the one per accepted event (its ingest then waits behind these). Acknowledgements lag
// by this much at most more; the per-endpoint bound on unrecorded events is unchanged.
const SPACING_MS = 20;

/**
 * Writes the outcomes of every endpoint this replica delivers for, many in one transaction (`rn_record`): with
 * hundreds of endpoints each answering quickly, one commit per delivered batch would make the database's commit
 * rate the limit of delivery. One call is in flight at a time and outcomes are written in the order they were
 * added, so each endpoint's outcomes land in order; each is fenced by its own lease's epoch in the database. A
 * call that fails is tried again after a pause with the outcomes still `current()`; the others are given up.
 */
export class OutcomeWriter {
  #options: OutcomeWriterOptions;
  #batches = new SerialBatches<Outcome>(MAX_PER_CALL, (batch) => this.#record(batch), SPACING_MS);

  constructor(options: OutcomeWriterOptions) {
    this.#options = options;
  }

  /** Queues `outcome` to be written with whatever else is waiting. */
  add(outcome: Outcome): void {
    this.#batches.add(outcome);
  }

  /** Resolves once every outcome added so far is written or given up. */
  drained(): Promise<void> {
    return this.#batches.drained();
  }

  // One call: settles each outcome, or after a failure waits and hands back those still current to be tried again.
  async #record(batch: Outcome[]): Promise<readonly Outcome[]> {
    let written: boolean[];
    try {
      written = await this.#write(batch);
    } catch (error) {
      const kept: Outcome[] = [];
      const unavailable = isDatabaseUnavailable(error);
      for (const outcome of batch) {
        if (outcome.current(unavailable)) kept.push(outcome);
        else outcome.settle(undefined);
      }
      if (kept.length > 0) {
        this.#options.logger.debug({ outcomes: kept.length, error: describeDatabaseError(error) }, 'database: recording outcomes failed; retrying');
        await new Promise((resolve) => setTimeout(resolve, this.#options.retryMs ?? RETRY_MS));
      }
      return kept;
    }
    batch.forEach((outcome, k) => outcome.settle(written[k] ?? false));
    return [];
  }

  async #write(batch: readonly Outcome[]): Promise<boolean[]> {
    const endpoints: string[] = [];
    const epochs: number[] = [];
    const counts: number[] = [];
    const positions: number[] = [];
    const reasons: (string | null)[] = [];
    const at: (number | null)[] = [];
    for (const outcome of batch) {
      endpoints.push(outcome.endpoint);
      epochs.push(outcome.lease.epoch);
      counts.push(outcome.positions.length);
      positions.push(...outcome.positions.toSorted((a, b) => a - b)); // ascending: rn_record bounds each outcome's range
      reasons.push(outcome.deadLetter?.reason ?? null);
      at.push(outcome.deadLetter?.at ?? null);
    }
    const { rows } = await this.#options.pool.query<{ ok: boolean[] }>({
      name: 'rn-record',
      text: 'SELECT rn_record($1, $2, $3, $4, $5, $6, $7) AS ok',
      values: [this.#options.replicaId, endpoints, epochs, counts, positions, reasons, at],
    });
    return rows[0]?.ok ?? [];
  }
}
