// toEndpointConfig: a validated spec plus its Secrets into the engine's configuration. Specs are made by the
// real parser from documents, so the defaults tested are the ones a user gets.
import { HTTP, type CloudEventV1 } from 'cloudevents';
import { describe, expect, it } from 'vitest';
import { parseNotificationEndpoint, type NormalisedSpec } from '../../src/api/notification-endpoint.ts';
import { parseEnvelope } from '../../src/ingest/envelope.ts';
import { Endpoint, ENDPOINT_DEFAULTS, type EndpointConfig } from '../../src/notifications/endpoint.ts';
import { startReceiver, useCleanups } from '../support/cleanup.ts';
import { rawBody } from '../support/events.ts';
import { InvalidSecretError, SecretNotFoundError, toEndpointConfig, type SecretReader } from '../../src/sources/endpoint-config.ts';
import { ed25519KeyPair } from '../support/ed25519.ts';

function spec(fields: Record<string, unknown>): NormalisedSpec {
  return parseNotificationEndpoint({
    apiVersion: 'registry-notifier.io/v1alpha1',
    kind: 'NotificationEndpoint',
    metadata: { name: 'x' },
    spec: { url: 'https://hooks.example.com/registry', ...fields },
  }).spec;
}

/** Secrets in memory, `name -> key -> value`; records every read as `namespace/name`. */
function secrets(data: Record<string, Record<string, string>>): SecretReader & { reads: string[] } {
  const reads: string[] = [];
  return {
    reads,
    read(namespace, name) {
      reads.push(`${namespace ?? '-'}/${name}`);
      const secret = data[name];
      return secret && new Map(Object.entries(secret).map(([k, v]) => [k, Buffer.from(v)]));
    },
  };
}
const none = secrets({});
const ref = (name: string, key: string): { valueFrom: { secretKeyRef: { name: string; key: string } } } => ({ valueFrom: { secretKeyRef: { name, key } } });

// Values that must never appear in an error message.
const TOKEN = 'tok-7f3a9c1e5b';
const BAD_VALUE = `line1-${TOKEN}\r\nX-Injected: yes`;

