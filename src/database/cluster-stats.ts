import type pg from 'pg';
import type { Logger } from 'pino';
import { rfc3339, type StatsSnapshot } from '../notifications/endpoint-stats.ts';
import { describeDatabaseError } from './errors.ts';

/** What this replica knows of one endpoint locally: its identity, its counters, and whether it holds its lease. */
export interface LocalEndpoint {
  readonly name: string;
  stats(): StatsSnapshot;
}

/** One endpoint as the whole cluster sees it: counters summed over replicas, its owner, what it owes. */
export interface ClusterEndpoint {
  readonly stats: StatsSnapshot;
  /** The replica holding its delivery lease now, if any. */
  readonly owner: string | undefined;
  readonly pending: number;
}

/** Settings of `ClusterStats`. */
export interface ClusterStatsOptions {
  pool: pg.Pool;
  replicaId: string;
  /** This replica's endpoints now. */
  local: () => Iterable<LocalEndpoint>;
  /** Whether this replica holds the endpoint's lease (its failures in a row are the ones that count). */
  owns: (endpoint: string) => boolean;
  logger: Logger;
  /** How often counters are reported and the cluster's read back (default 1 s). */
  intervalMs?: number;
}

const INTERVAL_MS = 1_000;

/**
 * Cluster-wide counters for status, `/endpoints` and the pending gauge (api.md section 7): every interval this
 * replica adds what its endpoints counted since its last report (`rn_add_stats`), then reads every endpoint's
 * sums, owner and pending count, and which replica reports the pending gauge (the live one with the smallest
 * id, so sums over replicas stay right). Readers get the last snapshot synchronously; a failed round keeps the
 * previous one and the unreported counts for the next round.
 */
export class ClusterStats {
  #options: ClusterStatsOptions;
  // What each endpoint had counted when it was last reported, by object: an endpoint deleted and applied again under
  // the same name is a new object counting from zero (its rows were deleted with it), never a drop from the old one.
  #reported = new WeakMap<LocalEndpoint, StatsSnapshot>();
  #view = new Map<string, ClusterEndpoint>();
  #gaugeReporter = false;
  #timer: NodeJS.Timeout | undefined;
  #round: Promise<void> = Promise.resolve();
  #failing = false;

  constructor(options: ClusterStatsOptions) {
    this.#options = options;
  }

  /** The endpoint as the cluster sees it, as of the last round; undefined before the first. */
  get(endpoint: string): ClusterEndpoint | undefined {
    return this.#view.get(endpoint);
  }

  /** Whether this replica is the one that reports `registry_notifications_pending_total`. */
  get reportsPending(): boolean {
    return this.#gaugeReporter;
  }

  /** Starts the rounds. */
  start(): void {
    this.#timer ??= setInterval(() => void this.refresh(), this.#options.intervalMs ?? INTERVAL_MS);
    this.#timer.unref();
    void this.refresh();
  }

