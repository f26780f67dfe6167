import { describe, expect, it } from 'vitest';
import { DURATION_PATTERN, parseDuration } from '../../src/api/duration.ts';
import { formatNanoseconds, GoDurationError, parseGoDuration, toOurNotation } from '../../src/import/go-duration.ts';

const MAX_NS = 2n ** 63n - 1n;

function goError(run: () => unknown): GoDurationError {
  try {
    run();
  } catch (error) {
    expect(error).toBeInstanceOf(GoDurationError);
    expect(error).toMatchObject({ name: 'GoDurationError', code: 'ERR_GO_DURATION' });
    return error as GoDurationError;
  }
  throw new Error('no GoDurationError was thrown');
}

describe('parseGoDuration reads what Go\'s time.ParseDuration reads', () => {
  it.each([
    ['0', 0n],
    ['-0', 0n],
    ['1ns', 1n],
    ['300us', 300_000n],
    ['300\u00b5s', 300_000n], // micro sign
    ['300\u03bcs', 300_000n], // Greek mu
    ['500ms', 500_000_000n],
    ['1s', 1_000_000_000n],
    ['1.5s', 1_500_000_000n],
    ['.5s', 500_000_000n],
    ['1.s', 1_000_000_000n],
    ['2m30s', 150_000_000_000n],
    ['1h2m3s4ms5us6ns', 3_723_004_005_006n],
    ['1.5h', 5_400_000_000_000n],
    ['+1s', 1_000_000_000n],
    ['-1.5s', -1_500_000_000n],
    ['1.0000000001s', 1_000_000_000n], // finer than a nanosecond: dropped
    ['2562047h47m16.854775807s', MAX_NS],
    ['-2562047h47m16.854775808s', -(MAX_NS + 1n)],
  ])('%j = %d ns', (text, ns) => {
    expect(parseGoDuration(text)).toBe(ns);
  });

  it.each([
    ['', /not a Go duration/],
    ['500', /without a unit/],
    ['1', /without a unit/],
    ['1d', /unknown unit "d"/],
    ['1S', /unknown unit "S"/],
    ['1 s', /unknown unit " s"/],
    ['.s', /not a Go duration/],
    ['s', /not a Go duration/],
    ['-', /not a Go duration/],
    ['1..5s', /not a Go duration/],
    ['2562047h47m16.854775808s', /too long/],
  ])('refuses %j', (text, message) => {
    expect(goError(() => parseGoDuration(text)).message).toMatch(message);
  });
});

describe('formatNanoseconds writes our notation exactly', () => {
  it.each([
    [1n, '0.000001ms'],
    [500n, '0.0005ms'],
    [300_000n, '0.3ms'],
    [500_000_000n, '500ms'],
    [999_999_999n, '999.999999ms'],
    [1_000_000_000n, '1s'],
    [1_500_000_000n, '1.5s'],
    [1_000_000_001n, '1.000000001s'],
    [90_000_000_000n, '1m30s'],
    [3_600_000_000_000n, '1h'],
    [3_600_500_000_000n, '1h0.5s'],
    [3_723_004_005_006n, '1h2m3.004005006s'],
    [MAX_NS, '2562047h47m16.854775807s'],
  ])('%d ns = %j, which reads back to the same nanoseconds', (ns, text) => {
    const written = formatNanoseconds(ns);
    expect(written).toBe(text);
    expect(DURATION_PATTERN.test(written)).toBe(true);
    expect(written.length).toBeLessThanOrEqual(64); // the CRD's maxLength
    expect(parseGoDuration(written)).toBe(ns); // exact: our notation is a subset of Go's
    expect(parseDuration(written) / (Number(ns) / 1e6)).toBeCloseTo(1, 12); // and our parser agrees (in float ms)
  });

  it('every nanosecond count below 2 s round-trips through our parser (sampled)', () => {
    for (let ns = 1n; ns < 2_000_000_000n; ns = ns * 3n + 7n) {
      expect(BigInt(Math.round(parseDuration(formatNanoseconds(ns)) * 1e6)), String(ns)).toBe(ns);
    }
  });

  it.each([0n, -1n, MAX_NS + 1n])('refuses %d', (ns) => {
    goError(() => formatNanoseconds(ns));
  });
});

describe('toOurNotation', () => {
  it.each([
    ['5s', '5s'], // already our notation: kept as written
    ['90s', '90s'],
    ['1h30m', '1h30m'],
    ['0.5s', '0.5s'],
    ['300us', '0.3ms'],
    ['1ns', '0.000001ms'],
    ['.5s', '500ms'],
    ['1.s', '1s'],
    ['+2m', '2m'],
    ['1m0.5us', '1m0.0000005s'],
  ])('%j → %j', (go, ours) => {
    expect(toOurNotation(go)).toBe(ours);
    expect(parseDuration(ours) * 1e6).toBeCloseTo(Number(parseGoDuration(go)), 0);
  });

  it.each(['0', '-1s', '500', 'soon'])('refuses %j (0 or less is Distribution\'s default, not a duration to write)', (go) => {
    goError(() => toOurNotation(go));
  });
});