describe('toEndpointConfig maps the spec', () => {
  it('carries coalesce as its actions and window in milliseconds; without it, nothing is coalesced', () => {
    expect(toEndpointConfig(spec({ coalesce: { actions: ['pull', 'mount'], window: '1m30s' } }), undefined, none).coalesce)
      .toEqual({ actions: ['pull', 'mount'], windowMs: 90_000 });
    expect(toEndpointConfig(spec({}), undefined, none)).not.toHaveProperty('coalesce');
  });

  it('applies Distribution\'s defaults to a spec with only a url', () => {
    const config = toEndpointConfig(spec({}), undefined, none);
    expect(config).toEqual({
      url: 'https://hooks.example.com/registry',
      headers: [],
      timeoutMs: 1000,
      threshold: 10,
      backoffMs: 1000,
      retry: { strategy: 'Breaker', maxBackoffMs: 300_000, maxAttempts: 0, maxAgeMs: 0, clientErrors: 'Retry', disableAfterMs: 0 },
      filter: { ignoredMediaTypes: [], ignoredActions: [], repositories: { include: [], exclude: [] }, tags: { include: [], exclude: [] } },
      maxBatchEvents: 1,
      disabled: false,
    });
    expect(config).toMatchObject({ ...ENDPOINT_DEFAULTS, retry: { ...ENDPOINT_DEFAULTS.retry } });
    expect(config).not.toHaveProperty('tls');
    expect(config).not.toHaveProperty('signingKey');
    expect(none.reads).toEqual([]);
  });

  it.each([
    ['timeout', { timeout: '2m30s' }, { timeoutMs: 150_000 }],
    ['threshold', { threshold: 3 }, { threshold: 3 }],
    ['backoff', { backoff: '250ms' }, { backoffMs: 250 }],
    ['retry', { retry: { strategy: 'Exponential', maxBackoff: '1h', maxAttempts: 5, maxAge: '1.5s' } },
      { retry: { strategy: 'Exponential', maxBackoffMs: 3_600_000, maxAttempts: 5, maxAgeMs: 1500 } }],
    ['retry, the receiver-facing fields', { retry: { clientErrors: 'DeadLetter', disableAfter: '30m' } },
      { retry: { strategy: 'Breaker', maxBackoffMs: 300_000, maxAttempts: 0, maxAgeMs: 0, clientErrors: 'DeadLetter', disableAfterMs: 1_800_000 } }],
    ['retry, partly given', { retry: { maxAttempts: 2 } }, { retry: { strategy: 'Breaker', maxBackoffMs: 300_000, maxAttempts: 2, maxAgeMs: 0 } }],
    ['media types merged', { ignoredMediaTypes: ['a', 'b'], ignore: { mediaTypes: ['b', 'c'] } }, { filter: expect.objectContaining({ ignoredMediaTypes: ['a', 'b', 'c'] }) }],
    ['actions', { ignore: { actions: ['pull', 'mount'] } }, { filter: expect.objectContaining({ ignoredActions: ['pull', 'mount'] }) }],
    ['repository and tag globs', { filter: { repositories: { include: ['team/**'], exclude: ['team/tmp-*'] }, tags: { include: ['v*'] } } },
      { filter: expect.objectContaining({ repositories: { include: ['team/**'], exclude: ['team/tmp-*'] }, tags: { include: ['v*'], exclude: [] } }) }],
    ['maxBatchEvents', { maxBatchEvents: 50 }, { maxBatchEvents: 50 }],
    ['disabled', { disabled: true }, { disabled: true }],
    ['insecureSkipVerify alone', { tls: { insecureSkipVerify: true } }, { tls: { insecureSkipVerify: true } }],
    ['CloudEvents (Binary by default)', { format: 'CloudEvents' }, { cloudEvents: { mode: 'Binary' } }],
    ['CloudEvents structured with a source', { format: 'CloudEvents', cloudEvents: { mode: 'Structured', source: 'urn:registry:prod' }, maxBatchEvents: 20 },
      { cloudEvents: { mode: 'Structured', source: 'urn:registry:prod' }, maxBatchEvents: 20 }],
  ])('%s', (_name, fields, expected) => {
    expect(toEndpointConfig(spec(fields), undefined, none)).toMatchObject(expected);
  });
});

describe('toEndpointConfig headers', () => {
  it('keeps literal and secret headers in the order written, each secret read in the endpoint\'s namespace', () => {
    const reader = secrets({ auth: { token: `Bearer ${TOKEN}\n` }, tenant: { id: 'acme' } });
    const config = toEndpointConfig(spec({
      headers: [
        { name: 'X-Source', value: 'registry-notifier' },
        { name: 'Authorization', ...ref('auth', 'token') },
        { name: 'X-Tenant', ...ref('tenant', 'id') },
      ],
    }), 'platform', reader);
    expect(config.headers).toEqual([['X-Source', 'registry-notifier'], ['Authorization', `Bearer ${TOKEN}`], ['X-Tenant', 'acme']]);
    expect(reader.reads).toEqual(['platform/auth', 'platform/tenant']);
  });

  it.each([
    ['a trailing newline', `${TOKEN}\n`, TOKEN],
    ['a trailing CRLF', `${TOKEN}\r\n`, TOKEN],
    ['no newline', TOKEN, TOKEN],
    ['inner spaces and tabs', `a b\tc`, 'a b\tc'],
  ])('a secret value with %s', (_name, stored, expected) => {
    const config = toEndpointConfig(spec({ headers: [{ name: 'X-Token', ...ref('s', 'k') }] }), undefined, secrets({ s: { k: stored } }));
    expect(config.headers).toEqual([['X-Token', expected]]);
  });

  it.each([
    ['a line break inside', BAD_VALUE],
    ['two trailing newlines', `${TOKEN}\n\n`],
    ['a NUL byte', `${TOKEN}\u0000`],
    ['a bare carriage return', `${TOKEN}\rX`],
  ])('a secret value with %s is InvalidSecretError, and the message does not hold it', (_name, stored) => {
    const run = (): unknown => toEndpointConfig(spec({ headers: [{ name: 'X-Token', ...ref('s', 'k') }] }), undefined, secrets({ s: { k: stored } }));
    expect(run).toThrow(InvalidSecretError);
    const error = catchError(run);
    expect(error).toMatchObject({ name: 'InvalidSecretError', code: 'ERR_INVALID_SECRET', message: 'Secret s key k is not a valid value for header X-Token' });
    expect(error.message).not.toContain(TOKEN);
  });

  it.each([['empty', ''], ['only a newline', '\n']])('a secret value that is %s is refused like an empty literal value', (_name, stored) => {
    const run = (): unknown => toEndpointConfig(spec({ headers: [{ name: 'X-Token', ...ref('s', 'k') }] }), undefined, secrets({ s: { k: stored } }));
    expect(run).toThrow(InvalidSecretError);
    expect(catchError(run).message).toBe('Secret s key k is empty; header X-Token needs a value');
  });
});

