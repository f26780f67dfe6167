import { describe, expect, it } from 'vitest';
import { EventQueue } from '../../src/notifications/queue.ts';
import { RetryingSink } from '../../src/notifications/retrying-sink.ts';
import { BreakerStrategy } from '../../src/notifications/retry.ts';
import type { QueuedEvent } from '../../src/notifications/sink.ts';
import { makeEvents } from '../support/events.ts';
import { checkClose } from './sink-contract.ts';
import { until } from '../support/wait.ts';
import { queued, RecordingSink } from './test-sinks.ts';

const ids = (events: readonly QueuedEvent[]): string[] => events.map((e) => e.id);

describe('EventQueue', () => {
  it('accepts writes at once and delivers everything in order, one write at a time', async () => {
    const dst = new RecordingSink<QueuedEvent>();
    const queue = new EventQueue(dst);
    const events = makeEvents(200);
    for (let i = 0; i < 200; i += 20) await queue.write(queued(events.slice(i, i + 20)));
    await dst.waitForItems(200);
    expect(ids(dst.items)).toEqual(events.map((e) => e.id));
    expect(dst.writes.every((w) => w.length === 1)).toBe(true); // maxBatchEvents defaults to 1 (Distribution)
    expect(dst.items[0]!.json).toBe(JSON.stringify(events[0]));
    await queue.close();
  });

  it('batches what is already queued, up to the limit, without waiting for more', async () => {
    const dst = new RecordingSink<QueuedEvent>().hold();
    const queue = new EventQueue(dst, { maxBatchEvents: 4 });
    await queue.write(queued(makeEvents(1, 'first')));
    await dst.waitForAttempts(1); // the first event went out alone: nothing else was queued
    await queue.write(queued(makeEvents(10, 'more')));
    dst.release();
    await dst.waitForItems(11);
    expect(dst.writes.map((w) => w.length)).toEqual([1, 4, 4, 2]);
    expect(ids(dst.items)).toEqual(['first-0', ...makeEvents(10, 'more').map((e) => e.id)]);
    await queue.close();
  });

  it('keeps failed batches at the head: nothing is lost or reordered while the destination fails', async () => {
    const dst = new RecordingSink<QueuedEvent>().fail(3);
    const retrying = new RetryingSink(dst, new BreakerStrategy(100, 0));
    const queue = new EventQueue(retrying, { maxBatchEvents: 2 });
    await queue.write(queued(makeEvents(5)));
    await dst.waitForItems(5);
    expect(ids(dst.items)).toEqual(makeEvents(5).map((e) => e.id));
    expect(dst.attempts).toBe(3 + 3);
    await queue.close();
  });

  it('reports pending, counting the batch in flight until it is committed', async () => {
    const dst = new RecordingSink<QueuedEvent>().hold();
    const queue = new EventQueue(dst);
    await queue.write(queued(makeEvents(3)));
    await dst.waitForAttempts(1);
    expect(queue.pending).toBe(3);
    dst.release();
    await until(() => queue.pending === 0, 'the batch committed');
    await queue.close();
  });

  it('when paused keeps queueing and sends nothing; resume sends all in order', async () => {
    const dst = new RecordingSink<QueuedEvent>();
    let reported = 0;
    const queue = new EventQueue(dst, { paused: true, listener: { queued: (n) => void (reported += n) } });
    // A running queue in front of the same destination, written to after the paused one: both loops wake in the
    // order they were written to, so by the time the marker reaches the destination a paused queue that sends
    // anyway would have made its attempt.
    const marker = new EventQueue(dst);
    await queue.write(queued(makeEvents(4)));
    await marker.write(queued(makeEvents(1, 'marker')));
    await dst.waitForItems(1);
    expect(reported).toBe(4);
    expect(queue.pending).toBe(4);
    expect(dst.attempts).toBe(1);
    expect(ids(dst.items)).toEqual(['marker-0']);
    queue.resume();
    await dst.waitForItems(5);
    expect(ids(dst.items)).toEqual(['marker-0', ...makeEvents(4).map((e) => e.id)]);
    await queue.close();
    await marker.close(); // (the destination is closed already: the queue ignores that)
  });

  it('switches destination mid-retry: the batch being retried goes to the new one first', async () => {
    const broken = new RecordingSink<QueuedEvent>().fail(Number.MAX_SAFE_INTEGER);
    const old = new RetryingSink(broken, new BreakerStrategy(1, 60_000));
    const queue = new EventQueue(old);
    await queue.write(queued(makeEvents(3)));
    await broken.waitForAttempts(1); // tripped: now waiting a minute before the next attempt
    const fixed = new RecordingSink<QueuedEvent>();
    const previous = queue.setDestination(fixed);
    expect(previous).toBe(old);
    await fixed.waitForItems(3);
    expect(ids(fixed.items)).toEqual(makeEvents(3).map((e) => e.id));
    await previous.close();
    await queue.close();
  });

  it('close drains everything before resolving', async () => {
    const dst = new RecordingSink<QueuedEvent>();
    const queue = new EventQueue(dst);
    await queue.write(queued(makeEvents(100)));
    await queue.close();
    expect(dst.items).toHaveLength(100);
    expect(queue.discarded).toBe(0);
    expect(dst.closed).toBe(true);
  });

  it('close with an aborted signal discards what is left and reports the count', async () => {
    const broken = new RecordingSink<QueuedEvent>().fail(Number.MAX_SAFE_INTEGER);
    let discarded = 0;
    const queue = new EventQueue(new RetryingSink(broken, new BreakerStrategy(1, 60_000)), {
      listener: { discarded: (n) => (discarded += n) },
    });
    await queue.write(queued(makeEvents(7)));
    await broken.waitForAttempts(1);
    await queue.close({ signal: AbortSignal.timeout(20) });
    expect(discarded).toBe(7);
    expect(queue.discarded).toBe(7);
    expect(queue.pending).toBe(0);
  });

  it('keeps the ids, JSON, acceptedAt and seq of what it is given (restored or replayed events), in order', async () => {
    const dst = new RecordingSink<QueuedEvent>().hold();
    const queue = new EventQueue(dst);
    const old = { id: 'old-1', json: '{"id":"old-1"}', acceptedAt: 10, seq: 7 };
    queue.push([old]);
    await queue.write(queued(makeEvents(1, 'new'), 5000));
    dst.release();
    await dst.waitForItems(2);
    expect(dst.items).toEqual([old, expect.objectContaining({ id: 'new-0', acceptedAt: 5000 })]);
    expect(dst.items[0]).toBe(old);
    await queue.close();
  });

  it('follows the close contract', async () => {
    const dst = new RecordingSink<QueuedEvent>();
    await checkClose(new EventQueue(dst), queued(makeEvents(2)));
    expect(dst.items).toHaveLength(2);
  });
});

