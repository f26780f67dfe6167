// Ed25519 for tests, independent of src/notifications/signing.ts: key pairs made by node:crypto with their raw halves
// read from JWK, and the receiver's check of a Standard Webhooks `v1a` signature with node:crypto alone.
import { createPublicKey, generateKeyPairSync, verify, type KeyObject } from 'node:crypto';
import type { RecordedRequest } from './receiver.ts';

/** A fresh key pair: node:crypto's objects, the raw seed and public key, and their Standard Webhooks forms. */
export interface TestKeyPair {
  privateKey: KeyObject;
  publicKey: KeyObject;
  seed: Buffer;
  raw: Buffer;
  /** `whsk_` + base64 of the 32-byte seed. */
  whsk32: string;
  /** `whsk_` + base64 of the seed followed by the public key (64 bytes). */
  whsk64: string;
  /** `whpk_` + base64 of the 32-byte public key. */
  whpk: string;
}

/** Makes a key pair as a user would with node:crypto. */
export function ed25519KeyPair(): TestKeyPair {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  const jwk = privateKey.export({ format: 'jwk' });
  const [seed, raw] = [Buffer.from(jwk.d!, 'base64url'), Buffer.from(jwk.x!, 'base64url')];
  return {
    privateKey, publicKey, seed, raw,
    whsk32: `whsk_${seed.toString('base64')}`,
    whsk64: `whsk_${Buffer.concat([seed, raw]).toString('base64')}`,
    whpk: `whpk_${raw.toString('base64')}`,
  };
}

/**
 * Whether `request` carries a `v1a` signature of "id.timestamp.body" that the `whpk_` key verifies, as a receiver
 * checks it: the key imported as JWK, `crypto.verify` over the raw body (or `body`, to check a tampered one).
 */
export function verifiedV1a(whpk: string, request: RecordedRequest, body: Buffer = request.body): boolean {
  const publicKey = createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: Buffer.from(whpk.slice('whpk_'.length), 'base64').toString('base64url') }, format: 'jwk' });
  const [id, timestamp, signature] = ['webhook-id', 'webhook-timestamp', 'webhook-signature'].map((name) => String(request.headers[name]));
  if (!signature!.startsWith('v1a,')) return false;
  return verify(null, Buffer.concat([Buffer.from(`${id}.${timestamp}.`), body]), publicKey, Buffer.from(signature!.slice('v1a,'.length), 'base64'));
}