describe('toEndpointConfig errors', () => {
  const reader = secrets({
    auth: { token: TOKEN },
    'ca-only': { 'ca.crt': 'CA PEM' },
    'cert-only': { 'tls.crt': `CERT ${TOKEN}` },
    'key-only': { 'tls.key': `KEY ${TOKEN}` },
    'pair': { 'tls.crt': 'CERT', 'tls.key': `KEY ${TOKEN}` },
    'unrelated': { 'other': TOKEN },
    'signing-empty': { secret: 'whsec_' },
    'signing-blank': { secret: '\n' },
  });
  const cases: [string, Record<string, unknown>, typeof SecretNotFoundError | typeof InvalidSecretError, RegExp][] = [
    ['header Secret missing', { headers: [{ name: 'A', ...ref('nope', 'token') }] }, SecretNotFoundError, /^Secret nope not found$/],
    ['header key missing', { headers: [{ name: 'A', ...ref('auth', 'nope') }] }, SecretNotFoundError, /^Secret auth has no key nope$/],
    ['signing Secret missing', { signing: { secretKeyRef: { name: 'nope', key: 'secret' } } }, SecretNotFoundError, /^Secret nope not found$/],
    ['signing secret empty (whsec_ only)', { signing: { secretKeyRef: { name: 'signing-empty', key: 'secret' } } }, InvalidSecretError, /empty signing secret/],
    ['signing secret blank', { signing: { secretKeyRef: { name: 'signing-blank', key: 'secret' } } }, InvalidSecretError, /empty signing secret/],
    ['TLS Secret missing', { tls: { certSecretRef: { name: 'nope' } } }, SecretNotFoundError, /^Secret nope not found$/],
    ['TLS Secret without any known key', { tls: { certSecretRef: { name: 'unrelated' } } }, SecretNotFoundError, /neither ca\.crt nor tls\.crt/],
    ['tls.crt without tls.key', { tls: { certSecretRef: { name: 'cert-only' } } }, InvalidSecretError, /both tls\.crt and tls\.key/],
    ['tls.key without tls.crt', { tls: { certSecretRef: { name: 'key-only' } } }, InvalidSecretError, /both tls\.crt and tls\.key/],
  ];
  it.each(cases)('%s', (_name, fields, type, message) => {
    const error = catchError(() => toEndpointConfig(spec(fields), undefined, reader));
    expect(error).toBeInstanceOf(type);
    expect(error.message).toMatch(message);
    expect(error.code).toBe(type === SecretNotFoundError ? 'ERR_SECRET_NOT_FOUND' : 'ERR_INVALID_SECRET');
    expect(error.message).not.toContain(TOKEN);
    expect(error.message).not.toContain('KEY');
  });

  it('no standalone secrets directory: every reference is SecretNotFound', () => {
    const empty: SecretReader = { read: () => undefined };
    expect(() => toEndpointConfig(spec({ headers: [{ name: 'A', ...ref('auth', 'token') }] }), undefined, empty)).toThrow(SecretNotFoundError);
  });
});

