/**
 * The endpoint status model of api.md section 2, derived from the delivery engine's counters: what the controller
 * writes into each resource's status and what `GET /endpoints` shows, so both say the same. Ready (our side) comes
 * from the endpoint's source; Delivering (the receiver's side) and the counters from the running endpoint.
 */
import { formatDuration } from '../api/duration.ts';
import type { DeliveringReason } from '../api/notification-endpoint.ts';
import type { Endpoint } from '../notifications/endpoint.ts';
import { rfc3339, type StatsSnapshot } from '../notifications/endpoint-stats.ts';
import { redactUrl } from '../notifications/http-sink.ts';
import { ed25519PublicKey } from '../notifications/signing.ts';
import type { ReadyState } from '../sources/source.ts';

/** The Delivering condition: True (Succeeded, Idle), False (Failing), or Unknown (NotRunning: no endpoint runs). */
export interface DeliveringCondition {
  status: 'True' | 'False' | 'Unknown';
  reason: DeliveringReason;
  message?: string;
}

/** The Ready condition as the endpoint's source decided it (the controller, or the standalone file source). */
export type Readiness = Pick<ReadyState, 'ready' | 'reason' | 'message' | 'url'>;

/** An endpoint's status as JSON: counters, conditions and the URL without credentials. */
export interface EndpointStatus {
  name: string;
  /** The configured URL with its user-info removed; empty when no endpoint runs. */
  url: string;
  ready: boolean;
  /** Ready's reason: Configured when ready, else why not (api.md section 2). */
  reason: Readiness['reason'];
  message?: string;
  delivering: DeliveringCondition;
  pending: number;
  delivered: number;
  /** Every attempt that did not succeed: `failures` + `errors`. */
  failed: number;
  /** Attempts answered with a non-2xx status. */
  failures: number;
  /** Attempts that got no answer: timeout, connection refused, TLS failure. */
  errors: number;
  deadLettered: number;
  /** Events coalesced (api.md §11 `coalesce`): not queued, not delivered. */
  coalesced: number;
  responses: { code: number; count: number }[];
  lastSuccessTime?: string;
  lastFailureTime?: string;
  lastError?: string;
  /** Present (and true) only when server certificate verification is switched off. */
  insecureSkipVerify?: boolean;
  /** With Ed25519 signing: the public key of the key the endpoint signs with now, `whpk_` + base64. */
  signingPublicKey?: string;
  /** With several replicas (a database): the replica delivering for the endpoint now, if any holds it. */
  owner?: string;
}

/** Delivering of an endpoint that nothing runs (its spec was refused, a Secret is missing, ...): the receiver's side is unknown. */
export const NOT_RUNNING: DeliveringCondition = Object.freeze({
  status: 'Unknown',
  reason: 'NotRunning',
  message: 'the endpoint does not run in the delivery engine; see the Ready condition',
});

const IDLE: DeliveringCondition = Object.freeze({ status: 'True', reason: 'Idle' });

/** What `endpointStatus` reads of an endpoint; a live `Endpoint` fits (a view without `autoDisabled` never shows AutoDisabled). */
export type EndpointView = Pick<Endpoint, 'name' | 'pending' | 'stats' | 'config'> & { readonly autoDisabled?: Endpoint['autoDisabled'] };

/**
 * The Ready condition as it stands: the source's, except that an endpoint it configured (Ready True) which stopped
 * on its own after failing for `retry.disableAfter` is `False`, reason `AutoDisabled`, with since when and how
 * to send again. What the controller writes and `/endpoints` shows.
 */
export function currentReadiness(readiness: Readiness, endpoint: Pick<EndpointView, 'autoDisabled' | 'config'> | undefined): Readiness {
  const stopped = endpoint?.autoDisabled;
  if (!stopped || !readiness.ready) return readiness;
  const after = formatDuration(endpoint.config.retry.disableAfterMs);
  const message = `no successful delivery for ${after} (retry.disableAfter): sending stopped at ${rfc3339(stopped.since)}, ` +
    `events are kept in the queue; a spec change or a new registry-notifier.io/resume-requested-at value sends again. ${stopped.message}`;
  return { ...readiness, ready: false, reason: 'AutoDisabled', message };
}

/**
 * The Delivering condition of a running endpoint, derived from its counters alone: Failing while the last
 * attempt failed, else Succeeded once anything was delivered, else Idle.
 */
