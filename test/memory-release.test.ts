// The idle memory release: when it collects (memory grown beyond where it settled, the event loop quiet, not too
// soon after the last one) and when it leaves the process alone; and that the collector it reaches really gives
// back what a regular full collection keeps (a child process: its resident memory is its own).
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { MemoryRelease } from '../src/memory-release.ts';

const MiB = 2 ** 20;
const logger = pino({ level: 'silent' });

/** A release over readings the test sets: resident MiB, loop busy share, the clock; counts collections. */
function rig(options: { growthMiB?: number; minGapMs?: number } = {}) {
  const state = { rss: 100 * MiB, heap: 50 * MiB, busy: 0, now: 0, collected: 0, after: undefined as number | undefined };
  const release = new MemoryRelease({
    logger,
    growthBytes: (options.growthMiB ?? 16) * MiB,
    minGapMs: options.minGapMs ?? 60_000,
    quietUtilization: 0.05,
    rss: () => state.rss,
    heapUsed: () => state.heap,
    maxHeapBytes: 128 * MiB,
    utilization: () => state.busy,
    now: () => state.now,
    collect: () => {
      state.collected++;
      if (state.after !== undefined) state.rss = state.after;
    },
  });
  return { state, release };
}

describe('MemoryRelease', () => {
  it('collects once memory grew beyond where it settled and the loop is quiet; where it settles then is the new mark', () => {
    const { state, release } = rig();
    expect(release.check()).toBe(false); // the first look sets the mark
    state.rss = 110 * MiB;
    expect(release.check()).toBe(false); // grown less than 16 MiB
    state.rss = 180 * MiB;
    state.after = 120 * MiB;
    state.now = 10_000;
    expect(release.check()).toBe(true);
    expect(state.collected).toBe(1);
    // Settled at 120 MiB: growth is counted from there, and only after the gap.
    state.rss = 130 * MiB;
    state.now = 200_000;
    expect(release.check()).toBe(false);
    state.rss = 140 * MiB;
    expect(release.check()).toBe(true);
    expect(state.collected).toBe(2);
  });

  it('leaves a busy process alone (a burst still running), and collects once it is quiet', () => {
    const { state, release } = rig();
    release.check();
    state.rss = 200 * MiB;
    state.busy = 0.4;
    state.now = 100_000;
    expect(release.check()).toBe(false);
    state.busy = 0.01;
    expect(release.check()).toBe(true);
  });

  it('leaves a large live heap alone (the pause would be long), and collects once it is small enough again', () => {
    const { state, release } = rig();
    release.check();
    state.rss = 400 * MiB;
    state.heap = 250 * MiB; // 10,000 endpoints: the collection would pause the loop for more than a second
    state.now = 100_000;
    expect(release.check()).toBe(false);
    state.heap = 100 * MiB;
    expect(release.check()).toBe(true);
    expect(state.collected).toBe(1);
  });

  it('memory that stays (live, not left behind) is not collected for again: the mark moves up with it', () => {
    const { state, release } = rig();
    release.check();
    state.rss = 200 * MiB;
    state.now = 100_000;
    expect(release.check()).toBe(true); // nothing given back: the collector leaves rss where it was
    state.now = 1_000_000;
    expect(release.check()).toBe(false);
    expect(state.collected).toBe(1);
  });

  it('collects at most once per gap, however much memory grows', () => {
    const { state, release } = rig({ minGapMs: 60_000 });
    release.check();
    state.rss = 200 * MiB;
    state.after = 100 * MiB;
    state.now = 100_000;
    expect(release.check()).toBe(true);
    state.rss = 300 * MiB;
    state.now = 130_000;
    expect(release.check()).toBe(false);
    state.now = 160_000;
    expect(release.check()).toBe(true);
  });

  it('without a collector (the runtime refused) it never collects and start() sets no timer', () => {
    const release = new MemoryRelease({ logger, collect: undefined, rss: () => 0, heapUsed: () => 0, utilization: () => 0 });
    release.start();
    expect(release.check()).toBe(false);
    release.stop();
  });

  it('a process started with --expose-gc keeps it: the collector uses that gc and leaves the flag as it was', () => {
    const script = `
      import { lastResortCollector } from ${JSON.stringify(join(import.meta.dirname, '../src/memory-release.ts'))};
      import { runInNewContext } from 'node:vm';
      const collect = lastResortCollector();
      collect();
      console.log(JSON.stringify({ collector: typeof collect, laterContexts: runInNewContext('typeof gc') }));`;
    const child = spawnSync(process.execPath, ['--expose-gc', '--input-type=module', '-e', script], { encoding: 'utf8', timeout: 30_000 });
    expect(child.stderr).toBe('');
    expect(JSON.parse(child.stdout)).toEqual({ collector: 'function', laterContexts: 'function' });
  });

  it('the real collector gives back what a regular full collection keeps, without exposing gc to the process', () => {
    // Objects that lived long enough to reach the old generation, then dropped: a regular full collection frees
    // them but V8 keeps their pages; the release's collector returns them.
    const script = `
      import { lastResortCollector } from ${JSON.stringify(join(import.meta.dirname, '../src/memory-release.ts'))};
      const collect = lastResortCollector();
      let keep = [];
      for (let i = 0; i < 400000; i++) keep.push({ a: i, b: 'x' + i, c: [i, i + 1] });
      keep = null;
      const { runInNewContext } = await import('node:vm');
      const { setFlagsFromString } = await import('node:v8');
      setFlagsFromString('--expose-gc');
      const regular = runInNewContext('gc');
      setFlagsFromString('--no-expose-gc');
      regular(); regular();
      const before = process.memoryUsage.rss();
      collect();
      console.log(JSON.stringify({ exposed: typeof globalThis.gc, before, after: process.memoryUsage.rss() }));`;
    const child = spawnSync(process.execPath, ['--max-semi-space-size=1', '--input-type=module', '-e', script], { encoding: 'utf8', timeout: 30_000 });
    expect(child.stderr).toBe('');
    const { exposed, before, after } = JSON.parse(child.stdout) as { exposed: string; before: number; after: number };
    expect(exposed).toBe('undefined');
    expect(before - after).toBeGreaterThan(20 * MiB);
  });
});
