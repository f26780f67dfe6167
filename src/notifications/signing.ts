/**
 * Standard Webhooks signatures (https://www.standardwebhooks.com): `webhook-id`, `webhook-timestamp` and
 * `webhook-signature: v1,<base64 HMAC-SHA256 of "id.timestamp.body">`, or with an Ed25519 key pair
 * `v1a,<base64 Ed25519 signature of "id.timestamp.body">`. The sender side is used by the HTTP sink;
 * `verifyWebhook` is exported for receivers written in TypeScript.
 */
import { createHash, createHmac, createPrivateKey, createPublicKey, sign as signWith, timingSafeEqual, verify as verifyWith, type KeyObject } from 'node:crypto';
import { NotifierError } from './errors.ts';

/** The schemes of `signing.algorithm`: Standard Webhooks' symmetric `v1` and asymmetric `v1a`. */
export type SigningAlgorithm = 'HMAC-SHA256' | 'Ed25519';

/** A `whsk_` private key or `whpk_` public key that cannot be used; the message never contains the key. */
export class SigningKeyError extends NotifierError {
  constructor(message: string) {
    super('ERR_SIGNING_KEY', message);
  }
}

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

// An event id that can be a header value as it is: visible ASCII, no white space, at most 255 characters (a
// registry's ids are UUIDs). Any other string is accepted at the ingest (api.md section 4), so it must not reach
// a header: undici refuses control characters and non-ASCII before sending, and the endpoint would retry forever.
const HEADER_SAFE_ID = /^[\x21-\x7e]{1,255}$/;

/**
 * The `webhook-id` of a POST: the event id for one event (`event_` + a stable hash of it when it could not be a
 * header value), a stable hash of the ids for a batch (`batch_` + …).
 */
export function webhookId(eventIds: readonly string[]): string {
  const [only] = eventIds;
  if (eventIds.length === 1 && only !== undefined) return HEADER_SAFE_ID.test(only) ? only : `event_${digest(hashable(only))}`;
  return `batch_${digest(eventIds.map(hashable).join('\n'))}`;
}

// A string as hashed: UTF-8 turns every lone surrogate into U+FFFD, so such an id goes in its JSON form (escaped),
// and two of them stay apart; any other id as it is (the batch ids of earlier releases unchanged).
function hashable(id: string): string {
  return id.isWellFormed() ? id : JSON.stringify(id);
}

function digest(text: string): string {
  return createHash('sha256').update(text).digest('hex').slice(0, 32);
}

/** The `v1,<base64>` signature of one message. */
export function sign(key: Buffer, id: string, timestampSeconds: number, body: string): string {
  return `v1,${createHmac('sha256', key).update(`${id}.${timestampSeconds}.${body}`).digest('base64')}`;
}

/** Signs one message (`webhook-id`, timestamp in seconds, body) into a `webhook-signature` value. */
export type Signer = (id: string, timestampSeconds: number, body: string) => string;

// RFC 8410's DER framing of a raw Ed25519 key: PKCS#8 for the 32-byte private key (seed), SPKI for the public key.
const PKCS8_ED25519 = Buffer.from('302e020100300506032b657004220420', 'hex');
const SPKI_ED25519 = Buffer.from('302a300506032b6570032100', 'hex');
// What the spec allows a key to be written in: base64's standard alphabet, padding optional.
const BASE64 = /^[A-Za-z0-9+/]+={0,2}$/;

function ed25519KeyObject(seed: Buffer): KeyObject {
  return createPrivateKey({ key: Buffer.concat([PKCS8_ED25519, seed]), format: 'der', type: 'pkcs8' });
}

function rawPublicKey(privateKey: KeyObject): Buffer {
  return createPublicKey(privateKey).export({ format: 'der', type: 'spki' }).subarray(SPKI_ED25519.length);
}

/**
 * The signer of an endpoint: HMAC-SHA256 (`v1`) with `key` as the secret's bytes, or Ed25519 (`v1a`) with `key`
 * as the 32-byte private key (seed, as `ed25519PrivateKey` returns it), prepared once and used for every attempt.
 */
export function signer(algorithm: SigningAlgorithm, key: Buffer): Signer {
  if (algorithm === 'HMAC-SHA256') return (id, timestamp, body) => sign(key, id, timestamp, body);
  const privateKey = ed25519KeyObject(key);
  return (id, timestamp, body) => `v1a,${signWith(null, Buffer.from(`${id}.${timestamp}.${body}`), privateKey).toString('base64')}`;
}

