import { createHmac, sign as nodeSign, verify as nodeVerify } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
  ed25519PrivateKey, ed25519PublicKey, signatureHeaders, signer, signingKey, SigningKeyError, verifyWebhook, webhookId, WebhookVerificationError,
} from '../../src/notifications/signing.ts';
import { ed25519KeyPair } from '../support/ed25519.ts';

// An independent signer, written from the Standard Webhooks spec: HMAC-SHA256 over "id.timestamp.body".
const independent = (key: Buffer, id: string, ts: number, body: string): string =>
  `v1,${createHmac('sha256', key).update(`${id}.${ts}.${body}`).digest('base64')}`;

const NOW = 1_800_000_000_000;
const key = Buffer.from('0123456789abcdef');
const secret = `whsec_${key.toString('base64')}`;
const body = '{"events":[{"id":"e1"}]}';

describe('Standard Webhooks signing', () => {
  it('decodes whsec_ secrets and takes anything else as raw bytes', () => {
    expect(signingKey(secret)).toEqual(key);
    expect(signingKey('plain-secret')).toEqual(Buffer.from('plain-secret'));
  });

  it('signs what an independent implementation computes', () => {
    const headers = signatureHeaders(key, 'e1', body, NOW);
    expect(headers).toEqual({ 'webhook-id': 'e1', 'webhook-timestamp': '1800000000', 'webhook-signature': independent(key, 'e1', 1_800_000_000, body) });
  });

  it('names a batch by a stable hash of its ids', () => {
    expect(webhookId(['e1'])).toBe('e1');
    expect(webhookId(['e1', 'e2'])).toBe(webhookId(['e1', 'e2']));
    expect(webhookId(['e1', 'e2'])).not.toBe(webhookId(['e2', 'e1']));
    expect(webhookId(['e1', 'e2'])).toMatch(/^batch_[0-9a-f]{32}$/);
    expect(webhookId(['b2a5e8f2-8a49-4bd5-b0d4-1f4b4ce5e0d1'])).toBe('b2a5e8f2-8a49-4bd5-b0d4-1f4b4ce5e0d1');
    expect(webhookId(['a b'])).toMatch(/^event_[0-9a-f]{32}$/);
    expect(webhookId(['a b'])).toBe(webhookId(['a b']));
    expect(webhookId(['a b'])).not.toBe(webhookId(['a  b']));
    // Lone surrogates all become U+FFFD in UTF-8: ids that differ only there stay apart.
    expect(new Set([webhookId(['x\ud800']), webhookId(['x\udbff']), webhookId(['x\ufffd'])]).size).toBe(3);
    expect(webhookId(['x\ud800', 'y'])).not.toBe(webhookId(['x\udbff', 'y']));
  });

  it('verifies a genuine request (any header case, several signatures) and returns its id', () => {
    const good = independent(key, 'e1', 1_800_000_000, body);
    const headers = { 'Webhook-Id': 'e1', 'WEBHOOK-TIMESTAMP': '1800000000', 'webhook-signature': `v1,bm9wZQ== ${good}` };
    expect(verifyWebhook(secret, headers, body, { now: () => NOW })).toBe('e1');
    expect(verifyWebhook(secret, headers, Buffer.from(body), { now: () => NOW + 299_000 })).toBe('e1');
  });

  it.each([
    ['a tampered body', { body: '{"events":[]}' }],
    ['another secret', { secret: 'whsec_b3RoZXI=' }],
    ['a stale timestamp', { now: NOW + 301_000 }],
    ['a timestamp from the future', { now: NOW - 301_000 }],
    ['a missing signature', { signature: undefined }],
    ['another version', { signature: `v2,${independent(key, 'e1', 1_800_000_000, body).slice(3)}` }],
  ])('refuses %s', (_name, change: { body?: string; secret?: string; now?: number; signature?: string | undefined }) => {
    const signature = 'signature' in change ? change.signature : independent(key, 'e1', 1_800_000_000, body);
    const headers = { 'webhook-id': 'e1', 'webhook-timestamp': '1800000000', ...(signature !== undefined && { 'webhook-signature': signature }) };
    const verify = (): string => verifyWebhook(change.secret ?? secret, headers, change.body ?? body, { now: () => change.now ?? NOW });
    expect(verify).toThrow(WebhookVerificationError);
    expect(verify).toThrow(expect.objectContaining({ code: 'ERR_WEBHOOK_VERIFICATION' }));
  });
});

