/**
 * Standard Webhooks signatures (https://www.standardwebhooks.com): `webhook-id`, `webhook-timestamp` and
 * `webhook-signature: v1,<base64 HMAC-SHA256 of "id.timestamp.body">`. The sender side is used by the HTTP
 * sink; `verifyWebhook` is exported for receivers written in TypeScript.
 */
import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import { NotifierError } from './errors.ts';

/** A signature could not be verified; `code` is `ERR_WEBHOOK_VERIFICATION`. */
export class WebhookVerificationError extends NotifierError {
  constructor(message: string) {
    super('ERR_WEBHOOK_VERIFICATION', message);
  }
}

/** The key bytes of a signing secret: `whsec_` + base64 is decoded, anything else is used as raw bytes. */
export function signingKey(secret: string | Buffer): Buffer {
  if (Buffer.isBuffer(secret)) return secret;
  const trimmed = secret.trim();
  return trimmed.startsWith('whsec_') ? Buffer.from(trimmed.slice('whsec_'.length), 'base64') : Buffer.from(trimmed, 'utf8');
}

/** The `webhook-id` of a POST: the event id for one event, a stable hash of the ids for a batch. */
export function webhookId(eventIds: readonly string[]): string {
  if (eventIds.length === 1) return eventIds[0]!;
  return `batch_${createHash('sha256').update(eventIds.join('\n')).digest('hex').slice(0, 32)}`;
}

/** The `v1,<base64>` signature of one message. */
export function sign(key: Buffer, id: string, timestampSeconds: number, body: string): string {
  return `v1,${createHmac('sha256', key).update(`${id}.${timestampSeconds}.${body}`).digest('base64')}`;
}

/** The three Standard Webhooks headers for one attempt, signed at `nowMs`. */
export function signatureHeaders(key: Buffer, id: string, body: string, nowMs: number): Record<string, string> {
  const timestamp = Math.floor(nowMs / 1000);
  return { 'webhook-id': id, 'webhook-timestamp': String(timestamp), 'webhook-signature': sign(key, id, timestamp, body) };
}

/** Options of `verifyWebhook`. */
export interface VerifyOptions {
  /** How far the timestamp may be from now, in seconds; default 300 (the spec's recommendation). */
  toleranceSeconds?: number;
  now?: () => number;
}

/**
 * Checks a received request: the headers must carry a `v1` signature of `body` (the raw bytes as received)
 * made with `secret`, and a timestamp within the tolerance. Returns the `webhook-id`; throws
 * `WebhookVerificationError` otherwise. Header names are matched case-insensitively.
 */
export function verifyWebhook(
  secret: string | Buffer,
  headers: Record<string, string | string[] | undefined>,
  body: string | Buffer,
  options: VerifyOptions = {},
): string {
  const header = (name: string): string | undefined => {
    const entry = Object.entries(headers).find(([key]) => key.toLowerCase() === name)?.[1];
    return Array.isArray(entry) ? entry[0] : entry;
  };
  const id = header('webhook-id');
  const timestamp = header('webhook-timestamp');
  const signatures = header('webhook-signature');
  if (!id || !timestamp || !signatures) throw new WebhookVerificationError('missing webhook-id, webhook-timestamp or webhook-signature');
  const seconds = Number(timestamp);
  const now = (options.now ?? Date.now)() / 1000;
  if (!Number.isInteger(seconds) || Math.abs(now - seconds) > (options.toleranceSeconds ?? 300)) {
    throw new WebhookVerificationError('webhook-timestamp is missing or outside the tolerance');
  }
  const expected = Buffer.from(sign(signingKey(secret), id, seconds, body.toString()).slice(3), 'base64');
  for (const candidate of signatures.split(' ')) {
    const [version, value] = candidate.split(',', 2);
    if (version !== 'v1' || value === undefined) continue;
    const given = Buffer.from(value, 'base64');
    if (given.length === expected.length && timingSafeEqual(given, expected)) return id;
  }
  throw new WebhookVerificationError('no webhook-signature matches');
}
