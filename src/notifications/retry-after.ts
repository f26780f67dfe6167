/**
 * The `Retry-After` answer header (RFC 9110 section 10.2.3): how long a receiver that answered 429 or 503 asks us
 * to wait before the next attempt. Only these two codes carry it in a way that is about the request being retried;
 * the retrying sink caps what is asked (`retry.maxBackoff`).
 */

/** The status codes whose `Retry-After` is honoured: Too Many Requests and Service Unavailable. */
export const RETRY_AFTER_STATUSES: ReadonlySet<number> = new Set([429, 503]);

// delta-seconds is 1*DIGIT; anything longer than this many digits is beyond any cap and read as "very long".
const MAX_DIGITS = 12;

/**
 * Milliseconds to wait that `value` asks for at `now`: delta-seconds (`120`) or an HTTP date (`Wed, 21 Oct 2026
 * 07:28:00 GMT`, or the obsolete forms `Date.parse` reads), 0 for a date in the past; undefined for a missing or
 * unreadable value (the header is then ignored). Never negative.
 */
export function parseRetryAfter(value: string | readonly string[] | undefined, now: number): number | undefined {
  const text = (Array.isArray(value) ? value[0] : value)?.trim();
  if (text === undefined || text === '') return undefined;
  if (/^\d+$/.test(text)) return text.length > MAX_DIGITS ? Number.MAX_SAFE_INTEGER : Number(text) * 1000;
  // An HTTP date names a day of the week and GMT; requiring a letter keeps numbers like "1.5" or "-3" out.
  if (!/[a-z]/i.test(text)) return undefined;
  const at = Date.parse(text);
  return Number.isNaN(at) ? undefined : Math.max(0, at - now);
}
