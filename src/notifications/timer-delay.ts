// Node.js runs a timer set for more than 2^31 - 1 ms (about 24.8 days) after 1 ms instead, with a warning:
// durations in a spec may be far longer (Go's notation takes up to about 292 years).

/** The longest delay a Node.js timer keeps. */
export const MAX_TIMER_MS = 2 ** 31 - 1;

/** `ms` as a timer can take it: at most `MAX_TIMER_MS` (a caller that must wait longer waits again). */
export function timerDelay(ms: number): number {
  return Math.min(ms, MAX_TIMER_MS);
}
