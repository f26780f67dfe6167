// Durations as Distribution's config.yml holds them, read exactly, and written in our notation (api.md §1).
// Distribution decodes its YAML with gopkg.in/yaml.v2 into Go's time.Duration: a string goes through Go's
// time.ParseDuration (units ns, us, µs, ms, s, m, h; a sign; `.5s`), a bare integer is taken as nanoseconds.
// Our notation has only ms, s, m and h, but a fraction of a millisecond reaches down to the nanosecond, so every
// positive Go duration has an exact spelling here. Arithmetic is on BigInt nanoseconds, never floats.
import { DURATION_PATTERN } from '../api/duration.ts';
import { NotifierError } from '../notifications/errors.ts';

/** Thrown for text that Go's time.ParseDuration would refuse; branch on `code`, never on the message. */
export class GoDurationError extends NotifierError {
  constructor(message = 'not a Go duration', options?: ErrorOptions) {
    super('ERR_GO_DURATION', message, options);
  }
}

const NS_PER_MS = 1_000_000n;
const NS_PER_S = 1_000_000_000n;
// The unit names Go's time package knows; `µs` is spelled with the micro sign (U+00B5) or the Greek mu (U+03BC).
const GO_UNITS: ReadonlyMap<string, bigint> = new Map([
  ['ns', 1n], ['us', 1_000n], ['\u00b5s', 1_000n], ['\u03bcs', 1_000n],
  ['ms', NS_PER_MS], ['s', NS_PER_S], ['m', 60n * NS_PER_S], ['h', 3600n * NS_PER_S],
]);
// Go's time.Duration is an int64 of nanoseconds.
const MAX_NS = 2n ** 63n - 1n;
// One `<digits>[.<digits>]<unit>` part; Go takes the unit as every character up to the next digit or dot.
const GO_PART = /([0-9]*)(?:\.([0-9]*))?([^0-9.]*)/y;

/** Parses text as Go's time.ParseDuration does (`1.5s`, `300us`, `-2m`, `0`) to nanoseconds; fraction digits finer than a nanosecond are dropped; throws GoDurationError. */
export function parseGoDuration(text: string): bigint {
  const shown = JSON.stringify(text.length > 64 ? `${text.slice(0, 64)}…` : text);
  const sign = text.startsWith('-') ? -1n : 1n;
  const rest = text.replace(/^[-+]/, '');
  if (rest === '0') return 0n;
  if (rest === '') throw new GoDurationError(`${shown} is not a Go duration`);
  let ns = 0n;
  GO_PART.lastIndex = 0;
  while (GO_PART.lastIndex < rest.length) {
    const match = GO_PART.exec(rest);
    const [, whole = '', fraction, unitName = ''] = match ?? [];
    if (!match || (whole === '' && (fraction ?? '') === '')) throw new GoDurationError(`${shown} is not a Go duration`);
    const unit = GO_UNITS.get(unitName);
    if (unit === undefined) {
      const why = unitName === '' ? 'a number without a unit' : `unknown unit ${JSON.stringify(unitName)}`;
      throw new GoDurationError(`${shown} is not a Go duration: ${why} (units: ns, us, ms, s, m, h)`);
    }
    const digits = fraction ?? '';
    ns += BigInt(whole || '0') * unit + (digits === '' ? 0n : (BigInt(digits) * unit) / 10n ** BigInt(digits.length));
    if (ns > MAX_NS + (sign < 0n ? 1n : 0n)) throw new GoDurationError(`${shown} is too long for a Go duration (about 292 years at most)`);
  }
  return sign * ns;
}

// `value / unit` with up to `digits` fraction digits and no trailing zeros.
function decimal(value: bigint, unit: bigint, digits: number): string {
  const rest = value % unit;
  return rest === 0n ? `${value / unit}` : `${value / unit}.${`${rest}`.padStart(digits, '0').replace(/0+$/, '')}`;
}

/** Writes a positive number of nanoseconds exactly in our notation (`500ms`, `0.0005ms`, `1.5s`, `1h30m`, `1h0.5s`); throws GoDurationError for 0, a negative value or more than Go's int64 allows. */
export function formatNanoseconds(ns: bigint): string {
  if (ns <= 0n || ns > MAX_NS) throw new GoDurationError(`${ns} ns cannot be written as a duration here (it must be positive and fit Go's int64)`);
  if (ns < NS_PER_S) return `${decimal(ns, NS_PER_MS, 6)}ms`;
  const hours = ns / (3600n * NS_PER_S);
  const minutes = (ns / (60n * NS_PER_S)) % 60n;
  const seconds = ns % (60n * NS_PER_S);
  return `${hours > 0n ? `${hours}h` : ''}${minutes > 0n ? `${minutes}m` : ''}${seconds > 0n ? `${decimal(seconds, NS_PER_S, 9)}s` : ''}`;
}

/** Our notation for a Go duration string: the text itself when it already is our notation (`5s` stays `5s`), else its exact rewrite (`300us` → `0.3ms`); throws GoDurationError for text Go refuses or a value ≤ 0. */
export function toOurNotation(goText: string): string {
  const ns = parseGoDuration(goText);
  if (ns > 0n && DURATION_PATTERN.test(goText) && goText.length <= 64) return goText;
  return formatNanoseconds(ns);
}
