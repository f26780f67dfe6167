// retry.disableAfter seen from the cluster (api.md section 11): the reconciler, a real EndpointSet and StatusWriter
// over the in-memory ClusterApi, a loopback receiver that answers 503, virtual time. Ready turns False/AutoDisabled
// with a Warning Event, `/endpoints` and the gauge say the same, a resync leaves it, a spec change sends again.
import { afterEach, describe, expect, it } from 'vitest';
import { NOTIFICATION_ENDPOINT_RESOURCE as R, RESUME_REQUESTED_ANNOTATION as RESUME_REQUESTED_AT, type Condition } from '../../src/api/notification-endpoint.ts';
import { EndpointReconciler } from '../../src/controller/reconciler.ts';
import { StatusWriter } from '../../src/controller/status-writer.ts';
import { Metrics } from '../../src/metrics/metrics.ts';
import { EndpointSet } from '../../src/notifications/endpoint-set.ts';
import { endpointStatuses } from '../../src/status/endpoint-status.ts';
import { makeEvents } from '../support/events.ts';
import { TestReceiver } from '../support/receiver.ts';
import { until } from '../support/wait.ts';
import { fakeClock } from '../notifications/test-sinks.ts';
import { captureLogs } from '../k8s/support.ts';
import { FakeClusterApi } from './fake-cluster-api.ts';

const KEY = 'ns/hook';
const T0 = Date.parse('2026-03-01T10:00:00.000Z');

const closers: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  while (closers.length) await closers.pop()!().catch(() => {});
});

async function harness() {
  const receiver = await TestReceiver.start();
  closers.push(() => receiver.close());
  let down = true;
  receiver.respond(() => (down ? 503 : 202));
  const clock = fakeClock(T0);
  const api = new FakeClusterApi();
  const endpoints = new EndpointSet({ clock });
  closers.push(() => endpoints.close(AbortSignal.abort()));
  const { logger } = captureLogs();
  const status = new StatusWriter({ api, logger, intervalMs: 60_000, now: () => new Date(clock.now()) });
  closers.push(() => status.stop());
  const reconciler = new EndpointReconciler({ api, endpoints, status, logger });
  const metrics = new Metrics();
  metrics.setEndpointsProvider(() => endpointStatuses(endpoints, status.states()));
  const put = (generation: number, extra: Record<string, unknown> = {}, annotations?: Record<string, string>): void => void api.put({
    apiVersion: R.apiVersion,
    kind: R.kind,
    metadata: { name: 'hook', namespace: 'ns', uid: 'uid-1', generation, ...(annotations && { annotations }) },
    spec: { url: receiver.url, threshold: 1, backoff: '4s', retry: { disableAfter: '10s' }, ...extra },
  });
  const ready = (): Condition | undefined => api.patches.at(-1)?.status.conditions?.find((c) => c.type === 'Ready');
  const gauge = async (): Promise<string | undefined> =>
    (await metrics.render()).split('\n').find((line) => line.startsWith(`registry_notifier_auto_disabled{endpoint="${KEY}"}`));
  return { receiver, healthy: () => void (down = false), clock, api, endpoints, status, reconciler, put, ready, gauge };
}

