import { NotifierError } from '../notifications/errors.ts';
// Durations in Go's notation (`500ms`, `1s`, `2m30s`, `1h`) and byte sizes (`1MiB`), as api.md writes them.
// A bare number is refused on purpose: Distribution reads `500` as 500 nanoseconds, a trap its users fall into.
// Arithmetic is done on integer nanoseconds / bytes (BigInt) so `1.1s` is exactly 1100 ms, not 1100.0000000000002.

/** The duration pattern of the CRD schema, verbatim: one or more `<number><unit>` parts with unit ms, s, m or h. */
export const DURATION_PATTERN = /^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$/;

const PART = /([0-9]+)(?:\.([0-9]+))?(ms|s|m|h)/g;
const NS_PER_MS = 1_000_000n;
const NS_PER_S = 1_000_000_000n;
const UNIT_NS: Readonly<Record<string, bigint>> = { ms: NS_PER_MS, s: NS_PER_S, m: 60n * NS_PER_S, h: 3600n * NS_PER_S };
// Go's time.Duration is an int64 of nanoseconds (about 292 years); a longer value is refused as Go refuses it.
const MAX_NS = 2n ** 63n - 1n;

/** Thrown for a string that is not a duration in Go's notation; branch on `code`, never on the message. */
export class DurationError extends NotifierError {
  constructor(message = 'invalid duration', options?: ErrorOptions) {
    super('ERR_INVALID_DURATION', message, options);
  }
}

/** Thrown for a string that is not a byte size (`1MiB`, `512KiB`, `2MB`, `1000`); branch on `code`. */
export class ByteSizeError extends NotifierError {
  constructor(message = 'invalid byte size', options?: ErrorOptions) {
    super('ERR_INVALID_BYTE_SIZE', message, options);
  }
}

// Echo user input in messages only shortened: durations are never secrets, but a message must stay one line.
function quote(text: string): string {
  return JSON.stringify(text.length > 64 ? `${text.slice(0, 64)}…` : text);
}

// `whole.frac` × unit in integer base units; fraction digits finer than the base unit are truncated (as Go does).
function scaled(whole: string, frac: string | undefined, unit: bigint): bigint {
  const fraction = frac === undefined ? 0n : (BigInt(frac) * unit) / 10n ** BigInt(frac.length);
  return BigInt(whole) * unit + fraction;
}

/** Parses a Go-notation duration (`500ms`, `1.5s`, `2m30s`, `0s`) to milliseconds, possibly fractional below 1 ms; throws DurationError for anything else, including a bare number. */
export function parseDuration(text: string): number {
  if (typeof text !== 'string') throw new DurationError(`a duration must be a string such as "1s", not ${typeof text}`);
  if (!DURATION_PATTERN.test(text)) {
    const hint = /^[0-9]+(\.[0-9]+)?$/.test(text)
      ? 'a bare number is refused (Distribution reads it as nanoseconds); add a unit'
      : 'write numbers with units ms, s, m or h';
    throw new DurationError(`${quote(text)} is not a duration: ${hint}, e.g. "500ms", "1s" or "2m30s"`);
  }
  let ns = 0n;
  for (const [, whole = '0', frac, unit = 's'] of text.matchAll(PART)) {
    ns += scaled(whole, frac, UNIT_NS[unit] ?? NS_PER_S);
    if (ns > MAX_NS) throw new DurationError(`${quote(text)} is too long: a duration is at most about 292 years`);
  }
  return Number(ns / NS_PER_MS) + Number(ns % NS_PER_MS) / 1e6;
}

// Renders `value / unit` with up to `digits` fraction digits and no trailing zeros.
function decimal(value: bigint, unit: bigint, digits: number): string {
  const rest = value % unit;
  const whole = `${value / unit}`;
  return rest === 0n ? whole : `${whole}.${`${rest}`.padStart(digits, '0').replace(/0+$/, '')}`;
}

/** Formats milliseconds in Go's notation (`0s`, `500ms`, `1.5s`, `2m30s`, `1h0m0s`) so parseDuration reads it back; below 1 ms it writes fractional `ms` (Go's `µs` is outside the pattern); throws DurationError for negative or non-finite input. */
export function formatDuration(ms: number): string {
  if (typeof ms !== 'number' || !Number.isFinite(ms) || ms < 0) {
    throw new DurationError(`cannot format ${String(ms)} ms: a duration is a finite number ≥ 0`);
  }
  const wholeMs = Math.trunc(ms);
  const ns = BigInt(wholeMs) * NS_PER_MS + BigInt(Math.round((ms - wholeMs) * 1e6));
  if (ns === 0n) return '0s';
  if (ns < NS_PER_S) return `${decimal(ns, NS_PER_MS, 6)}ms`;
  const totalSeconds = ns / NS_PER_S;
  const hours = totalSeconds / 3600n;
  const minutes = (totalSeconds / 60n) % 60n;
  const seconds = `${decimal(ns % (60n * NS_PER_S), NS_PER_S, 9)}s`;
  if (hours > 0n) return `${hours}h${minutes}m${seconds}`;
  return minutes > 0n ? `${minutes}m${seconds}` : seconds;
}

const BYTE_SIZE = /^([0-9]+)(?:\.([0-9]+))?(B|KB|MB|GB|TB|KiB|MiB|GiB|TiB)?$/;
const BYTE_UNITS: Readonly<Record<string, bigint>> = {
  B: 1n,
  KB: 1000n,
  MB: 1000n ** 2n,
  GB: 1000n ** 3n,
  TB: 1000n ** 4n,
  KiB: 1024n,
  MiB: 1024n ** 2n,
  GiB: 1024n ** 3n,
  TiB: 1024n ** 4n,
};

/** Parses a byte size (`1000`, `2MB` = 2·1000², `1MiB` = 1024², `1.5KiB` = 1536; units B, KB, MB, GB, TB, KiB, MiB, GiB, TiB, case-sensitive) to a whole number of bytes, rounding a fraction down; throws ByteSizeError otherwise. */
export function parseByteSize(text: string): number {
  const match = typeof text === 'string' ? BYTE_SIZE.exec(text) : null;
  const unit = match?.[3] ?? 'B';
  if (!match || (match[2] !== undefined && unit === 'B')) {
    const shown = typeof text === 'string' ? quote(text) : typeof text;
    throw new ByteSizeError(
      `${shown} is not a byte size: write whole bytes ("1000") or a number with a unit (KB, MB, GB, TB, KiB, MiB, GiB, TiB), e.g. "1MiB"`,
    );
  }
  const bytes = scaled(match[1] ?? '0', match[2], BYTE_UNITS[unit] ?? 1n);
  if (bytes > BigInt(Number.MAX_SAFE_INTEGER)) throw new ByteSizeError(`${quote(text)} is too large`);
  return Number(bytes);
}