describe('Standard Webhooks Ed25519 (v1a)', () => {
  const pair = ed25519KeyPair();
  const whsk = `whsk_${pair.seed.toString('base64')}`;
  const whpk = `whpk_${pair.raw.toString('base64')}`;
  const message = Buffer.from(`e1.1800000000.${body}`);

  it('reads whsk_ + base64 of the 32-byte seed or of seed + public key (64 bytes), white space around ignored', () => {
    expect(ed25519PrivateKey(whsk)).toEqual(pair.seed);
    expect(ed25519PrivateKey(`  whsk_${Buffer.concat([pair.seed, pair.raw]).toString('base64')}\n`)).toEqual(pair.seed);
    expect(ed25519PrivateKey(whsk.replace(/=+$/, ''))).toEqual(pair.seed);
    expect(ed25519PublicKey(pair.seed)).toBe(whpk);
  });

  it.each([
    ['no prefix', pair.seed.toString('base64'), /expected whsk_ followed by base64/],
    ['an HMAC secret', `whsec_${pair.seed.toString('base64')}`, /holds a whsec_ HMAC secret/],
    ['a public key', whpk, /expected whsk_/],
    ['base64url', `whsk_${Buffer.alloc(32, 0xfb).toString('base64url')}`, /not base64/],
    ['16 bytes', `whsk_${pair.seed.subarray(0, 16).toString('base64')}`, /decodes to 16 bytes, not 32 \(the seed\) or 64/],
    ['48 bytes', `whsk_${Buffer.concat([pair.seed, pair.raw.subarray(0, 16)]).toString('base64')}`, /decodes to 48 bytes/],
    ['another public half', `whsk_${Buffer.concat([pair.seed, ed25519KeyPair().raw]).toString('base64')}`, /last 32 bytes are not the public key of its first 32/],
    ['empty', 'whsk_', /not base64/],
  ])('refuses %s, without the key in the message', (_name, text, pattern) => {
    const error = (() => {
      try {
        ed25519PrivateKey(text);
      } catch (caught) {
        return caught as Error;
      }
      throw new Error('accepted');
    })();
    expect(error).toBeInstanceOf(SigningKeyError);
    expect(error).toMatchObject({ code: 'ERR_SIGNING_KEY' });
    expect(error.message).toMatch(pattern);
    for (const secret of [pair.seed.toString('base64').slice(0, 12), text.slice(5, 17)].filter((part) => part.length > 4)) {
      expect(error.message).not.toContain(secret);
    }
  });

  it('signs "id.timestamp.body" as node:crypto does with the same private key, and node:crypto verifies it', () => {
    const headers = signatureHeaders(signer('Ed25519', pair.seed), 'e1', body, NOW);
    expect(headers['webhook-id']).toBe('e1');
    expect(headers['webhook-timestamp']).toBe('1800000000');
    // Ed25519 is deterministic (RFC 8032): the same key and message give the same signature.
    expect(headers['webhook-signature']).toBe(`v1a,${nodeSign(null, message, pair.privateKey).toString('base64')}`);
    expect(nodeVerify(null, message, pair.publicKey, Buffer.from(headers['webhook-signature']!.slice(4), 'base64'))).toBe(true);
  });

  it('HMAC through signer() is the v1 signature of sign()', () => {
    expect(signatureHeaders(signer('HMAC-SHA256', key), 'e1', body, NOW)).toEqual(signatureHeaders(key, 'e1', body, NOW));
  });

  it('verifyWebhook checks v1a signatures with a whpk_ public key', () => {
    const good = `v1a,${nodeSign(null, message, pair.privateKey).toString('base64')}`;
    const headers = { 'webhook-id': 'e1', 'webhook-timestamp': '1800000000', 'webhook-signature': `v1a,bm9wZQ== ${independent(key, 'e1', 1_800_000_000, body)} ${good}` };
    expect(verifyWebhook(whpk, headers, body, { now: () => NOW })).toBe('e1');
    expect(verifyWebhook(whpk, headers, Buffer.from(body), { now: () => NOW })).toBe('e1');
    const refused = (change: { body?: string; key?: string; signature?: string; now?: number }): unknown => {
      try {
        return verifyWebhook(change.key ?? whpk, { ...headers, 'webhook-signature': change.signature ?? good }, change.body ?? body, { now: () => change.now ?? NOW });
      } catch (error) {
        return error;
      }
    };
    expect(refused({ body: '{"events":[]}' })).toBeInstanceOf(WebhookVerificationError);
    expect(refused({ key: `whpk_${ed25519KeyPair().raw.toString('base64')}` })).toBeInstanceOf(WebhookVerificationError);
    expect(refused({ signature: good.replace('v1a,', 'v1,') })).toBeInstanceOf(WebhookVerificationError);
    expect(refused({ now: NOW + 301_000 })).toBeInstanceOf(WebhookVerificationError);
    expect(refused({ key: 'whpk_c2hvcnQ=' })).toBeInstanceOf(SigningKeyError);
  });
});
