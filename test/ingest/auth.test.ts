import { describe, expect, it, vi } from 'vitest';
import { createAuthenticator } from '../../src/ingest/auth.ts';

const basic = (userPass: string): string => `Basic ${Buffer.from(userPass).toString('base64')}`;

describe('createAuthenticator', () => {
  const check = createAuthenticator('s3cret');

  it.each([
    ['Bearer', 'Bearer s3cret'],
    ['bearer (scheme is case-insensitive)', 'bearer s3cret'],
    ['BEARER', 'BEARER s3cret'],
    ['extra spaces before the token', 'Bearer   s3cret'],
    ['Basic, token as password', basic('registry:s3cret')],
    ['Basic, empty user name', basic(':s3cret')],
    ['Basic, password holding a colon is compared whole', basic('u:s3cret').replace('Basic', 'basic')],
  ])('accepts %s', (_name, header) => {
    expect(check(header)).toBe(true);
  });

  it.each([
    ['no header', undefined],
    ['empty header', ''],
    ['scheme only', 'Bearer'],
    ['empty credentials', 'Bearer '],
    ['wrong token', 'Bearer s3cres'],
    ['longer token', 'Bearer s3cret2'],
    ['prefix of the token', 'Bearer s3cre'],
    ['different case token', 'Bearer S3CRET'],
    ['unknown scheme', 'Token s3cret'],
    ['no scheme', 's3cret'],
    ['Basic, token as user name', basic('s3cret:')],
    ['Basic, no colon', basic('s3cret')],
    ['Basic, wrong password', basic('registry:nope')],
    ['Basic, password with the token as prefix', basic('u:s3cret:x')],
    ['Basic, malformed base64', 'Basic %%%%'],
    ['Basic, base64 of garbage bytes', `Basic ${Buffer.from([0xff, 0xfe, 0x3a, 0xff]).toString('base64')}`],
    ['Basic, empty', 'Basic '],
  ])('refuses %s', (_name, header) => {
    expect(check(header)).toBe(false);
  });

  it('lets everything through without a token', () => {
    const open = createAuthenticator(undefined);
    for (const header of [undefined, '', 'Bearer x', 'garbage']) expect(open(header)).toBe(true);
  });

  it('refuses to be built with an empty token (it would accept an empty Basic password)', () => {
    expect(() => createAuthenticator('')).toThrow(TypeError);
  });

  it('compares fixed-length SHA-256 digests in constant time, never the strings themselves', async () => {
    const crypto = await import('node:crypto');
    vi.resetModules();
    const compared: [number, number][] = [];
    vi.doMock('node:crypto', () => ({
      ...crypto,
      timingSafeEqual: (a: Buffer, b: Buffer) => {
        compared.push([a.length, b.length]);
        return crypto.timingSafeEqual(a, b);
      },
    }));
    try {
      const { createAuthenticator: fresh } = await import('../../src/ingest/auth.ts');
      const auth = fresh('s3cret');
      expect(auth('Bearer x')).toBe(false);
      expect(auth(`Bearer ${'y'.repeat(10_000)}`)).toBe(false);
      expect(auth(basic('u:s3cret'))).toBe(true);
      expect(compared).toEqual([[32, 32], [32, 32], [32, 32]]);
    } finally {
      vi.doUnmock('node:crypto');
      vi.resetModules();
    }
  });
});