export function delivering(stats: StatsSnapshot): DeliveringCondition {
  const failed = stats.consecutiveFailures;
  if (failed > 0) {
    const attempts = failed === 1 ? 'attempt' : 'attempts';
    return { status: 'False', reason: 'Failing', message: `${failed} failed ${attempts} in a row; last: ${stats.lastError ?? 'unknown error'}` };
  }
  if (stats.delivered > 0 || stats.lastSuccessTime !== undefined) return { status: 'True', reason: 'Succeeded' };
  return IDLE;
}

/** The counter fields of an endpoint's status (api.md section 2), as `/endpoints` and the resource's status show them. */
export type StatusCounters = Omit<EndpointStatus, 'name' | 'url' | 'ready' | 'reason' | 'message' | 'delivering'>;

// Deriving a public key costs about half a millisecond; each configuration's key Buffer is derived once.
const publicKeys = new WeakMap<Buffer, string>();

/** The `whpk_` public key an endpoint's configuration signs for, or undefined unless it signs with Ed25519. */
export function signingPublicKey(config: EndpointView['config']): string | undefined {
  if (config.signingAlgorithm !== 'Ed25519' || !config.signingKey) return undefined;
  let key = publicKeys.get(config.signingKey);
  if (key === undefined) publicKeys.set(config.signingKey, key = ed25519PublicKey(config.signingKey));
  return key;
}

/**
 * The endpoint's counters now; `insecureSkipVerify` appears only when verification is off, `signingPublicKey` only
 * with Ed25519 signing.
 */
export function statusCounters(endpoint: EndpointView): StatusCounters {
  const publicKey = signingPublicKey(endpoint.config);
  const stats = endpoint.stats();
  return {
    pending: endpoint.pending,
    delivered: stats.delivered,
    failed: stats.failures + stats.errors,
    failures: stats.failures,
    errors: stats.errors,
    deadLettered: stats.deadLettered,
    coalesced: stats.coalesced,
    responses: stats.responses,
    ...(stats.lastSuccessTime !== undefined && { lastSuccessTime: stats.lastSuccessTime }),
    ...(stats.lastFailureTime !== undefined && { lastFailureTime: stats.lastFailureTime }),
    ...(stats.lastError !== undefined && { lastError: stats.lastError }),
    ...(endpoint.config.tls?.insecureSkipVerify === true && { insecureSkipVerify: true }),
    ...(publicKey !== undefined && { signingPublicKey: publicKey }),
  };
}

/** A pure snapshot of a running endpoint's status now; never contains URL credentials or header values. */
export function endpointStatus(endpoint: EndpointView, readiness: Readiness): EndpointStatus {
  return {
    name: endpoint.name,
    url: redactUrl(endpoint.config.url),
    ...readinessFields(currentReadiness(readiness, endpoint)),
    delivering: delivering(endpoint.stats()),
    ...statusCounters(endpoint),
  };
}

/**
 * Every endpoint a source knows, for `GET /endpoints`: running ones with their counters (Ready as the source
 * says, Configured when it says nothing), the others (refused, waiting for a Secret) with their reason,
 * Delivering Unknown (NotRunning) and zero counters.
 */
export function endpointStatuses(endpoints: { list(): EndpointView[] }, states: ReadonlyMap<string, Readiness>): EndpointStatus[] {
  const out: EndpointStatus[] = [];
  const seen = new Set<string>();
  for (const endpoint of endpoints.list()) {
    seen.add(endpoint.name);
    out.push(endpointStatus(endpoint, states.get(endpoint.name) ?? { ready: true, reason: 'Configured' }));
  }
  for (const [name, state] of states) {
    if (seen.has(name)) continue;
    out.push({
      name, url: state.url !== undefined ? redactUrl(state.url) : '', ...readinessFields({ ...state, ready: false }),
      delivering: NOT_RUNNING,
      pending: 0, delivered: 0, failed: 0, failures: 0, errors: 0, deadLettered: 0, coalesced: 0, responses: [],
    });
  }
  return out;
}

function readinessFields({ ready, reason, message }: Readiness): Pick<EndpointStatus, 'ready' | 'reason' | 'message'> {
  return { ready, reason, ...(message !== undefined && { message }) };
}
