import { describe, expect, it } from 'vitest';
import { RecentIds } from '../../src/ingest/recent-ids.ts';
import { collectGarbage } from './support.ts';

describe('RecentIds', () => {
  it('remembers what was added and forgets what was deleted', () => {
    const ids = new RecentIds(10);
    expect(ids.has('a')).toBe(false);
    ids.add('a');
    expect(ids.has('a')).toBe(true);
    expect(ids.size).toBe(1);
    ids.delete('a');
    ids.delete('never-added');
    expect(ids.has('a')).toBe(false);
    expect(ids.size).toBe(0);
  });

  it.each([1, 3, 100])('never holds more than its capacity (%i)', (capacity) => {
    const ids = new RecentIds(capacity);
    for (let i = 0; i < capacity * 5; i++) {
      ids.add(`id-${i}`);
      expect(ids.size).toBe(Math.min(i + 1, capacity));
    }
  });

  it('forgets the oldest first', () => {
    const ids = new RecentIds(3);
    for (const id of ['a', 'b', 'c', 'd']) ids.add(id);
    expect(['a', 'b', 'c', 'd'].map((id) => ids.has(id))).toEqual([false, true, true, true]);
    ids.add('e');
    expect(['b', 'c', 'd', 'e'].map((id) => ids.has(id))).toEqual([false, true, true, true]);
  });

  it('re-adding an id makes it the newest again', () => {
    const ids = new RecentIds(3);
    for (const id of ['a', 'b', 'c']) ids.add(id);
    ids.add('a');
    ids.add('d');
    expect(['a', 'b', 'c', 'd'].map((id) => ids.has(id))).toEqual([true, false, true, true]);
    expect(ids.size).toBe(3);
  });

  it('adding the same id twice takes one slot', () => {
    const ids = new RecentIds(2);
    ids.add('a');
    ids.add('a');
    ids.add('b');
    expect([ids.has('a'), ids.has('b'), ids.size]).toEqual([true, true, 2]);
  });

  it('tells long ids apart and keeps them small (they are remembered by digest)', () => {
    const ids = new RecentIds(10);
    const long = 'x'.repeat(100_000);
    ids.add(long);
    expect(ids.has(long)).toBe(true);
    expect(ids.has(`${long}y`)).toBe(false);
    expect(ids.has('x'.repeat(99_999))).toBe(false);
    // A short id that looks like a digest key is a different id.
    const digestLike = `sha256:${'0'.repeat(57)}`;
    expect(digestLike.length).toBe(64);
    expect(ids.has(digestLike)).toBe(false);
    ids.delete(long);
    expect(ids.has(long)).toBe(false);
  });

  it('holds long ids in little memory', () => {
    const ids = new RecentIds(1000);
    collectGarbage();
    const before = process.memoryUsage().heapUsed;
    // Each id a fresh flat 16 KiB string, as if parsed from a request body: kept as they are, 1000 of them
    // would hold 16 MiB.
    const template = Buffer.alloc(16 * 1024, 'i');
    for (let i = 0; i < 3000; i++) {
      template.write(`${i}:`);
      ids.add(template.toString('latin1'));
    }
    collectGarbage();
    expect(ids.size).toBe(1000);
    template.write('2999:');
    expect(ids.has(template.toString('latin1'))).toBe(true);
    template.write('0:');
    expect(ids.has(template.toString('latin1'))).toBe(false);
    expect(process.memoryUsage().heapUsed - before).toBeLessThan(4 * 1024 * 1024);
  });
});
