// client-go's leader election, against an in-memory Lease with the API server's optimistic concurrency (an
// update must name the current resourceVersion) and a clock the test moves; then against a real kube-apiserver.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Delay } from '../../src/k8s/backoff.ts';
import { KubeLeaseLock } from '../../src/k8s/kube-lease-lock.ts';
import { LeaderElector, type LeaseLock, type LeaseRecord, type ObservedLease } from '../../src/k8s/leader-election.ts';
import { envtestAssets, startCluster, type StartedCluster } from '../support/envtest.ts';
import { eventually } from '../support/wait.ts';

/** A Lease in memory: creates fail when it exists, updates when the resourceVersion moved; `down` fails every call. */
class MemoryLease implements LeaseLock {
  readonly description = 'test/lease';
  stored: ObservedLease | undefined;
  down = false;
  #version = 0;

  async get(): Promise<ObservedLease | undefined> {
    if (this.down) throw Object.assign(new Error('unavailable'), { statusCode: 503 });
    return this.stored && { record: { ...this.stored.record }, resourceVersion: this.stored.resourceVersion };
  }

  async create(record: LeaseRecord): Promise<string> {
    if (this.down) throw Object.assign(new Error('unavailable'), { statusCode: 503 });
    if (this.stored) throw Object.assign(new Error('exists'), { statusCode: 409 });
    return this.#store(record);
  }

  async update(record: LeaseRecord, resourceVersion: string): Promise<string> {
    if (this.down) throw Object.assign(new Error('unavailable'), { statusCode: 503 });
    if (this.stored?.resourceVersion !== resourceVersion) throw Object.assign(new Error('conflict'), { statusCode: 409 });
    return this.#store(record);
  }

  #store(record: LeaseRecord): string {
    this.stored = { record: { ...record }, resourceVersion: String(++this.#version) };
    return this.stored.resourceVersion;
  }
}

/** One candidate's view of the Lease: while `cut`, every call fails as from a partitioned node. */
class Partitionable implements LeaseLock {
  readonly description = 'test/lease';
  cut = false;
  #lock: LeaseLock;
  constructor(lock: LeaseLock) {
    this.#lock = lock;
  }
  get(): Promise<ObservedLease | undefined> {
    return this.cut ? Promise.reject(new Error('partitioned')) : this.#lock.get();
  }
  create(record: LeaseRecord): Promise<string> {
    return this.cut ? Promise.reject(new Error('partitioned')) : this.#lock.create(record);
  }
  update(record: LeaseRecord, resourceVersion: string): Promise<string> {
    return this.cut ? Promise.reject(new Error('partitioned')) : this.#lock.update(record, resourceVersion);
  }
}

/**
 * A clock the test advances; delays resolve when the clock passes their end (or their signal aborts). It counts
 * the delays asked for: a candidate's loop ends every round in its next delay, so after waking some, `advance`
 * waits until each has asked for its next one before moving time on (no task is left behind the clock).
 */
class ManualClock {
  now = 1_000_000;
  #waiting: { until: number; resolve: () => void }[] = [];
  #asked = 0;
  #onAsk: (() => void) | undefined;

  readonly delay: Delay = (ms, signal) =>
    new Promise((resolve) => {
      if (signal.aborted) return resolve();
      const entry = { until: this.now + ms, resolve };
      this.#waiting.push(entry);
      signal.addEventListener('abort', () => {
        this.#waiting = this.#waiting.filter((w) => w !== entry);
        resolve();
      }, { once: true });
      this.#asked++;
      this.#onAsk?.();
    });

  /** Starts a candidate; resolves once its first round ended in a wait. */
  async start(elector: LeaderElector): Promise<void> {
    const target = this.#asked + 1;
    elector.start();
    await this.#asking(target);
  }

  /** Moves time forward in `step` ms steps; after each, every candidate woken has run its round and waits again. */
  async advance(ms: number, step = 100): Promise<void> {
    for (let passed = 0; passed < ms; passed += step) {
      this.now += step;
      const due = this.#waiting.filter((w) => w.until <= this.now);
      this.#waiting = this.#waiting.filter((w) => w.until > this.now);
      const target = this.#asked + due.length;
      for (const w of due) w.resolve();
      await this.#asking(target);
    }
  }

  /** Resolves once `target` delays were asked for in all (event-driven); rejects after 5 s naming how many are missing. */
  #asking(target: number): Promise<void> {
    if (this.#asked >= target) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#onAsk = undefined;
        reject(new Error(`${target - this.#asked} woken candidate(s) did not wait again within 5 s`));
      }, 5_000);
      this.#onAsk = () => {
        if (this.#asked < target) return;
        clearTimeout(timer);
        this.#onAsk = undefined;
        resolve();
      };
    });
  }
}

function candidate(lock: LeaseLock, clock: ManualClock, identity: string, log: string[]): LeaderElector {
  return new LeaderElector({
    lock,
    identity,
    now: () => clock.now,
    delay: clock.delay,
    onStartedLeading: () => log.push(`${identity} leads`),
    onStoppedLeading: () => log.push(`${identity} stops`),
  });
}

