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
});
