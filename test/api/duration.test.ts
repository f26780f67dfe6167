import { describe, expect, it } from 'vitest';
import {
  ByteSizeError,
  DURATION_PATTERN,
  DurationError,
  formatDuration,
  parseByteSize,
  parseDuration,
} from '../../src/api/duration.ts';

describe('parseDuration', () => {
  it.each([
    ['0s', 0],
    ['500ms', 500],
    ['1s', 1000],
    ['1.5s', 1500],
    ['1.1s', 1100], // exact: integer nanoseconds underneath, not 1100.0000000000002
    ['2m30s', 150_000],
    ['1h', 3_600_000],
    ['1h2m3s4ms', 3_723_004],
    ['1.5h', 5_400_000],
    ['0.5ms', 0.5],
    ['1m1m', 120_000], // Go adds repeated units too
    ['0.0000000001s', 0], // finer than a nanosecond: truncated, as Go does
    ['2562047h', 2562047 * 3_600_000], // just under Go's int64-nanosecond limit
  ])('%s = %d ms', (text, ms) => {
    expect(parseDuration(text)).toBe(ms);
  });

  it.each([
    ['500', /bare number/],
    ['1.5', /bare number/],
    ['0', /bare number/],
    ['', /not a duration/],
    [' 1s', /not a duration/],
    ['1s ', /not a duration/],
    ['-1s', /not a duration/],
    ['+1s', /not a duration/],
    ['1d', /not a duration/],
    ['1us', /not a duration/],
    ['1µs', /not a duration/],
    ['1ns', /not a duration/],
    ['1S', /not a duration/],
    ['1 s', /not a duration/],
    ['.5s', /not a duration/],
    ['1.s', /not a duration/],
    ['ms', /not a duration/],
    ['3000000h', /too long/],
  ])('refuses %j', (text, message) => {
    const error = (() => {
      try {
        parseDuration(text);
      } catch (caught) {
        return caught;
      }
      return undefined;
    })();
    expect(error).toBeInstanceOf(DurationError);
    expect(error).toMatchObject({ name: 'DurationError', code: 'ERR_INVALID_DURATION' });
    expect((error as Error).message).toMatch(message);
  });

  it('refuses what is not a string (a YAML number)', () => {
    expect(() => parseDuration(500 as unknown as string)).toThrow(DurationError);
  });

  it('uses the same pattern as the CRD', () => {
    expect(DURATION_PATTERN.source).toBe('^([0-9]+(\\.[0-9]+)?(ms|s|m|h))+$');
  });
});

describe('formatDuration', () => {
  it.each([
    [0, '0s'],
    [500, '500ms'],
    [1.5, '1.5ms'],
    [0.5, '0.5ms'], // Go writes 500µs, which the pattern refuses
    [1000, '1s'],
    [1500, '1.5s'],
    [61_000, '1m1s'],
    [150_000, '2m30s'],
    [300_000, '5m0s'],
    [3_600_000, '1h0m0s'],
    [3_723_004, '1h2m3.004s'],
    [86_400_000, '24h0m0s'],
  ])('%d ms = %s', (ms, text) => {
    expect(formatDuration(ms)).toBe(text);
  });

  it.each([0, 0.5, 1, 999, 1000, 1001, 59_999, 60_000, 150_000, 3_599_999, 3_600_000, 90_061_001])(
    'round-trips %d ms through parseDuration',
    (ms) => {
      expect(parseDuration(formatDuration(ms))).toBe(ms);
    },
  );

  it.each([-1, Number.NaN, Number.POSITIVE_INFINITY])('refuses %d', (ms) => {
    expect(() => formatDuration(ms)).toThrow(DurationError);
  });
});

describe('parseByteSize', () => {
  it.each([
    ['0', 0],
    ['1000', 1000],
    ['1B', 1],
    ['2MB', 2_000_000],
    ['1KB', 1000],
    ['1GB', 1e9],
    ['512KiB', 524_288],
    ['1MiB', 1_048_576],
    ['1GiB', 1_073_741_824],
    ['1TiB', 1_099_511_627_776],
    ['1.5KiB', 1536],
    ['1.005KB', 1005], // exact decimal arithmetic, no 1004.9999
    ['1.0001KiB', 1024], // a fraction of a byte is rounded down
  ])('%s = %d bytes', (text, bytes) => {
    expect(parseByteSize(text)).toBe(bytes);
  });

  it.each(['', '1.5', '1.5B', '1mib', '1kb', '1 MiB', ' 1MiB', '-1', 'MiB', '1KiBB', '1K', '1e3', '99999TiB'])(
    'refuses %j',
    (text) => {
      expect(() => parseByteSize(text)).toThrow(ByteSizeError);
    },
  );
});

describe('error classes', () => {
  it.each([
    [new DurationError(), 'DurationError', 'ERR_INVALID_DURATION', 'invalid duration'],
    [new ByteSizeError(), 'ByteSizeError', 'ERR_INVALID_BYTE_SIZE', 'invalid byte size'],
  ])('%s has a name, a stable code and a default message', (error, name, code, message) => {
    expect(error).toBeInstanceOf(Error);
    expect(error).toMatchObject({ name, code, message });
    expect(String(error)).toBe(`${name}: ${message}`);
  });

  it('carries a cause', () => {
    const cause = new Error('underlying');
    expect(new DurationError('x', { cause }).cause).toBe(cause);
  });
});
