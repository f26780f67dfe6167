// Per-test teardown: register what a test started; it is closed after the test, newest first, errors ignored.
import { afterEach } from 'vitest';
import { TestReceiver } from './receiver.ts';

/** Registers an `afterEach` that runs every deferred close of the test; returns the list to push closers onto. */
export function useCleanups(): (() => Promise<unknown>)[] {
  const cleanups: (() => Promise<unknown>)[] = [];
  afterEach(async () => {
    while (cleanups.length) await cleanups.pop()!().catch(() => {});
  });
  return cleanups;
}

/** Starts a loopback `TestReceiver` that is closed after the test. */
export async function startReceiver(cleanups: (() => Promise<unknown>)[]): Promise<TestReceiver> {
  const receiver = await TestReceiver.start();
  cleanups.push(() => receiver.close());
  return receiver;
}
