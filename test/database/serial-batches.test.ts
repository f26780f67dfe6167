// One call at a time, in order: what is added in a turn goes in one call, what is added during a call in the next,
// at most `max` a call; handed-back items go first in the next call; an item added by a continuation of the last
// call is not stranded.
import { describe, expect, it } from 'vitest';
import { SerialBatches } from '../../src/database/serial-batches.ts';

describe('SerialBatches', () => {
  it('batches what is added in one turn, then what came during the call, at most max a call, in order', async () => {
    const calls: number[][] = [];
    let inFlight = 0;
    const batches: SerialBatches<number> = new SerialBatches(3, async (batch) => {
      expect(++inFlight).toBe(1);
      calls.push(batch);
      if (batch[0] === 1) for (const n of [5, 6, 7, 8]) batches.add(n); // arrive while the first call runs
      await new Promise((resolve) => setTimeout(resolve, 5));
      inFlight--;
      return [];
    });
    for (const n of [1, 2, 3, 4]) batches.add(n);
    await batches.drained();
    expect(calls).toEqual([[1, 2, 3], [4, 5, 6], [7, 8]]);
  });

  it('items handed back go first in the next call', async () => {
    const calls: string[][] = [];
    let failed = false;
    const batches = new SerialBatches<string>(10, async (batch) => {
      calls.push(batch);
      if (failed) return [];
      failed = true;
      batches.add('later');
      return batch.filter((x) => x !== 'given-up');
    });
    for (const x of ['a', 'given-up', 'b']) batches.add(x);
    await batches.drained();
    expect(calls).toEqual([['a', 'given-up', 'b'], ['a', 'b', 'later']]);
  });

  it('an item added in a continuation of the last call is taken, however many microtasks later it comes', async () => {
    // Some number of hops lands between the run finding its queue empty and anything chained on the run.
    for (let hops = 0; hops < 8; hops++) {
      const seen: string[] = [];
      let second: () => void = () => {};
      const done = new Promise<void>((resolve) => (second = resolve));
      const batches: SerialBatches<string> = new SerialBatches(10, async (batch) => {
        seen.push(...batch);
        if (batch.includes('second')) second();
        else {
          let later = Promise.resolve();
          for (let h = 0; h < hops; h++) later = later.then(() => {});
          void later.then(() => batches.add('second'));
        }
        return [];
      });
      batches.add('first');
      const outcome = await Promise.race([done.then(() => 'taken'), new Promise((resolve) => setTimeout(() => resolve('stranded'), 1_000).unref())]);
      expect(outcome, `${hops} hops`).toBe('taken');
      expect(seen).toEqual(['first', 'second']);
    }
  });

  it('with a spacing, a call after a quiet spell starts at once; under a trickle each call takes what came meanwhile', async () => {
    const starts: number[] = [];
    const calls: number[][] = [];
    const batches = new SerialBatches<number>(100, async (batch) => {
      starts.push(performance.now());
      calls.push(batch);
      return [];
    }, 50);
    const t0 = performance.now();
    batches.add(0);
    await batches.drained();
    expect(starts[0]! - t0, 'the first call waits for nothing').toBeLessThan(25);
    // One item every 5 ms for 200 ms: about four calls, not forty.
    for (let n = 1; n <= 40; n++) {
      batches.add(n);
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    await batches.drained();
    expect(calls.flat()).toEqual(Array.from({ length: 41 }, (_, n) => n));
    expect(calls.length).toBeLessThanOrEqual(8);
    for (let k = 1; k < starts.length; k++) expect(starts[k]! - starts[k - 1]!, `call ${k}`).toBeGreaterThanOrEqual(45); // timers round to the millisecond
  });

  it('with a spacing, a full batch does not wait for it', async () => {
    const starts: number[] = [];
    const batches = new SerialBatches<number>(10, async () => {
      starts.push(performance.now());
      return [];
    }, 1_000);
    for (let n = 0; n < 30; n++) batches.add(n);
    await batches.drained();
    expect(starts).toHaveLength(3);
    expect(starts[2]! - starts[0]!).toBeLessThan(500);
  });
});
