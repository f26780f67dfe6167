import type { ReadyReason } from '../api/notification-endpoint.ts';

/** Whether an endpoint runs as configured (the `Ready` condition), and why not. */
export interface ReadyState {
  readonly ready: boolean;
  readonly reason: ReadyReason;
  readonly message?: string;
  /** Where the endpoint is defined (a file, or namespace/name in the cluster), for messages. */
  readonly origin?: string;
  /** The URL the definition names, when it names one (shown, redacted, for an endpoint that does not run). */
  readonly url?: string;
}

/**
 * Where endpoints come from: YAML files (standalone) or the cluster (controller). A source drives an
 * `EndpointSet` and reports each endpoint's readiness; the rest of the program does not know which it is.
 */
export interface EndpointSource {
  /** Loads every endpoint once (the initial list) and starts following changes. */
  start(): Promise<void>;
  /** Stops following changes; the endpoints stay as they are. Idempotent. */
  close(): Promise<void>;
  /** True once the initial load finished. */
  readonly ready: boolean;
  /** Final work after the queues drained on shutdown (the controller's last status write). Optional. */
  finish?(): Promise<void>;
  /**
   * Whether the source is sure an endpoint of this identity no longer exists, so the journal may drop what it
   * kept for it: never while part of the definitions could not be read, nor outside what the source watches.
   */
  mayForget(name: string): boolean;
  /** Every endpoint the source knows, valid or not, by identity. */
  states(): ReadonlyMap<string, ReadyState>;
}
