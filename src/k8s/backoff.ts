/** Waits `ms`, or less if `signal` aborts first (resolves either way). */
export type Delay = (ms: number, signal: AbortSignal) => Promise<void>;

/** The real delay: a timer cut short by the signal. */
export const realDelay: Delay = (ms, signal) =>
  new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const timer = setTimeout(done, ms);
    function done(): void {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done, { once: true });
  });

/**
 * Capped exponential backoff with full jitter for the n-th consecutive failure (n ≥ 1):
 * a uniform wait in [base/2, min(max, base·2^(n-1))], so even the first retry never hammers the server.
 */
export function backoffMs(failures: number, baseMs: number, maxMs: number, random: () => number = Math.random): number {
  const ceiling = Math.min(maxMs, baseMs * 2 ** Math.max(0, failures - 1));
  const floor = Math.min(ceiling, baseMs / 2);
  return Math.round(floor + random() * (ceiling - floor));
}
