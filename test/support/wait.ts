// The one way a test waits for state that emits no event (an API object's status, a counter, a log file, a
// process answering): poll with a deadline. Waits that have an event (TestReceiver.waitFor,
// RecordingSink.waitForItems, a child's waitForLog on its output) need no polling and do not come here.

/**
 * How long `until` waits between two checks. It is not a synchronisation: no test relies on anything having
 * happened within it; a check that holds after one interval holds after a hundred, it only costs CPU to ask sooner.
 */
export const POLL_INTERVAL_MS = 10;

/** The deadline when a caller names none: far longer than a healthy run needs, short of the test's own timeout. */
export const DEFAULT_TIMEOUT_MS = 10_000;

/** What a wait is for, in the timeout message: text, or a function that builds it at failure time (the state then). */
export type What = string | (() => string | Promise<string>);

/** Thrown by a predicate to end the wait at once: what it waits for can no longer happen (its process exited). */
export class GiveUp extends Error {
  override name = 'GiveUp';
}

/**
 * Resolves once `predicate` returns true, checking every POLL_INTERVAL_MS. A predicate that throws counts as "not
 * yet"; at the deadline the wait rejects naming `what`, with the last error the predicate threw (in the message and
 * as `cause`). A GiveUp thrown by the predicate rejects at once with that error.
 */
export async function until(predicate: () => boolean | Promise<boolean>, what: What, timeoutMs = DEFAULT_TIMEOUT_MS): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      if (await predicate()) return;
    } catch (error) {
      if (error instanceof GiveUp) throw error;
      last = error;
    }
    if (Date.now() > deadline) {
      const text = typeof what === 'string' ? what : await what();
      const why = last === undefined ? '' : `\nlast error: ${last instanceof Error ? last.message : String(last)}`;
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${text}${why}`, { cause: last });
    }
    await new Promise((resolve) => setTimeout(resolve, POLL_INTERVAL_MS));
  }
}

/**
 * `until` for an assertion: retries `check` (an `expect(...)`, or a getter that throws until its value is there)
 * until it stops throwing, and resolves with what it returned. At the deadline the assertion's message is in the error.
 */
export async function eventually<T>(check: () => T | Promise<T>, timeoutMs = DEFAULT_TIMEOUT_MS, what: What = 'an assertion to pass'): Promise<T> {
  let value: T | undefined;
  await until(async () => {
    value = await check();
    return true;
  }, what, timeoutMs);
  return value as T;
}