describe('toEndpointConfig TLS and signing material', () => {
  it('ca.crt alone trusts a CA; a full pair adds the client certificate; insecureSkipVerify is carried', () => {
    const reader = secrets({ 'ca-only': { 'ca.crt': 'CA PEM' }, pair: { 'tls.crt': 'CERT', 'tls.key': 'KEY', 'ca.crt': 'CA2' }, 'pair-no-ca': { 'tls.crt': 'CERT', 'tls.key': 'KEY' } });
    const ca = toEndpointConfig(spec({ tls: { certSecretRef: { name: 'ca-only' } } }), undefined, reader).tls;
    expect(ca).toEqual({ insecureSkipVerify: false, ca: Buffer.from('CA PEM') });
    const pair = toEndpointConfig(spec({ tls: { certSecretRef: { name: 'pair' }, insecureSkipVerify: true } }), undefined, reader).tls;
    expect(pair).toEqual({ insecureSkipVerify: true, ca: Buffer.from('CA2'), cert: Buffer.from('CERT'), key: Buffer.from('KEY') });
    const noCa = toEndpointConfig(spec({ tls: { certSecretRef: { name: 'pair-no-ca' } } }), undefined, reader).tls;
    expect(noCa).toEqual({ insecureSkipVerify: false, cert: Buffer.from('CERT'), key: Buffer.from('KEY') });
  });

  it.each([
    ['whsec_ + base64 is decoded', 'whsec_c2VjcmV0LWJ5dGVz\n', Buffer.from('secret-bytes')],
    ['anything else is raw bytes', 'plain-secret\n', Buffer.from('plain-secret')],
  ])('signing: %s', (_name, stored, key) => {
    const config = toEndpointConfig(spec({ signing: { secretKeyRef: { name: 's', key: 'k' } } }), undefined, secrets({ s: { k: stored } }));
    expect(config.signingKey).toEqual(key);
  });
});

describe('toEndpointConfig: format on the wire', () => {
  const cleanups = useCleanups();
  // The registry's own bytes of a captured 3.0 request (3-space indent), as the ingest passes each event on.
  const [incoming] = parseEnvelope(rawBody('push-index'));
  const item = { id: incoming!.event.id, json: incoming!.json, acceptedAt: 0 };

  async function send(fields: Record<string, unknown>): Promise<{ headers: Record<string, string | string[] | undefined>; text: string }> {
    const r = await startReceiver(cleanups);
    const config: EndpointConfig = toEndpointConfig(spec({ ...fields, url: r.url }), undefined, none);
    const endpoint = new Endpoint('wire', config, { userAgent: 'registry-notifier/test' });
    cleanups.push(() => endpoint.close({ signal: AbortSignal.abort() }));
    endpoint.enqueue([item]);
    const [request] = await r.waitFor((q) => q.length === 1);
    return { headers: request!.headers, text: request!.text };
  }

  it('without format: Distribution\'s envelope, byte for byte as before, no ce-* header', async () => {
    expect(toEndpointConfig(spec({}), undefined, none)).not.toHaveProperty('cloudEvents');
    const { headers, text } = await send({});
    expect(text).toBe(`{"events":[${incoming!.json}]}`);
    expect(headers['content-type']).toBe('application/vnd.docker.distribution.events.v1+json');
    expect(Object.keys(headers).filter((name) => name.startsWith('ce-'))).toEqual([]);
    const explicit = await send({ format: 'Distribution' });
    expect(explicit.text).toBe(text);
    expect(explicit.headers['content-type']).toBe(headers['content-type']);
  });

  it('format: CloudEvents from a spec reaches the wire (binary by default, structured when asked)', async () => {
    const binary = await send({ format: 'CloudEvents' });
    expect(binary.text).toBe(incoming!.json);
    expect(binary.headers).toMatchObject({ 'content-type': 'application/json', 'ce-id': item.id, 'ce-source': '//127.0.0.1:27155', 'ce-subject': 'alpha/app:v3-multi' });
    const structured = await send({ format: 'CloudEvents', cloudEvents: { mode: 'Structured', source: 'urn:registry:prod' } });
    const event = HTTP.toEvent({ headers: { 'content-type': String(structured.headers['content-type']) }, body: structured.text }) as CloudEventV1<unknown>;
    expect(event).toMatchObject({ id: item.id, source: 'urn:registry:prod', type: 'io.registry-notifier.push', subject: 'alpha/app:v3-multi' });
    expect(event.data).toEqual(JSON.parse(incoming!.json));
  });
});

