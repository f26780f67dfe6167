// The one polling helper: it returns as soon as the condition holds, and at the deadline says what it waited for
// and why the last check failed.
import { describe, expect, it } from 'vitest';
import { eventually, GiveUp, until } from './wait.ts';

describe('until', () => {
  it('resolves once a sync or async predicate holds', async () => {
    let n = 0;
    await until(() => ++n >= 3, 'the third check');
    expect(n).toBe(3);
    let m = 0;
    await until(async () => ++m >= 2, 'the second check');
    expect(m).toBe(2);
  });

  it('at the deadline names what it waited for, built at failure time, with the last error the predicate threw', async () => {
    let state = 'before';
    let checks = 0;
    const waiting = until(() => {
      checks++;
      if (checks > 1) throw new Error(`check ${checks} failed`);
      return false;
    }, () => `the state to change (it is ${state})`, 50);
    state = 'still the same';
    const error = await waiting.then(() => undefined, (e: Error) => e);
    expect(error?.message).toMatch(/^timed out after 50 ms waiting for the state to change \(it is still the same\)\nlast error: check \d+ failed$/);
    expect((error?.cause as Error).message).toBe(`check ${checks} failed`);
    expect(checks).toBeGreaterThan(2); // it polled, more than once
  });

  it('an async description is awaited; no error, no "last error"', async () => {
    await expect(until(() => false, async () => 'a condition that never holds', 20)).rejects.toThrow(/^timed out after 20 ms waiting for a condition that never holds$/);
  });

  it('GiveUp from the predicate ends the wait at once with that error', async () => {
    const started = Date.now();
    await expect(until(() => {
      throw new GiveUp('the process exited');
    }, 'never', 10_000)).rejects.toThrow(new GiveUp('the process exited'));
    expect(Date.now() - started).toBeLessThan(5_000);
  });
});

describe('eventually', () => {
  it('retries an assertion until it passes and resolves with its value', async () => {
    let n = 0;
    const value = await eventually(() => {
      n++;
      expect(n).toBeGreaterThanOrEqual(3);
      return n * 10;
    });
    expect(value).toBe(30);
  });

  it('at the deadline carries the assertion message', async () => {
    await expect(eventually(() => expect(1).toBe(2), 30)).rejects.toThrow(/timed out after 30 ms waiting for an assertion to pass\nlast error: expected 1 to be 2/);
  });
});
