// The endpoint status model (api.md section 2) as pure functions: Delivering derived from the counters, credentials
// never shown.
import { describe, expect, it } from 'vitest';
import { endpointConfig } from '../../src/notifications/endpoint.ts';
import type { StatsSnapshot } from '../../src/notifications/endpoint-stats.ts';
import { delivering, endpointStatus, type EndpointView } from '../../src/status/endpoint-status.ts';

function stats(over: Partial<StatsSnapshot>): StatsSnapshot {
  return { delivered: 0, failures: 0, errors: 0, deadLettered: 0, discarded: 0, responses: [], consecutiveFailures: 0, ...over };
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
});

describe('endpointStatus', () => {
  it('carries the readiness reason and message, and redacts credentials', () => {
    const status = endpointStatus(view('ns/x', { delivered: 1 }, 'https://user:pass@hooks.example.com/in?x=1'), { ready: false, reason: 'SecretNotFound', message: 'secret ns/sig not found' });
    expect(status).toEqual({
      name: 'ns/x',
      url: 'https://hooks.example.com/in?x=1',
      ready: false,
      reason: 'SecretNotFound',
      message: 'secret ns/sig not found',
      delivering: { status: 'True', reason: 'Succeeded' },
      pending: 4,
      delivered: 1,
      failures: 0,
      errors: 0,
      deadLettered: 0,
      responses: [],
    });
  });
});