describe('toEndpointConfig Ed25519 signing', () => {
  const { seed, raw } = ed25519KeyPair();
  const ed25519 = { signing: { algorithm: 'Ed25519', secretKeyRef: { name: 's', key: 'k' } } };

  it.each([
    ['the 32-byte seed', `whsk_${seed.toString('base64')}\n`],
    ['seed and public key (64 bytes)', `whsk_${Buffer.concat([seed, raw]).toString('base64')}`],
  ])('reads a whsk_ key of %s into the seed, algorithm Ed25519', (_name, stored) => {
    const config = toEndpointConfig(spec(ed25519), undefined, secrets({ s: { k: stored } }));
    expect(config.signingKey).toEqual(seed);
    expect(config.signingAlgorithm).toBe('Ed25519');
  });

  it('HMAC-SHA256 (the default) sets no algorithm: the engine signs v1 as before', () => {
    const config = toEndpointConfig(spec({ signing: { algorithm: 'HMAC-SHA256', secretKeyRef: { name: 's', key: 'k' } } }), undefined, secrets({ s: { k: 'whsec_c2VjcmV0' } }));
    expect(config.signingKey).toEqual(Buffer.from('secret'));
    expect(config).not.toHaveProperty('signingAlgorithm');
  });

  it.each([
    ['an HMAC secret', `whsec_${seed.toString('base64')}`, /^Secret s key k is not an Ed25519 private key \(it holds a whsec_ HMAC secret\): expected whsk_ followed by base64 \(signing.algorithm Ed25519\)$/],
    ['a raw key', seed.toString('base64'), /is not an Ed25519 private key: expected whsk_/],
    ['a key of 31 bytes', `whsk_${seed.subarray(1).toString('base64')}`, /decodes to 31 bytes/],
    ['a pair whose halves do not belong together', `whsk_${Buffer.concat([seed, Buffer.alloc(32, 7)]).toString('base64')}`, /not the public key of its first 32/],
    ['not base64', `whsk_${seed.toString('hex')}!`, /not base64/],
  ])('refuses %s: InvalidSecretError (Ready=False InvalidSpec), the key never in the message', (_name, stored, message) => {
    const error = catchError(() => toEndpointConfig(spec(ed25519), undefined, secrets({ s: { k: stored } })));
    expect(error).toBeInstanceOf(InvalidSecretError);
    expect(error.message).toMatch(message);
    for (const part of [seed.toString('base64').slice(0, 16), seed.toString('hex').slice(0, 16), stored.slice(5, 21)]) expect(error.message).not.toContain(part);
  });
});

function catchError(run: () => unknown): Error & { code?: string } {
  try {
    run();
  } catch (error) {
    return error as Error & { code?: string };
  }
  throw new Error('expected an error');
}
