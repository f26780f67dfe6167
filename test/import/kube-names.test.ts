import { describe, expect, it } from 'vitest';
import { DNS1123_LABEL } from '../../src/api/spec-schema.ts';
import { toLabel, toSecretKey, UniqueNames } from '../../src/import/kube-names.ts';

// secretKeyRef.key of our spec, and Kubernetes' rule for a Secret's data key.
const SECRET_KEY = /^\.?[-_a-zA-Z0-9][-._a-zA-Z0-9]*$/;

describe('toLabel', () => {
  it.each([
    ['alistener', 'alistener'],
    ['local-8082', 'local-8082'],
    ['My Listener', 'my-listener'],
    ['hooks.example.com', 'hooks-example-com'],
    ['ci_webhook', 'ci-webhook'],
    ['Café Crème', 'cafe-creme'],
    ['--edge--', 'edge'],
    ['a  __  b', 'a-b'],
    ['日本', ''],
    ['', ''],
    ['x'.repeat(70), 'x'.repeat(63)],
    [`${'a'.repeat(62)}-b`, 'a'.repeat(62)], // truncated at 63, then the trailing '-' trimmed
  ])('%j → %j', (given, label) => {
    const made = toLabel(given);
    expect(made).toBe(label);
    if (made !== '') expect(DNS1123_LABEL.test(made) && made.length <= 63).toBe(true);
  });
});

describe('toSecretKey', () => {
  it.each([
    ['Authorization', 'Authorization'],
    ['X-Api-Key', 'X-Api-Key'],
    ["X!#$%&'*+^`|~Y", `X${'_'.repeat(12)}Y`],
    ['X.Trace', 'X.Trace'],
    ['.', '_'],
    ['..x', '__x'],
  ])('%j → %j', (header, key) => {
    expect(toSecretKey(header)).toBe(key);
    expect(SECRET_KEY.test(key)).toBe(true);
  });
});

describe('UniqueNames', () => {
  it('gives the first asker the name and later ones -2, -3, within the length limit', () => {
    const names = new UniqueNames();
    expect(names.take('hook')).toBe('hook');
    expect(names.take('hook')).toBe('hook-2');
    expect(names.take('hook')).toBe('hook-3');
    expect(names.take('hook-2')).toBe('hook-2-2');
    const long = 'a'.repeat(63);
    expect(names.take(long)).toBe(long);
    expect(names.take(long)).toBe(`${'a'.repeat(61)}-2`);
    const dashed = `${'b'.repeat(60)}-cc`;
    expect(names.take(dashed)).toBe(dashed);
    expect(names.take(dashed)).toBe(`${'b'.repeat(60)}-2`); // no '--' where the cut fell on a '-'
  });
});
