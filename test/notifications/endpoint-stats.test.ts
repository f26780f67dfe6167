// EndpointStats: what it counts of a DeliveryListener's reports, and what it carries over from an earlier run.
import { describe, expect, it } from 'vitest';
import { EndpointStats } from '../../src/notifications/endpoint-stats.ts';

describe('EndpointStats', () => {
  it('counts coalesced events apart from delivery, and carries them over from the last written status', () => {
    const stats = new EndpointStats();
    stats.seed({ delivered: 10, coalesced: 7 });
    stats.coalesced(3);
    stats.discarded(1);
    expect(stats.snapshot()).toMatchObject({ delivered: 10, coalesced: 10, discarded: 1, failures: 0, errors: 0 });
  });
});
