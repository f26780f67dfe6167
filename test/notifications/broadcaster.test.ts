import { describe, expect, it } from 'vitest';
import { Broadcaster } from '../../src/notifications/broadcaster.ts';
import type { Event } from '../../src/notifications/event.ts';
import { EventQueue } from '../../src/notifications/queue.ts';
import type { QueuedEvent } from '../../src/notifications/sink.ts';
import { makeEvents } from '../support/events.ts';
import { checkClose } from './sink-contract.ts';
import { RecordingSink, until } from './test-sinks.ts';

describe('Broadcaster', () => {
  it('delivers 1,000 events written concurrently to every one of several sinks, each block intact', async () => {
    const broadcaster = new Broadcaster();
    const sinks = Array.from({ length: 5 }, () => new RecordingSink<Event>());
    for (const sink of sinks) broadcaster.add(sink);
    const blocks = Array.from({ length: 100 }, (_, i) => makeEvents(10, `b${i}`));
    await Promise.all(blocks.map((block) => broadcaster.write(block)));
    for (const sink of sinks) {
      expect(sink.items).toHaveLength(1000);
      expect(new Set(sink.items.map((e) => e.id)).size).toBe(1000);
      // Blocks are written whole and in the order the writes were made.
      expect(sink.writes.map((w) => w[0]!.id)).toEqual(blocks.map((b) => b[0]!.id));
    }
    await broadcaster.close();
    expect(sinks.every((s) => s.closed)).toBe(true);
  });

  it('does not let a stalled sink delay the others', async () => {
    const broadcaster = new Broadcaster();
    const stalled = new RecordingSink<Event>().hold();
    const healthy = new RecordingSink<Event>();
    broadcaster.add(stalled);
    broadcaster.add(healthy);
    const write = broadcaster.write(makeEvents(3));
    await healthy.waitForItems(3);
    expect(stalled.items).toHaveLength(0);
    stalled.release();
    await write;
    expect(stalled.items).toHaveLength(3);
  });

  it('adds and removes sinks while writes are in flight; each write goes to the sinks present when it began', async () => {
    const broadcaster = new Broadcaster();
    const first = new RecordingSink<Event>();
    const second = new RecordingSink<Event>();
    broadcaster.add(first);
    const w1 = broadcaster.write(makeEvents(1, 'one'));
    broadcaster.add(second);
    const w2 = broadcaster.write(makeEvents(1, 'two'));
    expect(broadcaster.remove(first)).toBe(true);
    const w3 = broadcaster.write(makeEvents(1, 'three'));
    await Promise.all([w1, w2, w3]);
    expect(first.items.map((e) => e.id)).toEqual(['one-0', 'two-0']);
    expect(second.items.map((e) => e.id)).toEqual(['two-0', 'three-0']);
    expect(broadcaster.remove(first)).toBe(false);
  });

  it('drops a sink that reports itself closed and keeps serving the rest', async () => {
    const broadcaster = new Broadcaster();
    const closing = new RecordingSink<Event>();
    const healthy = new RecordingSink<Event>();
    broadcaster.add(closing);
    broadcaster.add(healthy);
    await closing.close();
    await broadcaster.write(makeEvents(2));
    expect(broadcaster.size).toBe(1);
    expect(healthy.items).toHaveLength(2);
  });

  it('rejects with a sink failure other than closed, after every sink settled', async () => {
    const broadcaster = new Broadcaster();
    const failing = new RecordingSink<Event>().fail(1);
    const healthy = new RecordingSink<Event>();
    broadcaster.add(failing);
    broadcaster.add(healthy);
    await expect(broadcaster.write(makeEvents(1))).rejects.toThrow('scripted failure');
    expect(healthy.items).toHaveLength(1);
    expect(broadcaster.size).toBe(2);
  });

  it('fans out through queues so a blocked endpoint never holds the write', async () => {
    const broadcaster = new Broadcaster();
    const blocked = new RecordingSink<QueuedEvent>().hold();
    const queue = new EventQueue(blocked);
    broadcaster.add(queue);
    await broadcaster.write(makeEvents(50));
    expect(queue.pending).toBe(50);
    blocked.release();
    await blocked.waitForItems(50);
    await until(() => queue.pending === 0, 5000, 'queue drained');
    expect(blocked.items.map((e) => e.id)).toEqual(makeEvents(50).map((e) => e.id));
    await broadcaster.close();
  });

  it('follows the close contract', async () => {
    const broadcaster = new Broadcaster();
    const sink = new RecordingSink<Event>();
    broadcaster.add(sink);
    await checkClose(broadcaster, makeEvents(1));
    expect(sink.items).toHaveLength(1);
    expect(sink.closed).toBe(true);
  });
});
