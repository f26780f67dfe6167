import { redactUrl } from '../../src/notifications/http-sink.ts';
import { readFileSync, readdirSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import {
  InvalidSpecError,
  type NormalisedSpec,
  parseNotificationEndpoint,
  parseNotificationEndpointsYaml,
  referencedSecrets,
  type SchemaRule,
  SPEC_SCHEMA,
} from '../../src/api/notification-endpoint.ts';
import { DURATION_PATTERN, parseDuration } from '../../src/api/duration.ts';

type Json = Record<string, unknown>;
const API = 'registry-notifier.io/v1alpha1';
const doc = (spec: Json, extra: Json = {}): Json => ({ apiVersion: API, kind: 'NotificationEndpoint', metadata: { name: 'ep' }, spec, ...extra });
const base = (more: Json = {}): Json => doc({ url: 'https://hooks.example.com/events', ...more });
const thrown = (run: () => unknown): InvalidSpecError => {
  try {
    run();
  } catch (error) {
    expect(error).toBeInstanceOf(InvalidSpecError);
    return error as InvalidSpecError;
  }
  throw new Error('expected an InvalidSpecError');
};

const DEFAULTS: NormalisedSpec = {
  url: 'https://hooks.example.com/events',
  headers: [],
  timeoutMs: 1000,
  threshold: 10,
  backoffMs: 1000,
  retry: { strategy: 'Breaker', maxBackoffMs: 300_000, maxAttempts: 0, maxAgeMs: 0, clientErrors: 'Retry', disableAfterMs: 0 },
  ignoredMediaTypes: [],
  ignoredActions: [],
  repositories: { include: [], exclude: [] },
  tags: { include: [], exclude: [] },
  maxBatchEvents: 1,
  format: 'Distribution',
  cloudEvents: { mode: 'Binary' },
  tls: { insecureSkipVerify: false },
  disabled: false,
};

describe('parseNotificationEndpoint: defaults and normalisation', () => {
  it('fills every default of a minimal document', () => {
    expect(parseNotificationEndpoint(base())).toEqual({ name: 'ep', spec: DEFAULTS });
  });

  it.each<[string, Json, Partial<NormalisedSpec>]>([
    ['timeout', { timeout: '2m30s' }, { timeoutMs: 150_000 }],
    ['fractional timeout', { timeout: '1.5s' }, { timeoutMs: 1500 }],
    ['threshold', { threshold: 3 }, { threshold: 3 }],
    ['backoff', { backoff: '0s' }, { backoffMs: 0 }],
    ['retry (partial)', { retry: { strategy: 'Exponential' } }, { retry: { ...DEFAULTS.retry, strategy: 'Exponential' } }],
    ['retry (all)', { retry: { strategy: 'Breaker', maxBackoff: '1h', maxAttempts: 5, maxAge: '24h', clientErrors: 'DeadLetter', disableAfter: '6h' } },
      { retry: { strategy: 'Breaker', maxBackoffMs: 3_600_000, maxAttempts: 5, maxAgeMs: 86_400_000, clientErrors: 'DeadLetter', disableAfterMs: 21_600_000 } }],
    ['null counts as absent', { timeout: null, retry: null }, {}],
    ['media types merged and deduplicated', { ignoredMediaTypes: ['a/b', 'c/d'], ignore: { mediaTypes: ['c/d', 'e/f'] } },
      { ignoredMediaTypes: ['a/b', 'c/d', 'e/f'] }],
    ['actions on their own', { ignore: { actions: ['pull', 'mount'] } }, { ignoredActions: ['pull', 'mount'] }],
    ['repository filter', { filter: { repositories: { include: ['team-a/**'], exclude: ['team-a/tmp/*'] } } },
      { repositories: { include: ['team-a/**'], exclude: ['team-a/tmp/*'] } }],
    ['tag filter, include only', { filter: { tags: { include: ['v*'] } } }, { tags: { include: ['v*'], exclude: [] } }],
    ['maxBatchEvents', { maxBatchEvents: 1000 }, { maxBatchEvents: 1000 }],
    ['signing', { signing: { secretKeyRef: { name: 'sig', key: 'secret' } } }, { signing: { algorithm: 'HMAC-SHA256', secretKeyRef: { name: 'sig', key: 'secret' } } }],
    ['signing with Ed25519', { signing: { algorithm: 'Ed25519', secretKeyRef: { name: 'sig', key: 'key' } } }, { signing: { algorithm: 'Ed25519', secretKeyRef: { name: 'sig', key: 'key' } } }],
    ['tls', { tls: { certSecretRef: { name: 'ca' }, insecureSkipVerify: true } }, { tls: { certSecretRef: { name: 'ca' }, insecureSkipVerify: true } }],
    ['tls without insecureSkipVerify', { tls: {} }, { tls: { insecureSkipVerify: false } }],
    ['disabled', { disabled: true }, { disabled: true }],
    ['CloudEvents, Binary by default', { format: 'CloudEvents' }, { format: 'CloudEvents', cloudEvents: { mode: 'Binary' } }],
    ['CloudEvents, Structured and batched', { format: 'CloudEvents', cloudEvents: { mode: 'Structured' }, maxBatchEvents: 50 },
      { format: 'CloudEvents', cloudEvents: { mode: 'Structured' }, maxBatchEvents: 50 }],
    ['CloudEvents source, Binary explicitly', { format: 'CloudEvents', cloudEvents: { mode: 'Binary', source: 'https://registry.example.com/team-a' } },
      { format: 'CloudEvents', cloudEvents: { mode: 'Binary', source: 'https://registry.example.com/team-a' } }],
    ['CloudEvents source as a relative reference', { format: 'CloudEvents', cloudEvents: { source: '//registry.example.com:5000' } },
      { format: 'CloudEvents', cloudEvents: { mode: 'Binary', source: '//registry.example.com:5000' } }],
    ['ce-* headers with format Distribution', { headers: [{ name: 'ce-team', value: 'a' }] }, { headers: [{ name: 'ce-team', value: 'a' }] }],
    ['coalesce', { coalesce: { actions: ['pull'], window: '1m' } }, { coalesce: { actions: ['pull'], windowMs: 60_000 } }],
    ['coalesce, longest window', { coalesce: { actions: ['pull', 'push'], window: '23h60m' } }, { coalesce: { actions: ['pull', 'push'], windowMs: 86_400_000 } }],
    ['coalesce, no actions (coalesces nothing)', { coalesce: { actions: [], window: '500ms' } }, { coalesce: { actions: [], windowMs: 500 } }],
    ['headers', { headers: [{ name: 'X-Token', value: 'abc' }, { name: 'Authorization', valueFrom: { secretKeyRef: { name: 's', key: 'k' } } }] },
      { headers: [{ name: 'X-Token', value: 'abc' }, { name: 'Authorization', secretKeyRef: { name: 's', key: 'k' } }] }],
  ])('%s', (_, spec, expected) => {
    expect(parseNotificationEndpoint(base(spec)).spec).toEqual({ ...DEFAULTS, ...expected });
  });

  it('keeps a namespace, ignores status and other metadata', () => {
    const parsed = parseNotificationEndpoint(base({}));
    expect(parsed).not.toHaveProperty('namespace');
    const withNamespace = { ...base(), metadata: { name: 'a.b-c', namespace: 'team-a', labels: { x: 'y' }, uid: '1' }, status: { pending: 3 } };
    expect(parseNotificationEndpoint(withNamespace)).toMatchObject({ name: 'a.b-c', namespace: 'team-a' });
  });

  it('returns a deeply frozen object and leaves its input alone', () => {
    const input = base({ headers: [{ name: 'X-A', value: 'v' }], ignore: { actions: ['pull'] }, retry: { maxAttempts: 1 } });
    const parsed = parseNotificationEndpoint(input);
    const walk = (value: unknown): void => {
      if (typeof value !== 'object' || value === null) return;
      expect(Object.isFrozen(value)).toBe(true);
      Object.values(value).forEach(walk);
    };
    walk(parsed);
    expect(() => ((parsed.spec.retry as { maxAttempts: number }).maxAttempts = 2)).toThrow(TypeError);
    expect(() => (parsed.spec.headers as unknown[]).push({})).toThrow(TypeError);
    expect(Object.isFrozen(input.spec)).toBe(false);
    expect((input.spec as Json).timeout).toBeUndefined();
  });
});

describe('parseNotificationEndpoint: refusals', () => {
  const long = (n: number): string => 'a'.repeat(n);
  it.each<[string, Json, string, RegExp]>([
    ['missing url', doc({}), 'spec.url', /required/],
    ['missing spec', { apiVersion: API, kind: 'NotificationEndpoint', metadata: { name: 'ep' } }, 'spec', /required/],
    ['spec not a mapping', doc([] as unknown as Json), 'spec', /mapping/],
    ['ftp url', doc({ url: 'ftp://example.com/' }), 'spec.url', /pattern/],
    ['upper-case scheme (the CRD pattern is case-sensitive)', doc({ url: 'HTTPS://example.com/' }), 'spec.url', /pattern/],
    ['url without host', doc({ url: 'http://' }), 'spec.url', /not a valid URL/],
    ['url with a line break', doc({ url: 'https://exa\nmple.com/' }), 'spec.url', /control characters/],
    ['url with a space', doc({ url: 'https://example.com/a b' }), 'spec.url', /spaces/],
    ['url too long', doc({ url: `https://example.com/${long(2030)}` }), 'spec.url', /at most 2048/],
    ['url not a string', doc({ url: 42 }), 'spec.url', /must be a string/],
    ['unknown spec field', base({ retries: 3 }), 'spec.retries', /unknown field.*drop it silently/],
    ['unknown nested field', base({ retry: { max: 1 } }), 'spec.retry.max', /unknown field/],
    ['unknown header field', base({ headers: [{ name: 'X-A', value: 'v', secret: true }] }), 'spec.headers[0].secret', /unknown field/],
    ['unknown top-level field', { ...base(), extra: 1 }, 'extra', /unknown field/],
    ['bare-number timeout (string)', base({ timeout: '500' }), 'spec.timeout', /bare number/],
    ['bare-number timeout (YAML number)', base({ timeout: 500 }), 'spec.timeout', /bare number/],
    ['bad backoff', base({ backoff: '1d' }), 'spec.backoff', /not a duration/],
    ['bad maxBackoff', base({ retry: { maxBackoff: '-1s' } }), 'spec.retry.maxBackoff', /not a duration/],
    ['bad maxAge', base({ retry: { maxAge: '1w' } }), 'spec.retry.maxAge', /not a duration/],
    ['duration too long', base({ timeout: '3000000h' }), 'spec.timeout', /too long/],
    ['duration string too long', base({ timeout: '1s'.repeat(33) }), 'spec.timeout', /at most 64/],
    ['threshold 0', base({ threshold: 0 }), 'spec.threshold', /between 1 and/],
    ['threshold fractional', base({ threshold: 1.5 }), 'spec.threshold', /integer/],
    ['threshold as string', base({ threshold: '10' }), 'spec.threshold', /integer/],
    ['maxAttempts negative', base({ retry: { maxAttempts: -1 } }), 'spec.retry.maxAttempts', /between 0 and/],
    ['unknown strategy', base({ retry: { strategy: 'Linear' } }), 'spec.retry.strategy', /one of Breaker, Exponential/],
    ['maxBatchEvents 0', base({ maxBatchEvents: 0 }), 'spec.maxBatchEvents', /between 1 and 1000/],
    ['maxBatchEvents 1001', base({ maxBatchEvents: 1001 }), 'spec.maxBatchEvents', /between 1 and 1000/],
    ['unknown action', base({ ignore: { actions: ['push', 'tag'] } }), 'spec.ignore.actions[1]', /one of pull, push, mount, delete/],
    ['repeated action (a set)', base({ ignore: { actions: ['push', 'push'] } }), 'spec.ignore.actions[1]', /duplicates entry 0/],
    ['too many actions', base({ ignore: { actions: ['push', 'pull', 'mount', 'delete', 'push'] } }), 'spec.ignore.actions', /at most 4/],
    ['coalesce without window', base({ coalesce: { actions: ['pull'] } }), 'spec.coalesce.window', /required/],
    ['coalesce without actions', base({ coalesce: { window: '1m' } }), 'spec.coalesce.actions', /required/],
    ['coalesce window 0s', base({ coalesce: { actions: ['pull'], window: '0s' } }), 'spec.coalesce.window', /longer than 0s/],
    ['timeout 0s', base({ timeout: '0s' }), 'spec.timeout', /longer than 0s .*the default is 1s/],
    ['coalesce window over 24h', base({ coalesce: { actions: ['pull'], window: '24h1ms' } }), 'spec.coalesce.window', /at most 24h/],
    ['coalesce window a bare number', base({ coalesce: { actions: ['pull'], window: 60 } }), 'spec.coalesce.window', /bare number/],
    ['coalesce unknown action', base({ coalesce: { actions: ['tag'], window: '1m' } }), 'spec.coalesce.actions[0]', /one of pull, push, mount, delete/],
    ['coalesce repeated action', base({ coalesce: { actions: ['pull', 'pull'], window: '1m' } }), 'spec.coalesce.actions[1]', /duplicates entry 0/],
    ['coalesce unknown field', base({ coalesce: { actions: ['pull'], window: '1m', key: 'tag' } }), 'spec.coalesce.key', /unknown field/],
    ['empty glob', base({ filter: { tags: { exclude: [''] } } }), 'spec.filter.tags.exclude[0]', /at least 1/],
    ['too many globs', base({ filter: { repositories: { include: Array(257).fill('a') } } }), 'spec.filter.repositories.include', /at most 256/],
    ['glob too long', base({ filter: { repositories: { include: [long(257)] } } }), 'spec.filter.repositories.include[0]', /at most 256/],
    ['filter not a list', base({ filter: { tags: { include: 'v*' } } }), 'spec.filter.tags.include', /must be a list/],
    ['too many media types', base({ ignoredMediaTypes: Array(65).fill('a/b') }), 'spec.ignoredMediaTypes', /at most 64/],
    ['signing without key', base({ signing: { secretKeyRef: { name: 's' } } }), 'spec.signing.secretKeyRef.key', /required/],
    ['signing without ref', base({ signing: {} }), 'spec.signing.secretKeyRef', /required/],
    ['signing algorithm unknown', base({ signing: { algorithm: 'RSA', secretKeyRef: { name: 's', key: 'k' } } }), 'spec.signing.algorithm', /one of HMAC-SHA256, Ed25519/],
    ['secret name not DNS-1123', base({ signing: { secretKeyRef: { name: 'My_Secret', key: 'k' } } }), 'spec.signing.secretKeyRef.name', /pattern/],
    ['secret key ..', base({ signing: { secretKeyRef: { name: 's', key: '..' } } }), 'spec.signing.secretKeyRef.key', /pattern/],
    ['secret key with a slash', base({ signing: { secretKeyRef: { name: 's', key: 'a/b' } } }), 'spec.signing.secretKeyRef.key', /pattern/],
    ['certSecretRef without name', base({ tls: { certSecretRef: {} } }), 'spec.tls.certSecretRef.name', /required/],
    ['insecureSkipVerify as string', base({ tls: { insecureSkipVerify: 'true' } }), 'spec.tls.insecureSkipVerify', /true or false/],
    ['disabled as string', base({ disabled: 'yes' }), 'spec.disabled', /true or false/],
    ['unknown format', base({ format: 'cloudevents' }), 'spec.format', /one of Distribution, CloudEvents, not "cloudevents"/],
    ['unknown mode', base({ format: 'CloudEvents', cloudEvents: { mode: 'Batch' } }), 'spec.cloudEvents.mode', /one of Binary, Structured/],
    ['Binary (the default) with maxBatchEvents > 1', base({ format: 'CloudEvents', maxBatchEvents: 2 }), 'spec.maxBatchEvents',
      /must be 1 with format: CloudEvents in Binary mode.*cloudEvents.mode: Structured to batch/],
    ['Binary with maxBatchEvents > 1', base({ format: 'CloudEvents', cloudEvents: { mode: 'Binary' }, maxBatchEvents: 1000 }), 'spec.maxBatchEvents', /must be 1/],
    ['cloudEvents without the format', base({ cloudEvents: { mode: 'Structured' } }), 'spec.cloudEvents', /only with format: CloudEvents/],
    ['empty source', base({ format: 'CloudEvents', cloudEvents: { source: '' } }), 'spec.cloudEvents.source', /at least 1/],
    ['source with a space', base({ format: 'CloudEvents', cloudEvents: { source: 'http://a/b c' } }), 'spec.cloudEvents.source', /pattern/],
    ['source with a bad escape', base({ format: 'CloudEvents', cloudEvents: { source: 'urn:a%zz' } }), 'spec.cloudEvents.source', /not a URI reference/],
    ['source with an unclosed IP literal', base({ format: 'CloudEvents', cloudEvents: { source: 'http://[x/' } }), 'spec.cloudEvents.source', /"http:\/\/\[x\/" is not a URI reference/],
    ['source too long', base({ format: 'CloudEvents', cloudEvents: { source: `//${long(2047)}` } }), 'spec.cloudEvents.source', /at most 2048/],
    ['a ce-* header with format CloudEvents', base({ format: 'CloudEvents', headers: [{ name: 'X-A', value: 'v' }, { name: 'CE-Source', value: 'x' }] }),
      'spec.headers[1].name', /"CE-Source" is reserved with format: CloudEvents/],
    ['not a mapping', [] as unknown as Json, '', /mapping/],
    ['wrong kind', { ...base(), kind: 'Endpoint' }, 'kind', /must be NotificationEndpoint/],
    ['wrong apiVersion', { ...base(), apiVersion: 'registry-notifier.io/v1' }, 'apiVersion', /registry-notifier\.io\/v1alpha1/],
    ['missing metadata', { apiVersion: API, kind: 'NotificationEndpoint', spec: {} }, 'metadata', /mapping/],
    ['missing name', { ...base(), metadata: {} }, 'metadata.name', /required/],
    ['upper-case name', { ...base(), metadata: { name: 'Local' } }, 'metadata.name', /DNS-1123 subdomain/],
    ['name too long', { ...base(), metadata: { name: long(254) } }, 'metadata.name', /DNS-1123 subdomain/],
    ['namespace with a dot', { ...base(), metadata: { name: 'ep', namespace: 'a.b' } }, 'metadata.namespace', /DNS-1123 label/],
  ])('%s', (_, input, path, message) => {
    const error = thrown(() => parseNotificationEndpoint(input));
    expect(error).toMatchObject({ name: 'InvalidSpecError', code: 'ERR_INVALID_SPEC', path });
    expect(error.message).toMatch(message);
    if (path !== '') expect(error.message.startsWith(`${path}: `)).toBe(true);
  });
});

describe('parseNotificationEndpoint: headers', () => {
  const header = (...headers: Json[]): Json => base({ headers });
  const ref = { secretKeyRef: { name: 's', key: 'k' } };
  it.each<[string, Json, string, RegExp]>([
    ['Content-Type', header({ name: 'Content-Type', value: 'x' }), 'spec.headers[0].name', /reserved/],
    ['content-length', header({ name: 'content-length', value: '1' }), 'spec.headers[0].name', /reserved/],
    ['HOST', header({ name: 'X-A', value: 'a' }, { name: 'HOST', value: 'h' }), 'spec.headers[1].name', /reserved/],
    ['webhook-id', header({ name: 'webhook-id', value: 'x' }), 'spec.headers[0].name', /reserved/],
    ['Webhook-Signature', header({ name: 'Webhook-Signature', valueFrom: ref }), 'spec.headers[0].name', /reserved/],
    ['both value and valueFrom', header({ name: 'X-A', value: 'v', valueFrom: ref }), 'spec.headers[0]', /exactly one of value and valueFrom/],
    ['neither value nor valueFrom', header({ name: 'X-A' }), 'spec.headers[0]', /exactly one of value and valueFrom/],
    ['same name twice (list map key)', header({ name: 'X-A', value: '1' }, { name: 'X-A', value: '2' }), 'spec.headers[1]', /duplicates entry 0/],
    ['same name in another case', header({ name: 'X-A', value: '1' }, { name: 'x-a', value: '2' }), 'spec.headers[1].name', /case-insensitive/],
    ['missing name', header({ value: 'v' }), 'spec.headers[0].name', /required/],
    ['empty value (a 1.20 API server refuses any empty string)', header({ name: 'X-A', value: '' }), 'spec.headers[0].value', /at least 1/],
    ['empty name', header({ name: '', value: 'v' }), 'spec.headers[0].name', /at least 1/],
    ['valueFrom without secretKeyRef', header({ name: 'X-A', valueFrom: {} }), 'spec.headers[0].valueFrom.secretKeyRef', /required/],
    ['value as a number', header({ name: 'X-A', value: 5 }), 'spec.headers[0].value', /must be a string/],
    ['too many headers', base({ headers: Array.from({ length: 65 }, (_, i) => ({ name: `X-${i}`, value: 'v' })) }), 'spec.headers', /at most 64/],
  ])('refuses %s', (_, input, path, message) => {
    const error = thrown(() => parseNotificationEndpoint(input));
    expect(error.path).toBe(path);
    expect(error.message).toMatch(message);
  });

  it.each([
    ['a name that is not a token', { name: 'Authorization: Bearer s3cr3t-token', value: 'x' }, 'spec.headers[0].name'],
    ['a value with a line break', { name: 'X-A', value: 's3cr3t-token\r\nX-Injected: 1' }, 'spec.headers[0].value'],
    ['a value too long', { name: 'X-A', value: `s3cr3t-token${'x'.repeat(4096)}` }, 'spec.headers[0].value'],
  ])('refuses %s without echoing it', (_, headerSpec, path) => {
    const error = thrown(() => parseNotificationEndpoint(base({ headers: [headerSpec] })));
    expect(error.path).toBe(path);
    expect(error.message).not.toContain('s3cr3t');
  });

  it('accepts every RFC 7230 token character and obs-text in values', () => {
    const name = "!#$%&'*+.^_`|~09AZaz-";
    const spec = parseNotificationEndpoint(base({ headers: [{ name, value: 'tab\there é' }] })).spec;
    expect(spec.headers).toEqual([{ name, value: 'tab\there é' }]);
  });
});

describe('referencedSecrets', () => {
  it('names the Secrets of headers, signing and tls, each once, in that order', () => {
    expect(referencedSecrets({
      url: 'https://hooks.example.com/events',
      headers: [
        { name: 'A', valueFrom: { secretKeyRef: { name: 'token', key: 'a' } } },
        { name: 'B', value: 'literal' },
        { name: 'C', valueFrom: { secretKeyRef: { name: 'token', key: 'c' } } },
      ],
      signing: { secretKeyRef: { name: 'signing', key: 'key' } },
      tls: { certSecretRef: { name: 'tls' } },
    })).toEqual(['token', 'signing', 'tls']);
    expect(referencedSecrets({ url: 'https://hooks.example.com/events' })).toEqual([]);
  });

  it('tolerates any shape, as an object not validated yet may have', () => {
    for (const spec of [undefined, null, 'x', 42, [], { headers: 'x' }, { headers: [null, 7, { valueFrom: 'x' }] }, { signing: { secretKeyRef: { name: 7 } } }, { tls: [] }]) {
      expect(referencedSecrets(spec), JSON.stringify(spec)).toEqual([]);
    }
    expect(referencedSecrets({ headers: [null, { valueFrom: { secretKeyRef: { name: 'ok' } } }], tls: { certSecretRef: { name: '' } } })).toEqual(['ok']);
  });
});

describe('URL credentials', () => {
  it('accepts them but never echoes them', () => {
    expect(parseNotificationEndpoint(doc({ url: 'https://user:hunter2@example.com/x' })).spec.url).toBe('https://user:hunter2@example.com/x');
    const error = thrown(() => parseNotificationEndpoint(doc({ url: `https://user:hunter2@example.com/${'a'.repeat(2048)}` })));
    expect(error.message).not.toContain('hunter2');
  });

  it.each([
    ['https://user:pass@example.com/hook?x=1', 'https://example.com/hook?x=***'],
    ['http://token@127.0.0.1:8090/events', 'http://127.0.0.1:8090/events'],
    ['https://:p%40ss@example.com', 'https://example.com/'],
    ['https://example.com/hook', 'https://example.com/hook'],
    ['http://127.0.0.1:8090', 'http://127.0.0.1:8090'],
    ['http://user:pass@exa mple.com/', '(unparseable URL)'], // unparseable: nothing of it is shown
    ['not a url', '(unparseable URL)'],
  ])('redactUrl(%j) = %j', (url, expected) => {
    expect(redactUrl(url)).toBe(expected);
  });
});

describe('parseNotificationEndpointsYaml', () => {
  const endpoint = (name: string, url = 'http://127.0.0.1:8090/events'): string =>
    `apiVersion: ${API}\nkind: NotificationEndpoint\nmetadata:\n  name: ${name}\nspec:\n  url: ${url}\n`;
  const stream = [
    endpoint('first'), // 0
    'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: other\n', // 1: another group's kind: skipped
    '', // 2: empty
    `${endpoint('bad')}  timeout: "500"\n`, // 3: invalid
    endpoint('wrong-version').replace('v1alpha1', 'v1'), // 4: ours, wrong version
    endpoint('typo').replace('kind: NotificationEndpoint', 'kind: NotificationEndpiont'), // 5: our group, unknown kind
    'spec:\n  url: http://x/\n', // 6: no apiVersion or kind
    'headers: {value: s3cr3t, value: s3cr3t}\n', // 7: unreadable YAML (a repeated key)
    endpoint('first', 'http://127.0.0.1:9000/'), // 8: duplicate name
    endpoint('second'), // 9
    `apiVersion: v1\nkind: List\nitems:\n- ${endpoint('listed').trimEnd().replaceAll('\n', '\n  ')}\n`, // 10
    'headers: [{name: X-A, value: "s3cr3t\n', // 11: unterminated quote (it would swallow any document after it)
  ].join('---\n');

  it('returns the valid endpoints and one error per refused document', () => {
    const { endpoints, errors } = parseNotificationEndpointsYaml(stream, 'endpoints.yaml');
    expect(endpoints.map((e) => e.name)).toEqual(['first', 'second', 'listed']);
    expect(errors.map(({ source, index, name, error }) => ({ source, index, name, path: error.path }))).toEqual([
      { source: 'endpoints.yaml', index: 3, name: 'bad', path: 'spec.timeout' },
      { source: 'endpoints.yaml', index: 4, name: 'wrong-version', path: 'apiVersion' },
      { source: 'endpoints.yaml', index: 5, name: 'typo', path: 'kind' },
      { source: 'endpoints.yaml', index: 6, name: undefined, path: 'kind' },
      { source: 'endpoints.yaml', index: 7, name: undefined, path: '' },
      { source: 'endpoints.yaml', index: 8, name: 'first', path: 'metadata.name' },
      { source: 'endpoints.yaml', index: 11, name: undefined, path: '' },
    ]);
    for (const { error } of errors) expect(error).toBeInstanceOf(InvalidSpecError);
    for (const i of [4, 6]) {
      expect(errors[i]?.error.message).toMatch(/^invalid YAML \([A-Z_]+\): .* at line \d+, column \d+$/);
      expect(errors[i]?.error.message).not.toContain('s3cr3t');
    }
    expect(errors[5]?.error.message).toMatch(/already defined by document 0 of endpoints\.yaml/);
  });

  it('accepts an empty stream and comments only', () => {
    expect(parseNotificationEndpointsYaml('', 'a')).toEqual({ endpoints: [], errors: [] });
    expect(parseNotificationEndpointsYaml('# nothing\n---\n', 'a')).toEqual({ endpoints: [], errors: [] });
  });

  it('reads every example in examples/endpoints', () => {
    const dir = new URL('../../examples/endpoints/', import.meta.url);
    const names = readdirSync(dir).filter((file) => file.endsWith('.yaml')).sort();
    expect(names.length).toBeGreaterThanOrEqual(3);
    const parsed = names.flatMap((file) => {
      const { endpoints, errors } = parseNotificationEndpointsYaml(readFileSync(new URL(file, dir), 'utf8'), file);
      expect(errors).toEqual([]);
      return endpoints;
    });
    expect(parsed.find((e) => e.name === 'local-receiver')?.spec).toEqual({ ...DEFAULTS, url: 'http://127.0.0.1:8090/events' });
    expect(parsed.find((e) => e.name === 'ci-pushes')?.spec.retry).toMatchObject({ strategy: 'Exponential', clientErrors: 'DeadLetter', disableAfterMs: 21_600_000 });
    expect(parsed.find((e) => e.name === 'quiet-pulls')?.spec.coalesce).toEqual({ actions: ['pull'], windowMs: 60_000 });
    expect(parsed.find((e) => e.name === 'audit-log')?.spec.signing).toBeDefined();
    expect(parsed.find((e) => e.name === 'cloudevents-broker')?.spec).toMatchObject({ format: 'CloudEvents', cloudEvents: { mode: 'Structured' }, maxBatchEvents: 20 });
    expect(parsed.find((e) => e.name === 'image-scanner')?.spec.signing?.algorithm).toBe('Ed25519');
  });
});

describe('the CRD and the TypeScript validator agree', () => {
  const crd = parse(readFileSync(new URL('../../crds/registry-notifier.io_notificationendpoints.yaml', import.meta.url), 'utf8')) as Json;
  const crdSpec = crd.spec as Json;
  const version = (crdSpec.versions as Json[])[0] as Json;
  const root = (version.schema as Json).openAPIV3Schema as Json;
  const props = (node: Json): Record<string, Json> => (node.properties ?? {}) as Record<string, Json>;
  const specNode = props(root).spec as Json;

  it('declares the resource as api.md says', () => {
    expect(crd).toMatchObject({ apiVersion: 'apiextensions.k8s.io/v1', kind: 'CustomResourceDefinition', metadata: { name: 'notificationendpoints.registry-notifier.io' } });
    expect(crdSpec).toMatchObject({ group: 'registry-notifier.io', scope: 'Namespaced' });
    expect(crdSpec.names).toEqual({
      kind: 'NotificationEndpoint', listKind: 'NotificationEndpointList', plural: 'notificationendpoints',
      singular: 'notificationendpoint', shortNames: ['nep'], categories: ['registry-notifier'],
    });
    expect(crdSpec.versions).toHaveLength(1);
    expect(version).toMatchObject({ name: 'v1alpha1', served: true, storage: true, subresources: { status: {} } });
    const columns = (version.additionalPrinterColumns as Json[]).map((c) => [c.name, c.type, c.jsonPath]);
    expect(columns).toEqual([
      ['URL', 'string', '.spec.url'],
      ['Ready', 'string', '.status.conditions[?(@.type=="Ready")].status'],
      ['Delivering', 'string', '.status.conditions[?(@.type=="Delivering")].status'],
      ['Pending', 'integer', '.status.pending'],
      ['Delivered', 'integer', '.status.delivered'],
      ['Failed', 'integer', '.status.failed'],
      ['Age', 'date', '.metadata.creationTimestamp'],
    ]);
  });

  // Every keyword the validator honours, compared node by node; a keyword on one side only fails too.
  const compare = (rule: SchemaRule, node: Json, path: string): void => {
    const r = rule as Record<string, unknown>;
    const expected: Json = { type: rule.type };
    for (const key of ['minLength', 'maxLength', 'enum', 'minimum', 'maximum', 'maxItems', 'required', 'default']) {
      if (r[key] !== undefined) expected[key] = r[key];
    }
    if (r.pattern instanceof RegExp) expected.pattern = r.pattern.source;
    if (typeof node.pattern === 'string') node = { ...node, pattern: new RegExp(node.pattern).source }; // `/` vs `\/`
    if (r.listType !== undefined) expected['x-kubernetes-list-type'] = r.listType;
    if (r.mapKeys !== undefined) expected['x-kubernetes-list-map-keys'] = r.mapKeys;
    const actual = Object.fromEntries(Object.entries(node).filter(([key]) => !['description', 'properties', 'items', 'format'].includes(key)));
    expect(actual, path).toEqual(expected);
    if (rule.type === 'array') compare(rule.items, node.items as Json, `${path}[]`);
    if (rule.type === 'object') {
      expect(Object.keys(props(node)).sort(), path).toEqual(Object.keys(rule.properties).sort());
      for (const [key, child] of Object.entries(rule.properties)) compare(child, props(node)[key] as Json, `${path}.${key}`);
    }
  };

  it('has the same spec rules, bounds and defaults as SPEC_SCHEMA', () => {
    compare(SPEC_SCHEMA, specNode, 'spec');
  });

  // What the API server would store for {url} (defaults, then the children of a defaulted parent).
  const applyDefaults = (node: Json, value: Json): Json => {
    for (const [key, child] of Object.entries(props(node))) {
      if (value[key] === undefined && child.default !== undefined) value[key] = structuredClone(child.default);
      if (child.type === 'object' && typeof value[key] === 'object') applyDefaults(child, value[key] as Json);
    }
    return value;
  };
  const defaultPaths = (node: Json, path: string): [string, Json][] =>
    Object.entries(props(node)).flatMap(([key, child]) => [
      ...(child.default !== undefined && child.type !== 'object' ? [[`${path}${key}`, child] as [string, Json]] : []),
      ...defaultPaths(child, `${path}${key}.`),
    ]);

  it('defaults every field as the TypeScript normalisation does', () => {
    const normalised: Record<string, (s: NormalisedSpec) => unknown> = {
      timeout: (s) => s.timeoutMs, threshold: (s) => s.threshold, backoff: (s) => s.backoffMs,
      'retry.strategy': (s) => s.retry.strategy, 'retry.maxBackoff': (s) => s.retry.maxBackoffMs,
      'retry.maxAttempts': (s) => s.retry.maxAttempts, 'retry.maxAge': (s) => s.retry.maxAgeMs,
      'retry.clientErrors': (s) => s.retry.clientErrors, 'retry.disableAfter': (s) => s.retry.disableAfterMs,
      maxBatchEvents: (s) => s.maxBatchEvents, format: (s) => s.format, 'cloudEvents.mode': (s) => s.cloudEvents.mode, 'tls.insecureSkipVerify': (s) => s.tls.insecureSkipVerify, disabled: (s) => s.disabled,
      // Defaulted only inside a signing object, as the API server does.
      'signing.algorithm': (s) => parseNotificationEndpoint(doc({ url: s.url, signing: { secretKeyRef: { name: 's', key: 'k' } } })).spec.signing?.algorithm,
    };
    const crdDefaults = defaultPaths(specNode, '');
    expect(crdDefaults.map(([path]) => path).sort()).toEqual(Object.keys(normalised).sort());
    for (const [path, node] of crdDefaults) {
      const isDuration = node.pattern === DURATION_PATTERN.source;
      expect(normalised[path]?.(DEFAULTS), path).toEqual(isDuration ? parseDuration(node.default as string) : node.default);
    }
    const stored = applyDefaults(specNode, { url: DEFAULTS.url });
    expect(stored.retry).toEqual({ strategy: 'Breaker', maxBackoff: '5m', maxAttempts: 0, maxAge: '0s', clientErrors: 'Retry', disableAfter: '0s' });
    expect(parseNotificationEndpoint(doc(stored)).spec).toEqual(DEFAULTS);
  });

  const walk = (node: Json, path: string, visit: (node: Json, path: string) => void): void => {
    visit(node, path);
    for (const [key, child] of Object.entries(props(node))) walk(child, `${path}.${key}`, visit);
    if (node.items) walk(node.items as Json, `${path}[]`, visit);
  };

  it('describes every property (root metadata excepted: the API server forbids anything there but type)', () => {
    expect(props(root).metadata).toEqual({ type: 'object' });
    walk(root, '', (node, path) => {
      if (path === '.metadata') return;
      expect(typeof node.description === 'string' && (node.description as string).length > 8, `${path} has a description`).toBe(true);
    });
  });

  it('stays structural and within what a 1.20 API server accepts', () => {
    walk(root, '', (node, path) => {
      expect(['object', 'array', 'string', 'integer', 'boolean'], `${path} type`).toContain(node.type);
      for (const banned of ['nullable', 'x-kubernetes-validations', 'oneOf', 'anyOf', 'allOf', 'not', 'additionalProperties', '$ref']) {
        expect(node, path).not.toHaveProperty(banned);
      }
      if (node['x-kubernetes-list-type'] === 'map') {
        const required = ((node.items as Json).required ?? []) as string[];
        for (const key of node['x-kubernetes-list-map-keys'] as string[]) expect(required, `${path} map key ${key}`).toContain(key);
      }
      if (node.type === 'string' && node.enum === undefined && node.format === undefined && path.startsWith('.spec')) {
        expect(node.maxLength, `${path} is bounded`).toBeTypeOf('number');
      }
      if (node.type === 'array') expect(node.maxItems, `${path} is bounded`).toBeTypeOf('number');
    });
    const status = props(props(root).status as Json);
    expect(status.lastError?.maxLength).toBe(256);
    expect(status.insecureSkipVerify?.type).toBe('boolean');
    expect(props(status.conditions?.items as Json).status?.enum).toEqual(['True', 'False', 'Unknown']);
    for (const counter of ['pending', 'delivered', 'failed', 'failures', 'errors', 'deadLettered', 'coalesced']) {
      expect(status[counter], counter).toMatchObject({ type: 'integer', format: 'int64', minimum: 0 });
      expect(status[counter]?.description, counter).toBeTypeOf('string');
    }
    expect(status.failed?.description).toMatch(/failures \+ errors/);
  });
});