  /** Stops the rounds after one last report (counted work is not lost on a clean stop). */
  async stop(): Promise<void> {
    clearInterval(this.#timer);
    await this.refresh();
  }

  /** One round now: report, then read back; resolves when done (never rejects). */
  refresh(): Promise<void> {
    this.#round = this.#round.then(() => this.#once());
    return this.#round;
  }

  async #once(): Promise<void> {
    const { pool, replicaId, logger } = this.#options;
    const reports = this.#reports();
    try {
      if (reports.length > 0) await pool.query('SELECT rn_add_stats($1::jsonb)', [JSON.stringify(reports.map((r) => r.report))]);
      for (const { endpoint, snapshot } of reports) this.#reported.set(endpoint, snapshot);
      const { rows } = await pool.query<Row>(`
        SELECT e.name, e.owner, (e.lease_until > now()) AS leased, coalesce(q.next_pos, 1) - 1 - e.done AS pending,
               s.delivered, s.failures, s.errors, s.dead_lettered, s.coalesced, s.responses, s.last_success, s.last_failure, s.last_error, s.consecutive_failures
        FROM endpoints e LEFT JOIN queues q ON q.name = e.name LEFT JOIN endpoint_stats s ON s.endpoint = e.name`);
      const leader = await pool.query<{ id: string | null }>('SELECT min(id) AS id FROM replicas WHERE seen_until > now()');
      this.#view = new Map(rows.map((row) => [row.name, toClusterEndpoint(row)]));
      this.#gaugeReporter = leader.rows[0]?.id === replicaId;
      if (this.#failing) logger.info('database: cluster counters read again');
      this.#failing = false;
    } catch (error) {
      if (!this.#failing) logger.warn({ error: describeDatabaseError(error) }, 'database: cannot report or read the cluster counters; status shows the last known');
      this.#failing = true;
    }
  }

  /** What each local endpoint counted since it was last reported, skipping endpoints with nothing new. */
  #reports(): { endpoint: LocalEndpoint; snapshot: StatsSnapshot; report: Record<string, unknown> }[] {
    const out: { endpoint: LocalEndpoint; snapshot: StatsSnapshot; report: Record<string, unknown> }[] = [];
    for (const endpoint of this.#options.local()) {
      const now = endpoint.stats();
      const before = this.#reported.get(endpoint);
      const delta = {
        delivered: now.delivered - (before?.delivered ?? 0),
        failures: now.failures - (before?.failures ?? 0),
        errors: now.errors - (before?.errors ?? 0),
        deadLettered: now.deadLettered - (before?.deadLettered ?? 0),
        coalesced: now.coalesced - (before?.coalesced ?? 0),
      };
      const earlier = new Map((before?.responses ?? []).map((r) => [r.code, r.count]));
      const responses = Object.fromEntries(now.responses.map((r) => [String(r.code), r.count - (earlier.get(r.code) ?? 0)]).filter(([, n]) => (n as number) > 0));
      const owner = this.#options.owns(endpoint.name);
      const moved = Object.values(delta).some((n) => n !== 0) || Object.keys(responses).length > 0 ||
        (owner && now.consecutiveFailures !== (before?.consecutiveFailures ?? -1));
      if (!moved) continue;
      out.push({
        endpoint,
        snapshot: now,
        report: {
          endpoint: endpoint.name,
          ...delta,
          responses,
          ...(now.lastSuccessTime !== undefined && { lastSuccess: Date.parse(now.lastSuccessTime) }),
          ...(now.lastFailureTime !== undefined && { lastFailure: Date.parse(now.lastFailureTime) }),
          ...(now.lastError !== undefined && { lastError: now.lastError }),
          ...(owner && { consecutive: now.consecutiveFailures }),
        },
      });
    }
    return out;
  }
}

interface Row {
  name: string;
  owner: string | null;
  leased: boolean | null;
  pending: string;
  delivered: string | null;
  failures: string | null;
  errors: string | null;
  dead_lettered: string | null;
  coalesced: string | null;
  responses: Record<string, number> | null;
  last_success: string | null;
  last_failure: string | null;
  last_error: string | null;
  consecutive_failures: number | null;
}

function toClusterEndpoint(row: Row): ClusterEndpoint {
  const time = (ms: string | null): string | undefined => (ms === null ? undefined : rfc3339(Number(ms)));
  const lastSuccessTime = time(row.last_success);
  const lastFailureTime = time(row.last_failure);
  return {
    owner: row.leased && row.owner !== null ? row.owner : undefined,
    pending: Number(row.pending),
    stats: {
      delivered: Number(row.delivered ?? 0),
      failures: Number(row.failures ?? 0),
      errors: Number(row.errors ?? 0),
      deadLettered: Number(row.dead_lettered ?? 0),
      discarded: 0,
      coalesced: Number(row.coalesced ?? 0),
      responses: Object.entries(row.responses ?? {}).map(([code, count]) => ({ code: Number(code), count: Number(count) })).sort((a, b) => a.code - b.code),
      consecutiveFailures: row.consecutive_failures ?? 0,
      ...(lastSuccessTime !== undefined && { lastSuccessTime }),
      ...(lastFailureTime !== undefined && { lastFailureTime }),
      ...(row.last_error !== null && { lastError: row.last_error }),
    },
  };
}
