// The endpoint status model (api.md section 2) as pure functions: Delivering derived from the counters, Unknown when
// nothing runs, `failed` = failures + errors, credentials never shown, and the list `GET /endpoints` serves.
import { describe, expect, it } from 'vitest';
import { endpointConfig } from '../../src/notifications/endpoint.ts';
import type { StatsSnapshot } from '../../src/notifications/endpoint-stats.ts';
import {
  delivering,
  endpointStatus,
  endpointStatuses,
  NOT_RUNNING,
  statusCounters,
  type EndpointView,
} from '../../src/status/endpoint-status.ts';
import { ed25519KeyPair } from '../support/ed25519.ts';

function stats(over: Partial<StatsSnapshot>): StatsSnapshot {
  return { delivered: 0, failures: 0, errors: 0, deadLettered: 0, discarded: 0, coalesced: 0, responses: [], consecutiveFailures: 0, ...over };
}

const view = (name: string, over: Partial<StatsSnapshot> = {}, url = `http://127.0.0.1:9/${name}`): EndpointView => ({
  name,
  pending: 4,
  stats: () => stats(over),
  config: endpointConfig({ url }),
});

describe('delivering', () => {
  it('derives Delivering exactly as api.md section 2 says', () => {
    const last = { lastError: '503 Service Unavailable' };
    expect(delivering(stats({ consecutiveFailures: 10, failures: 10, ...last }))).toEqual({
      status: 'False',
      reason: 'Failing',
      message: '10 failed attempts in a row; last: 503 Service Unavailable',
    });
    expect(delivering(stats({ consecutiveFailures: 1, delivered: 5, ...last })).message).toBe('1 failed attempt in a row; last: 503 Service Unavailable');
    expect(delivering(stats({ delivered: 5 }))).toEqual({ status: 'True', reason: 'Succeeded' });
    expect(delivering(stats({ lastSuccessTime: '2026-11-22T09:30:02Z' }))).toEqual({ status: 'True', reason: 'Succeeded' });
    expect(delivering(stats({}))).toEqual({ status: 'True', reason: 'Idle' });
  });

  it('NOT_RUNNING is Unknown with reason NotRunning, pointing at Ready', () => {
    expect(NOT_RUNNING).toEqual({ status: 'Unknown', reason: 'NotRunning', message: 'the endpoint does not run in the delivery engine; see the Ready condition' });
    expect(Object.isFrozen(NOT_RUNNING)).toBe(true);
  });
});

describe('statusCounters', () => {
  it('failed counts every attempt that did not succeed: failures (non-2xx) + errors (no answer); both stay as they are', () => {
    const refused = statusCounters(view('refused', { errors: 30, consecutiveFailures: 30, lastError: 'connect ECONNREFUSED 127.0.0.1:9' }));
    expect(refused).toMatchObject({ failed: 30, failures: 0, errors: 30 });
    expect(statusCounters(view('mixed', { failures: 142, errors: 5 }))).toMatchObject({ failed: 147, failures: 142, errors: 5 });
    expect(statusCounters(view('fine', { delivered: 3 }))).toMatchObject({ failed: 0, failures: 0, errors: 0 });
  });

  it('coalesced shows the events spec.coalesce kept back; they are neither pending nor delivered', () => {
    expect(statusCounters(view('quiet', { delivered: 1, coalesced: 41 }))).toMatchObject({ pending: 4, delivered: 1, coalesced: 41 });
  });
});

describe('signingPublicKey', () => {
  it('is the whpk_ key of an Ed25519 configuration, absent with HMAC or no signing', () => {
    const { seed, whpk } = ed25519KeyPair();
    const signed = (config: Partial<EndpointView['config']>): EndpointView => ({ ...view('x'), config: endpointConfig({ url: 'http://127.0.0.1:9/x', ...config }) });
    expect(statusCounters(signed({ signingKey: seed, signingAlgorithm: 'Ed25519' })).signingPublicKey).toBe(whpk);
    expect(endpointStatus(signed({ signingKey: seed, signingAlgorithm: 'Ed25519' }), { ready: true, reason: 'Configured' }).signingPublicKey).toBe(whpk);
    expect(statusCounters(signed({ signingKey: seed }))).not.toHaveProperty('signingPublicKey');
    expect(statusCounters(view('x'))).not.toHaveProperty('signingPublicKey');
  });
});

describe('endpointStatus', () => {
  it('carries the readiness reason and message, and redacts credentials', () => {
    const status = endpointStatus(view('ns/x', { delivered: 1 }, 'https://user:pass@hooks.example.com/in?x=1'), { ready: false, reason: 'SecretNotFound', message: 'secret ns/sig not found' });
    expect(status).toEqual({
      name: 'ns/x',
      url: 'https://hooks.example.com/in?x=***',
      ready: false,
      reason: 'SecretNotFound',
      message: 'secret ns/sig not found',
      delivering: { status: 'True', reason: 'Succeeded' },
      pending: 4,
      delivered: 1,
      failed: 0,
      failures: 0,
      errors: 0,
      deadLettered: 0,
      coalesced: 0,
      responses: [],
    });
  });
});

describe('endpointStatuses', () => {
  it('running endpoints with their counters; known but not running ones with their reason, Delivering Unknown and zero counters', () => {
    const states = new Map([
      ['live', { ready: true, reason: 'Configured' as const }],
      ['kept', { ready: false, reason: 'InvalidSpec' as const, message: 'bad; the last valid configuration keeps running' }],
      ['refused', { ready: false, reason: 'EndpointRefused' as const, message: '169.254.169.254 is link-local', origin: 'a.yaml' }],
      ['waiting', { ready: false, reason: 'SecretNotFound' as const, message: 'Secret token not found' }],
    ]);
    const statuses = endpointStatuses({ list: () => [view('live', { delivered: 2 }), view('kept', { errors: 1, consecutiveFailures: 1 }), view('unlisted')] }, states);
    expect(statuses.map((s) => [s.name, s.ready, s.reason, s.delivering.status, s.delivering.reason])).toEqual([
      ['live', true, 'Configured', 'True', 'Succeeded'],
      // an invalid edit of a running endpoint: it still runs, so the receiver's side is known
      ['kept', false, 'InvalidSpec', 'False', 'Failing'],
      // running, and the source says nothing about it: Configured
      ['unlisted', true, 'Configured', 'True', 'Idle'],
      ['refused', false, 'EndpointRefused', 'Unknown', 'NotRunning'],
      ['waiting', false, 'SecretNotFound', 'Unknown', 'NotRunning'],
    ]);
    expect(statuses[3]).toEqual({
      name: 'refused', url: '', ready: false, reason: 'EndpointRefused', message: '169.254.169.254 is link-local',
      delivering: NOT_RUNNING,
      pending: 0, delivered: 0, failed: 0, failures: 0, errors: 0, deadLettered: 0, coalesced: 0, responses: [],
    });
  });
});
