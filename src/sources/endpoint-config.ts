import type { NormalisedSpec } from '../api/notification-endpoint.ts';
import { endpointConfig, type EndpointConfig } from '../notifications/endpoint.ts';
import { ed25519PrivateKey, signingKey, SigningKeyError } from '../notifications/signing.ts';
import { NotifierError } from '../notifications/errors.ts';

/** Reads Secrets: the cluster's, or standalone files under `--secrets-dir`. */
export interface SecretReader {
  /** The Secret's keys and values, or undefined when it does not exist. */
  read(namespace: string | undefined, name: string): ReadonlyMap<string, Buffer> | undefined;
}

/** A referenced Secret or key does not exist (yet): transient, Ready=False reason SecretNotFound. */
export class SecretNotFoundError extends NotifierError {
  constructor(message: string) {
    super('ERR_SECRET_NOT_FOUND', message);
  }
}

/** Secret content that can never work (a header value with a line break, half a key pair): Ready=False InvalidSpec. */
export class InvalidSecretError extends NotifierError {
  constructor(message: string) {
    super('ERR_INVALID_SECRET', message);
  }
}

// RFC 7230 field-value: visible characters, spaces and tabs (and obs-text), no line breaks.
const HEADER_VALUE = /^[\t\x20-\x7e\x80-\xff]*$/;

/**
 * Turns a validated spec into the engine's configuration, reading every Secret it references. Throws
 * `SecretNotFoundError` for a missing Secret or key and `InvalidSecretError` for unusable content; never
 * puts a secret value in a message.
 */
export function toEndpointConfig(spec: NormalisedSpec, namespace: string | undefined, secrets: SecretReader): EndpointConfig {
  const key = (name: string, k: string): Buffer => {
    const secret = secrets.read(namespace, name);
    if (!secret) throw new SecretNotFoundError(`Secret ${name} not found`);
    const value = secret.get(k);
    if (value === undefined) throw new SecretNotFoundError(`Secret ${name} has no key ${k}`);
    return value;
  };
  const headers = spec.headers.map((header): [string, string] => {
    if ('value' in header) return [header.name, header.value];
    const { name, key: k } = header.secretKeyRef;
    // Files made with `kubectl create secret --from-file` often end in a newline: not part of the value.
    const value = key(name, k).toString('utf8').replace(/\r?\n$/, '');
    if (value === '') throw new InvalidSecretError(`Secret ${name} key ${k} is empty; header ${header.name} needs a value`);
    if (!HEADER_VALUE.test(value)) throw new InvalidSecretError(`Secret ${name} key ${k} is not a valid value for header ${header.name}`);
    return [header.name, value];
  });
  const config = endpointConfig({
    url: spec.url,
    headers,
    timeoutMs: spec.timeoutMs,
    threshold: spec.threshold,
    backoffMs: spec.backoffMs,
    retry: { ...spec.retry },
    filter: {
      ignoredMediaTypes: spec.ignoredMediaTypes,
      ignoredActions: spec.ignoredActions,
      repositories: spec.repositories,
      tags: spec.tags,
    },
    maxBatchEvents: spec.maxBatchEvents,
    ...(spec.format === 'CloudEvents' && { cloudEvents: spec.cloudEvents }),
    disabled: spec.disabled,
    ...(spec.coalesce && { coalesce: { actions: [...spec.coalesce.actions], windowMs: spec.coalesce.windowMs } }),
  });
  if (spec.signing?.algorithm === 'Ed25519') {
    const { name, key: k } = spec.signing.secretKeyRef;
    try {
      config.signingKey = ed25519PrivateKey(key(name, k).toString('utf8'));
    } catch (error) {
      if (error instanceof SigningKeyError) throw new InvalidSecretError(`Secret ${name} key ${k} ${error.message} (signing.algorithm Ed25519)`);
      throw error;
    }
    config.signingAlgorithm = 'Ed25519';
  } else if (spec.signing) {
    const { name, key: k } = spec.signing.secretKeyRef;
    const secret = signingKey(key(name, k).toString('utf8'));
    if (secret.length === 0) throw new InvalidSecretError(`Secret ${name} key ${k} holds an empty signing secret`);
    config.signingKey = secret;
  }
  const tls = spec.tls;
  if (tls.certSecretRef || tls.insecureSkipVerify) {
    config.tls = { insecureSkipVerify: tls.insecureSkipVerify };
    if (tls.certSecretRef) {
      const { name } = tls.certSecretRef;
      const secret = secrets.read(namespace, name);
      if (!secret) throw new SecretNotFoundError(`Secret ${name} not found`);
      const ca = secret.get('ca.crt');
      const cert = secret.get('tls.crt');
      const privateKey = secret.get('tls.key');
      if ((cert === undefined) !== (privateKey === undefined)) {
        throw new InvalidSecretError(`Secret ${name} must hold both tls.crt and tls.key for a client certificate, or neither`);
      }
      if (ca === undefined && cert === undefined) throw new SecretNotFoundError(`Secret ${name} has neither ca.crt nor tls.crt`);
      if (ca !== undefined) config.tls.ca = ca;
      if (cert !== undefined && privateKey !== undefined) Object.assign(config.tls, { cert, key: privateKey });
    }
  }
  return config;
}
