import pg from 'pg';
import type { Logger } from 'pino';
import { describeDatabaseError } from './errors.ts';
import { RELEASED_CHANNEL } from './lease-keeper.ts';
import { clientConfig } from './pool.ts';

/**
 * The channel `rn_accept` and `rn_replay` notify, with the names of the endpoints that have new work as payload,
 * separated by spaces (an endpoint's name has none).
 */
export const WORK_CHANNEL = 'registry_notifier_work';

// Reconnecting after the connection failed: from 500 ms, doubling, at most every 10 s.
const RECONNECT_MIN_MS = 500;
const RECONNECT_MAX_MS = 10_000;

/**
 * Holds one connection that LISTENs for new work, so an owner wakes as soon as an event for its endpoint is
 * committed on any replica, and for replicas that stopped and released their leases, so the others claim them
 * at once; a missed notification costs at most a lease round (the stores' polling fallback).
 * The connection is reopened with backoff when it fails, and `reconnected` is called then (work may have been
 * missed meanwhile). Never throws into its caller; failures are logged once per outage.
 */
export class WorkListener {
  #url: string;
  #applicationName: string;
  #logger: Logger;
  #onWork: (endpoint: string) => void;
  #onReleased: (replica: string) => void;
  #reconnected: () => void;
  #client: pg.Client | undefined;
  #stopped = false;
  #delay = RECONNECT_MIN_MS;
  #timer: NodeJS.Timeout | undefined;
  #failing = false;

  constructor(options: {
    url: string;
    applicationName: string;
    logger: Logger;
    onWork: (endpoint: string) => void;
    onReleased: (replica: string) => void;
    reconnected: () => void;
  }) {
    this.#url = options.url;
    this.#applicationName = options.applicationName;
    this.#logger = options.logger;
    this.#onWork = options.onWork;
    this.#onReleased = options.onReleased;
    this.#reconnected = options.reconnected;
  }

  /** Connects and listens (resolves once listening, or once the first attempt failed: it keeps trying). */
  async start(): Promise<void> {
    await this.#connect();
  }

  /** Closes the connection; idempotent. */
  async stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#timer);
    await this.#client?.end().catch(() => {});
  }

  async #connect(): Promise<void> {
    if (this.#stopped) return;
    // No statement timeout on this connection: LISTEN waits for as long as the process lives.
    const client = new pg.Client(clientConfig(this.#url, { applicationName: this.#applicationName, statementTimeoutMs: 0 }));
    client.on('notification', (message) => {
      if (message.channel === WORK_CHANNEL && message.payload) for (const endpoint of message.payload.split(' ')) this.#onWork(endpoint);
      else if (message.channel === RELEASED_CHANNEL && message.payload) this.#onReleased(message.payload);
    });
    client.on('error', (error) => this.#lost(client, error));
    client.on('end', () => this.#lost(client, new Error('the connection ended')));
    try {
      await client.connect();
      await client.query(`LISTEN ${WORK_CHANNEL}; LISTEN ${RELEASED_CHANNEL}`);
    } catch (error) {
      this.#lost(client, error);
      return;
    }
    this.#client = client;
    this.#delay = RECONNECT_MIN_MS;
    if (this.#failing) this.#logger.info('database: listening for new work again');
    this.#failing = false;
    this.#reconnected();
  }

  #lost(client: pg.Client, error: unknown): void {
    if (this.#stopped || (this.#client !== undefined && this.#client !== client)) return;
    this.#client = undefined;
    client.end().catch(() => {});
    if (!this.#failing) this.#logger.warn({ error: describeDatabaseError(error) }, 'database: the connection listening for new work failed; reconnecting (owners poll meanwhile)');
    this.#failing = true;
    clearTimeout(this.#timer);
    this.#timer = setTimeout(() => void this.#connect(), this.#delay);
    this.#delay = Math.min(RECONNECT_MAX_MS, this.#delay * 2);
  }
}
