/**
 * One endpoint's status as `GET /endpoints` shows it: the fields of the resource's status (api.md section 2)
 * with the two conditions flattened, Ready (our side) and Delivering (the receiver's side).
 */
import type { DeliveringReason, ReadyReason } from '../api/notification-endpoint.ts';
import type { Endpoint } from '../notifications/endpoint.ts';
import type { StatsSnapshot } from '../notifications/endpoint-stats.ts';
import { redactUrl } from '../notifications/http-sink.ts';

/** The Delivering condition: True (Succeeded, Idle) unless the last attempt failed (False, Failing). */
export interface DeliveringCondition {
  status: 'True' | 'False';
  reason: DeliveringReason;
  message?: string;
}

/** The Ready condition as the controller or the standalone loader decided it. */
export interface Readiness {
  ready: boolean;
  /** Configured when ready; InvalidSpec, SecretNotFound, Disabled or EndpointRefused when not. */
  reason?: ReadyReason;
  message?: string;
}

/** An endpoint's status as JSON: counters, conditions and the URL without credentials. */
export interface EndpointStatus {
  name: string;
  /** The configured URL with its user-info removed. */
  url: string;
  ready: boolean;
  reason?: ReadyReason;
  message?: string;
  delivering: DeliveringCondition;
  pending: number;
  delivered: number;
  failures: number;
  errors: number;
  deadLettered: number;
  responses: { code: number; count: number }[];
  lastSuccessTime?: string;
  lastFailureTime?: string;
  lastError?: string;
  /** Present (and true) only when server certificate verification is switched off. */
  insecureSkipVerify?: boolean;
}

/** Delivering when nothing was sent yet, or the endpoint does not run at all. */
export const IDLE: DeliveringCondition = Object.freeze({ status: 'True', reason: 'Idle' });

/** What `endpointStatus` reads of an endpoint; a live `Endpoint` fits. */
export type EndpointView = Pick<Endpoint, 'name' | 'pending' | 'stats' | 'config'>;

/**
 * The Delivering condition of api.md section 2, derived from the counters alone: Failing while the last
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

/** The endpoint's counters now; `insecureSkipVerify` appears only when verification is off. */
export function statusCounters(endpoint: EndpointView): StatusCounters {
  const stats = endpoint.stats();
  return {
    pending: endpoint.pending,
    delivered: stats.delivered,
    failures: stats.failures,
    errors: stats.errors,
    deadLettered: stats.deadLettered,
    responses: stats.responses,
    ...(stats.lastSuccessTime !== undefined && { lastSuccessTime: stats.lastSuccessTime }),
    ...(stats.lastFailureTime !== undefined && { lastFailureTime: stats.lastFailureTime }),
    ...(stats.lastError !== undefined && { lastError: stats.lastError }),
    ...(endpoint.config.tls?.insecureSkipVerify === true && { insecureSkipVerify: true }),
  };
}

/** A pure snapshot of the endpoint's status now; never contains URL credentials or header values. */
export function endpointStatus(endpoint: EndpointView, readiness: Readiness): EndpointStatus {
  return {
    name: endpoint.name,
    url: redactUrl(endpoint.config.url),
    ready: readiness.ready,
    ...(readiness.reason !== undefined && { reason: readiness.reason }),
    ...(readiness.message !== undefined && { message: readiness.message }),
    delivering: delivering(endpoint.stats()),
    ...statusCounters(endpoint),
  };
}