/**
 * The 32-byte Ed25519 private key (seed) of a Standard Webhooks secret key: `whsk_` + base64 of either the seed
 * (RFC 8032's private key) or the seed followed by its public key (64 bytes: the form Svix, libsodium and Go's
 * `crypto/ed25519` write), whose public half must then match. Surrounding white space is ignored. Throws
 * `SigningKeyError` for anything else; its message never contains the key.
 */
export function ed25519PrivateKey(text: string): Buffer {
  const trimmed = text.trim();
  if (!trimmed.startsWith('whsk_')) {
    const hint = trimmed.startsWith('whsec_') ? ' (it holds a whsec_ HMAC secret)' : '';
    throw new SigningKeyError(`is not an Ed25519 private key${hint}: expected whsk_ followed by base64`);
  }
  const encoded = trimmed.slice('whsk_'.length);
  if (!BASE64.test(encoded)) throw new SigningKeyError('is not an Ed25519 private key: what follows whsk_ is not base64');
  const bytes = Buffer.from(encoded, 'base64');
  if (bytes.length !== 32 && bytes.length !== 64) {
    throw new SigningKeyError(`is not an Ed25519 private key: it decodes to ${bytes.length} bytes, not 32 (the seed) or 64 (the seed and its public key)`);
  }
  const seed = Buffer.from(bytes.subarray(0, 32));
  if (bytes.length === 64 && !rawPublicKey(ed25519KeyObject(seed)).equals(bytes.subarray(32))) {
    throw new SigningKeyError('is not an Ed25519 key pair: its last 32 bytes are not the public key of its first 32');
  }
  return seed;
}

/** The Standard Webhooks public key (`whpk_` + base64 of the 32 raw bytes) of an Ed25519 private key (seed). */
export function ed25519PublicKey(seed: Buffer): string {
  return `whpk_${rawPublicKey(ed25519KeyObject(seed)).toString('base64')}`;
}

function ed25519Verifier(publicKey: string): KeyObject {
  const encoded = publicKey.trim().slice('whpk_'.length);
  const bytes = BASE64.test(encoded) ? Buffer.from(encoded, 'base64') : Buffer.alloc(0);
  if (bytes.length !== 32) throw new SigningKeyError('is not an Ed25519 public key: expected whpk_ followed by base64 of 32 bytes');
  return createPublicKey({ key: Buffer.concat([SPKI_ED25519, bytes]), format: 'der', type: 'spki' });
}

/** The three Standard Webhooks headers for one attempt, signed at `nowMs` with an HMAC key or a `Signer`. */
export function signatureHeaders(key: Buffer | Signer, id: string, body: string, nowMs: number): Record<string, string> {
  const timestamp = Math.floor(nowMs / 1000);
  const signature = typeof key === 'function' ? key(id, timestamp, body) : sign(key, id, timestamp, body);
  return { 'webhook-id': id, 'webhook-timestamp': String(timestamp), 'webhook-signature': signature };
}

/** Options of `verifyWebhook`. */
export interface VerifyOptions {
  /** How far the timestamp may be from now, in seconds; default 300 (the spec's recommendation). */
  toleranceSeconds?: number;
  now?: () => number;
}

/**
 * Checks a received request: the headers must carry a `v1` signature of `body` (the raw bytes as received)
 * made with `secret` or, when `secret` is an Ed25519 public key (`whpk_` + base64), a `v1a` signature made
 * with its private key; and a timestamp within the tolerance. Returns the `webhook-id`; throws
 * `WebhookVerificationError` otherwise (`SigningKeyError` for a `whpk_` key that is not one). Header names are
 * matched case-insensitively.
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
  if (typeof secret === 'string' && secret.trim().startsWith('whpk_')) {
    const publicKey = ed25519Verifier(secret);
    const message = Buffer.concat([Buffer.from(`${id}.${seconds}.`), Buffer.from(body)]);
    for (const candidate of signatures.split(' ')) {
      const [version, value] = candidate.split(',', 2);
      if (version === 'v1a' && value !== undefined && verifyWith(null, message, publicKey, Buffer.from(value, 'base64'))) return id;
    }
    throw new WebhookVerificationError('no webhook-signature matches');
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