describe('AutoDisabled in the cluster', () => {
  it('Ready False/AutoDisabled with a Warning Event, shown in /endpoints and the gauge; a resync keeps it; a spec change delivers the queue', async () => {
    const h = await harness();
    h.put(1);
    await h.reconciler.reconcile(KEY);
    expect(h.ready()).toMatchObject({ status: 'True', reason: 'Configured' });
    expect(await h.gauge()).toBe(`registry_notifier_auto_disabled{endpoint="${KEY}"} 0`);

    await h.endpoints.write(makeEvents(3));
    const endpoint = h.endpoints.get(KEY)!;
    await until(() => endpoint.autoDisabled !== undefined, 'auto-disabled', 5000);
    await h.status.tick();

    const message = 'no successful delivery for 10s (retry.disableAfter): sending stopped at 2026-03-01T10:00:10Z, events are kept in the queue; ' +
      'a spec change or a new registry-notifier.io/resume-requested-at value sends again. ' +
      'failing without a success for 10000ms (retry.disableAfter); last: 503 Service Unavailable';
    expect(h.ready()).toMatchObject({ status: 'False', reason: 'AutoDisabled', message, lastTransitionTime: '2026-03-01T10:00:10Z' });
    expect(h.api.events).toContainEqual({ key: KEY, type: 'Warning', reason: 'AutoDisabled', message });
    expect(h.api.patches.at(-1)?.status.pending).toBe(3);
    const [shown] = endpointStatuses(h.endpoints, h.status.states());
    expect(shown).toMatchObject({ name: KEY, ready: false, reason: 'AutoDisabled', message, pending: 3 });
    expect(await h.gauge()).toBe(`registry_notifier_auto_disabled{endpoint="${KEY}"} 1`);

    // A reconcile of the same generation (a resync, a Secret event) changes nothing: no Event, still stopped.
    const events = h.api.events.length;
    const sent = h.receiver.requests.length;
    await h.reconciler.reconcile(KEY);
    await h.status.tick();
    expect(endpoint.autoDisabled).toBeDefined();
    expect(h.ready()).toMatchObject({ status: 'False', reason: 'AutoDisabled' });
    expect(h.api.events).toHaveLength(events);

    // A spec change sends again: Ready True with a Normal Event, the queue delivered in order.
    h.healthy();
    h.put(2, { timeout: '2s' });
    await h.reconciler.reconcile(KEY);
    expect(h.ready()).toMatchObject({ status: 'True', reason: 'Configured', observedGeneration: 2 });
    expect(h.api.events.at(-1)).toMatchObject({ type: 'Normal', reason: 'Configured' });
    await until(() => endpoint.pending === 0, 'queue delivered', 5000);
    expect(h.receiver.events({ acceptedOnly: true }).map((e) => e.id)).toEqual(['ev-0', 'ev-1', 'ev-2']);
    expect(h.receiver.requests.length).toBe(sent + 3);
    expect(await h.gauge()).toBe(`registry_notifier_auto_disabled{endpoint="${KEY}"} 0`);
  });

  it('EndpointSet.resume (the resume annotation\'s step) brings Ready back on the next tick', async () => {
    const h = await harness();
    h.put(1);
    await h.reconciler.reconcile(KEY);
    await h.endpoints.write(makeEvents(1));
    await until(() => h.endpoints.get(KEY)?.autoDisabled !== undefined, 'auto-disabled', 5000);
    await h.status.tick();
    expect(h.ready()).toMatchObject({ status: 'False', reason: 'AutoDisabled' });
    h.healthy();
    expect(h.endpoints.resume(KEY)).toBe(true);
    await h.status.tick();
    expect(h.ready()).toMatchObject({ status: 'True', reason: 'Configured' });
    expect(h.api.events.map((e) => `${e.type} ${e.reason}`)).toEqual(['Normal Configured', 'Warning AutoDisabled', 'Warning Failing', 'Normal Configured']);
    await until(() => h.endpoints.get(KEY)?.pending === 0, 'delivered', 5000);
  });

  it('the resume-requested-at annotation lets an AutoDisabled endpoint send again, once per value, recorded in status', async () => {
    const h = await harness();
    h.put(1);
    await h.reconciler.reconcile(KEY);
    await h.endpoints.write(makeEvents(2));
    await until(() => h.endpoints.get(KEY)?.autoDisabled !== undefined, 'auto-disabled', 5000);
    await h.status.tick();
    expect(h.ready()).toMatchObject({ status: 'False', reason: 'AutoDisabled' });
    h.healthy();
    // kubectl annotate nep hook registry-notifier.io/resume-requested-at=… (generation unchanged)
    h.put(1, {}, { [RESUME_REQUESTED_AT]: '1764633600' });
    await h.reconciler.reconcile(KEY);
    await until(() => h.endpoints.get(KEY)?.pending === 0, 'the kept queue delivered', 5000);
    expect(h.receiver.events({ acceptedOnly: true }).map((e) => e.id)).toEqual(['ev-0', 'ev-1']);
    await h.status.tick();
    expect(h.api.patches.filter((p) => p.status.lastHandledResumeAt === '1764633600')).not.toHaveLength(0);
    expect(h.ready()).toMatchObject({ status: 'True', reason: 'Configured' });
    expect(h.api.events.filter((e) => e.reason === 'ResumeRequested').map((e) => e.message))
      .toEqual([`the AutoDisabled endpoint sends again (${RESUME_REQUESTED_AT}: 1764633600)`]);
    // The same value again (a resync, the annotation re-applied): nothing more is done or recorded.
    await h.reconciler.reconcile(KEY);
    expect(h.api.events.filter((e) => e.reason === 'ResumeRequested')).toHaveLength(1);
  });
});