describe('LeaderElector (client-go algorithm)', () => {
  it('one of three candidates leads, renews, and the others never do while it lives', async () => {
    const lock = new MemoryLease();
    const clock = new ManualClock();
    const log: string[] = [];
    const electors = ['a', 'b', 'c'].map((id) => candidate(lock, clock, id, log));
    for (const e of electors) await clock.start(e);
    await clock.advance(60_000);
    const leaders = electors.filter((e) => e.isLeader);
    expect(leaders).toHaveLength(1);
    expect(log).toEqual([`${lock.stored!.record.holderIdentity} leads`]);
    expect(lock.stored!.record.renewTime.getTime()).toBeGreaterThan(clock.now - 4_000); // renewed every 2 s
    expect(lock.stored!.record.leaseTransitions).toBe(0);
    for (const e of electors) await e.stop();
  });

  it('a leader that stops renewing loses leadership within the renew deadline; another takes over after the lease duration', async () => {
    const lock = new MemoryLease();
    const clock = new ManualClock();
    const log: string[] = [];
    const aView = new Partitionable(lock);
    const a = candidate(aView, clock, 'a', log);
    await clock.start(a);
    await clock.advance(1_000);
    expect(a.isLeader).toBe(true);
    const b = candidate(lock, clock, 'b', log);
    await clock.start(b);
    await clock.advance(5_000);
    expect(b.isLeader).toBe(false);

    // a is cut off from the API server (b is not): a must stop leading before b may start.
    aView.cut = true;
    const during: { at: number; a: boolean; b: boolean }[] = [];
    const start = clock.now;
    for (let t = 0; t < 30_000; t += 100) {
      await clock.advance(100, 100);
      during.push({ at: clock.now - start, a: a.isLeader, b: b.isLeader });
    }
    aView.cut = false;
    const aLost = during.find((d) => !d.a)!.at;
    const bLeads = during.find((d) => d.b)!.at;
    expect(aLost).toBeLessThanOrEqual(10_000 + 2_000);
    expect(bLeads, 'b waited for the lease duration it observed').toBeGreaterThanOrEqual(15_000 - 2_000);
    expect(during.some((d) => d.a && d.b), 'never two leaders').toBe(false);
    expect(lock.stored!.record).toMatchObject({ holderIdentity: 'b', leaseTransitions: 1 });
    await a.stop();
    await b.stop();
  });

  it('stop() releases the lease so the next candidate takes over at once, not after 15 s', async () => {
    const lock = new MemoryLease();
    const clock = new ManualClock();
    const log: string[] = [];
    const a = candidate(lock, clock, 'a', log);
    await clock.start(a);
    await clock.advance(1_000);
    const b = candidate(lock, clock, 'b', log);
    await clock.start(b);
    await clock.advance(3_000);
    await a.stop();
    expect(lock.stored!.record).toMatchObject({ holderIdentity: '', leaseDurationSeconds: 1 });
    await clock.advance(5_000);
    expect(b.isLeader).toBe(true);
    expect(log).toEqual(['a leads', 'a stops', 'b leads']);
    await b.stop();
  });

  it('isLeader turns false as soon as a renewal is overdue, even before the loop notices', async () => {
    const lock = new MemoryLease();
    const clock = new ManualClock();
    const a = candidate(lock, clock, 'a', []);
    await clock.start(a);
    await clock.advance(1_000);
    expect(a.isLeader).toBe(true);
    lock.down = true;
    clock.now += 10_001; // no task ran: only the clock moved
    expect(a.isLeader).toBe(false);
    lock.down = false;
    await a.stop();
  });

  it('refuses durations that cannot work', () => {
    const lock = new MemoryLease();
    expect(() => new LeaderElector({ lock, identity: 'x', leaseDurationMs: 10_000, renewDeadlineMs: 10_000 })).toThrow(RangeError);
  });
});

const assets = envtestAssets();

describe.skipIf(!assets)('LeaderElector on a real kube-apiserver Lease', () => {
  let env: StartedCluster;
  beforeAll(async () => {
    env = await startCluster({ namespaces: ['rn'] });
  }, 120_000);
  afterAll(() => env?.stop());

  it('two replicas: exactly one leads; when it stops, the other leads within a few seconds', { timeout: 60_000 }, async () => {
    const kc = env.cluster.kubeConfig();
    const make = (id: string): LeaderElector => new LeaderElector({ lock: new KubeLeaseLock(kc, 'rn', 'registry-notifier'), identity: id, leaseDurationMs: 3_000, renewDeadlineMs: 2_000, retryPeriodMs: 500 });
    const [a, b] = [make('pod-a'), make('pod-b')];
    a.start();
    await eventually(() => expect(a.isLeader).toBe(true), 10_000);
    b.start();
    const lock = new KubeLeaseLock(kc, 'rn', 'registry-notifier');
    await eventually(async () => expect((await lock.get())?.record.holderIdentity).toBe('pod-a'));
    for (let i = 0; i < 10; i++) {
      expect([a.isLeader, b.isLeader]).toEqual([true, false]);
      await new Promise((resolve) => setTimeout(resolve, 200)); // sampling over time, not a synchronisation
    }
    await a.stop();
    await eventually(() => expect(b.isLeader).toBe(true), 5_000);
    const lease = await lock.get();
    expect(lease?.record).toMatchObject({ holderIdentity: 'pod-b', leaseDurationSeconds: 3, leaseTransitions: 1 });
    await b.stop();
  });
});