describe('EventQueue as a window a store feeds', () => {
  it('tells its drain listeners each time it runs dry; a listener may push the next page at once', async () => {
    const dst = new RecordingSink<QueuedEvent>();
    const queue = new EventQueue(dst);
    const pages = [queued(makeEvents(2, 'p1')), queued(makeEvents(2, 'p2'))];
    let drains = 0;
    queue.onDrain(() => {
      drains++;
      const next = pages.shift();
      if (next) queue.push(next);
    });
    await dst.waitForItems(4);
    await until(() => drains === 3, 'a drain after each page and at the start', 2000);
    expect(ids(dst.items)).toEqual(['p1-0', 'p1-1', 'p2-0', 'p2-1']);
    await queue.close();
  });

  it('reset forgets what it holds and the write in flight: nothing acknowledged, nothing discarded, later pushes go out', async () => {
    const dst = new RecordingSink<QueuedEvent>().hold();
    const acked: string[] = [];
    let discarded = 0;
    const queue = new EventQueue(dst, { store: { ack: (events) => acked.push(...ids(events)) }, listener: { discarded: (n) => (discarded += n) } });
    queue.push(queued(makeEvents(3, 'old')));
    await dst.waitForAttempts(1);
    queue.reset();
    expect(queue.pending).toBe(0);
    dst.release(); // the old attempt ends now: its outcome is ignored
    queue.push(queued(makeEvents(1, 'new')));
    await until(() => acked.includes('new-0'), 'the new event acknowledged', 2000);
    expect(acked).toEqual(['new-0']);
    await queue.close();
    expect(discarded).toBe(0);
  });
});
