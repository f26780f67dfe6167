import { createHmac } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { signatureHeaders, signingKey, verifyWebhook, webhookId, WebhookVerificationError } from '../../src/notifications/signing.ts';

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
