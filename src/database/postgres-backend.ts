import type pg from 'pg';
import type { Logger } from 'pino';
import type { Committed, EndpointStore, QueueBackend, Route } from '../notifications/queue-store.ts';
import { AcceptWriter } from './accept-writer.ts';
import { classifyDatabaseError, describeDatabaseError } from './errors.ts';
import { LeaseKeeper, longestAttemptMs, type LeaseHolder } from './lease-keeper.ts';
import { migrate } from './migrate.ts';
import { OutcomeWriter } from './outcome-writer.ts';
import { openPool } from './pool.ts';
import { PageReader } from './page-reader.ts';
import { PostgresEndpointStore } from './postgres-endpoint-store.ts';
import { WorkListener } from './work-listener.ts';

/** Settings of `PostgresBackend.open`. */
export interface PostgresBackendOptions {
  /** `postgres://…`; never logged (only `redactDatabaseUrl` of it). */
  url: string;
  /** How this replica names itself in leases (the pod's name: unique among the replicas). */
  replicaId: string;
  /** An endpoint whose owner stopped renewing for this long is taken over (api.md section 7). */
  leaseDurationMs: number;
  logger: Logger;
}

// Ids are remembered in the database this long for duplicate suppression across replicas (a registry resends
// within seconds to minutes); the housekeeping round forgets older ones.
const RECENT_IDS_MS = 60 * 60_000;
// Events an endpoint's window is fed at a time: enough to keep batches full, little memory per endpoint.
const PAGE = 100;
// Housekeeping (recent ids, orphaned events, replicas long gone, dead letters over the bound) runs this often on
// each replica.
const SWEEP_MS = 5 * 60_000;
// Dead letters each endpoint keeps (the journal's bound); beyond it the oldest go at housekeeping, at most
// TRIM_BATCH a statement and TRIM_ROUNDS statements a round (a million a round: a pile-up goes over a few rounds).
const MAX_DEAD_LETTERS = 100_000;
const TRIM_BATCH = 50_000;
const TRIM_ROUNDS = 20;

/**
 * The queue backend for several replicas sharing one PostgreSQL database (api.md section 7). `commit` goes in
 * one call of `rn_accept` (with the requests that arrived while the previous call ran, see `AcceptWriter`): one
 * transaction that drops ids already seen on any replica, stores each event once and gives it a position in
 * every endpoint's queue under that endpoint's row lock (so positions follow commit order), then notifies the
 * owners; nothing is queued in this process. Delivery is by lease: each endpoint's
 * store pages its queue in while this replica holds the endpoint (see `PostgresEndpointStore`); one reader pages
 * for many endpoints in one query and one writer records their outcomes, many to a transaction.
 */
export class PostgresBackend implements QueueBackend {
  #pool: pg.Pool;
  #options: PostgresBackendOptions;
  #keeper: LeaseKeeper;
  #listener: WorkListener;
  #acceptor: AcceptWriter;
  #writer: OutcomeWriter;
  #reader: PageReader;
  #stores = new Map<string, PostgresEndpointStore>();
  #pending = new Map<string, number>();
  #sweeper: NodeJS.Timeout | undefined;

  private constructor(pool: pg.Pool, options: PostgresBackendOptions) {
    this.#pool = pool;
    this.#options = options;
    const applicationName = `registry-notifier/${options.replicaId}`;
    this.#keeper = new LeaseKeeper({
      pool,
      replicaId: options.replicaId,
      leaseDurationMs: options.leaseDurationMs,
      logger: options.logger,
      onPending: (pending) => (this.#pending = new Map(pending)),
    });
    this.#acceptor = new AcceptWriter(pool);
    this.#writer = new OutcomeWriter({ pool, replicaId: options.replicaId, logger: options.logger });
    this.#reader = new PageReader({ pool, pageSize: PAGE });
    this.#listener = new WorkListener({
      url: options.url,
      applicationName,
      logger: options.logger,
      onWork: (endpoint) => this.#stores.get(endpoint)?.wake(),
      onReleased: (replica) => {
        if (replica !== options.replicaId) this.#keeper.poke();
      },
      reconnected: () => {
        for (const store of this.#stores.values()) store.wake();
      },
    });
  }

  /**
   * Connects, brings the schema up to date (under an advisory lock: replicas may start together), starts the
   * lease rounds and the listener. Rejects when the database cannot be reached or its schema is newer.
   */
  static async open(options: PostgresBackendOptions): Promise<PostgresBackend> {
    const pool = openPool(options.url, { applicationName: `registry-notifier/${options.replicaId}`, logger: options.logger });
    try {
      await migrate(pool);
    } catch (error) {
      await pool.end().catch(() => {});
      throw classifyDatabaseError(error);
    }
    const backend = new PostgresBackend(pool, options);
    await backend.#listener.start();
    backend.#keeper.start();
    backend.#sweeper = setInterval(() => void backend.#sweep(), SWEEP_MS);
    backend.#sweeper.unref();
    return backend;
  }

  /** Whether the last lease round reached the database (readiness: a replica cut off from it takes no events). */
  get healthy(): boolean {
    return this.#keeper.healthy;
  }

  /** The connection pool (cluster-wide counters and status read through it). */
  get pool(): pg.Pool {
    return this.#pool;
  }

  async commit(routes: readonly Route[]): Promise<Committed> {
    return { routes: [], duplicates: await this.#acceptor.accept(routes) };
  }

  storeFor(endpoint: string): EndpointStore {
    return new PostgresEndpointStore(endpoint, {
      pool: this.#pool,
      logger: this.#options.logger.child({ endpoint }),
      longestAttemptMs: longestAttemptMs(this.#options.leaseDurationMs),
      pending: (name) => this.#pending.get(name),
      read: (name, after) => this.#reader.read(name, after),
      record: (outcome) => this.#writer.add(outcome),
      release: (name, epoch) => this.#keeper.release(name, epoch),
      register: (holder) => this.#register(holder as PostgresEndpointStore),
      unregister: (holder) => this.#unregister(holder as PostgresEndpointStore),
    });
  }

  /** Whether this replica holds the endpoint's delivery lease now. */
  holds(endpoint: string): boolean {
    return this.#stores.get(endpoint)?.holding ?? false;
  }

  /** Stops the rounds, releases this replica's leases (others take over at once), closes the connections. */
  async close(): Promise<void> {
    clearInterval(this.#sweeper);
    await this.#writer.drained(); // outcomes reached are written while the leases they were reached under are still held
    await this.#keeper.stop();
    await this.#listener.stop();
    await this.#pool.end().catch(() => {});
  }

  #register(store: PostgresEndpointStore): void {
    this.#stores.set(store.name, store);
    this.#keeper.add(store as LeaseHolder);
  }

  #unregister(store: PostgresEndpointStore): void {
    if (this.#stores.get(store.name) === store) this.#stores.delete(store.name);
    this.#keeper.remove(store);
  }

  async #sweep(): Promise<void> {
    try {
      await this.#pool.query('SELECT rn_sweep($1)', [RECENT_IDS_MS]);
      // Dead letters beyond each endpoint's bound, a batch per statement (a pile-up would outlast one statement).
      for (let round = 0; round < TRIM_ROUNDS; round++) {
        const { rows } = await this.#pool.query<{ n: number }>('SELECT rn_trim_dead_letters($1, $2) AS n', [MAX_DEAD_LETTERS, TRIM_BATCH]);
        if ((rows[0]?.n ?? 0) < TRIM_BATCH) break;
      }
    } catch (error) {
      this.#options.logger.warn({ error: describeDatabaseError(error) }, 'database: housekeeping failed; it runs again later');
    }
  }
}
