// The NotificationEndpoint spec's schema: the CRD's structural schema rule for rule (a test walks both trees so they
// cannot drift), and the generic checker that judges a document by it, with a JSON path in every refusal.
import { DURATION_PATTERN, parseDuration } from './duration.ts';
import { NotifierError } from '../notifications/errors.ts';

/** Thrown for a document that the CRD or the controller refuses; `path` names the field (`spec.headers[2].name`, '' for the whole document); the message never holds a header value or URL credentials. */
export class InvalidSpecError extends NotifierError {
  /** Where in the document the problem is (`spec.retry.maxAge`); empty for the document as a whole. */
  readonly path: string;
  constructor(path = '', detail = 'invalid NotificationEndpoint', options?: ErrorOptions) {
    super('ERR_INVALID_SPEC', path === '' ? detail : `${path}: ${detail}`, options);
    this.path = path;
  }
}

/** One node of the spec's schema, the CRD's OpenAPI node in TypeScript (`listType` = x-kubernetes-list-type). */
export type SchemaRule =
  | { readonly type: 'string'; readonly minLength?: number; readonly maxLength?: number; readonly pattern?: RegExp; readonly enum?: readonly string[]; readonly default?: string }
  | { readonly type: 'integer'; readonly minimum: number; readonly maximum: number; readonly default?: number }
  | { readonly type: 'boolean'; readonly default?: boolean }
  | { readonly type: 'array'; readonly maxItems: number; readonly items: SchemaRule; readonly listType?: 'set' | 'map'; readonly mapKeys?: readonly string[] }
  | { readonly type: 'object'; readonly properties: Readonly<Record<string, SchemaRule>>; readonly required?: readonly string[]; readonly default?: Readonly<Record<string, never>> };

/** A Kubernetes object name (DNS-1123 subdomain). */
export const DNS1123_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
/** A Kubernetes namespace name (DNS-1123 label). */
export const DNS1123_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const INT32_MAX = 2147483647;
const object = (properties: Record<string, SchemaRule>, required?: string[]): SchemaRule => ({ type: 'object', properties, ...(required && { required }) });
const duration = (fallback: string): SchemaRule => ({ type: 'string', maxLength: 64, pattern: DURATION_PATTERN, default: fallback });
const secretName: SchemaRule = { type: 'string', maxLength: 253, pattern: DNS1123_SUBDOMAIN };
const secretKeyRef = object({ name: secretName, key: { type: 'string', maxLength: 253, pattern: /^\.?[-_a-zA-Z0-9][-._a-zA-Z0-9]*$/ } }, ['name', 'key']);
const strings = (maxItems: number): SchemaRule => ({ type: 'array', maxItems, items: { type: 'string', minLength: 1, maxLength: 256 } });
const globs = object({ include: strings(256), exclude: strings(256) });
const actions: SchemaRule = { type: 'array', maxItems: 4, listType: 'set', items: { type: 'string', enum: ['pull', 'push', 'mount', 'delete'] } };

/** The spec's schema, rule for rule the CRD's `spec` (the drift test walks both); frozen. */
export const SPEC_SCHEMA: SchemaRule = deepFreeze(object({
  url: { type: 'string', maxLength: 2048, pattern: new RegExp('^https?://') },
  headers: { type: 'array', maxItems: 64, listType: 'map', mapKeys: ['name'], items: object({
    name: { type: 'string', minLength: 1, maxLength: 256, pattern: /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/ },
    value: { type: 'string', minLength: 1, maxLength: 4096, pattern: /^[\t\x20-\x7e\x80-\xff]*$/ },
    valueFrom: object({ secretKeyRef }, ['secretKeyRef']),
  }, ['name']) },
  timeout: duration('1s'),
  threshold: { type: 'integer', minimum: 1, maximum: INT32_MAX, default: 10 },
  backoff: duration('1s'),
  retry: { type: 'object', default: {}, properties: {
    strategy: { type: 'string', enum: ['Breaker', 'Exponential'], default: 'Breaker' },
    maxBackoff: duration('5m'),
    maxAttempts: { type: 'integer', minimum: 0, maximum: INT32_MAX, default: 0 },
    maxAge: duration('0s'),
    clientErrors: { type: 'string', enum: ['Retry', 'DeadLetter'], default: 'Retry' },
    disableAfter: duration('0s'),
  } },
  ignoredMediaTypes: strings(64),
  ignore: object({
    mediaTypes: strings(64),
    actions,
  }),
  filter: object({ repositories: globs, tags: globs }),
  coalesce: object({ actions, window: { type: 'string', maxLength: 64, pattern: DURATION_PATTERN } }, ['actions', 'window']),
  maxBatchEvents: { type: 'integer', minimum: 1, maximum: 1000, default: 1 },
  format: { type: 'string', enum: ['Distribution', 'CloudEvents'], default: 'Distribution' },
  cloudEvents: object({
    mode: { type: 'string', enum: ['Binary', 'Structured'], default: 'Binary' },
    // the characters of RFC 3986; whether they form a URI reference the validator asks the cloudevents SDK
    source: { type: 'string', minLength: 1, maxLength: 2048, pattern: new RegExp("^[-A-Za-z0-9._~:/?#@!$&'()*+,;=%\\[\\]]+$") },
  }),
  signing: object({ algorithm: { type: 'string', enum: ['HMAC-SHA256', 'Ed25519'], default: 'HMAC-SHA256' }, secretKeyRef }, ['secretKeyRef']),
  tls: object({ certSecretRef: object({ name: secretName }, ['name']), insecureSkipVerify: { type: 'boolean', default: false } }),
  disabled: { type: 'boolean', default: false },
}, ['url']));

/** A JSON object as parsed. */
export type Json = Record<string, unknown>;
/** Whether a parsed JSON value is an object (not null, not a list). */
export const isObject = (value: unknown): value is Json => typeof value === 'object' && value !== null && !Array.isArray(value);
/** How a value is described in messages: `a list`, `null`, `a string`… */
export const kindOf = (value: unknown): string => (Array.isArray(value) ? 'a list' : value === null ? 'null' : `a ${typeof value}`);
/** A user's string quoted for a message, cut at 64 characters. */
export const shown = (text: string): string => JSON.stringify(text.length > 64 ? `${text.slice(0, 64)}…` : text);
/** Throws `InvalidSpecError` for the field at `path`. */
export function fail(path: string, detail: string, cause?: unknown): never {
  throw new InvalidSpecError(path, detail, cause === undefined ? undefined : { cause });
}

// A duration's own message (it may echo the value: durations are never secrets) explains the bare-number trap.
function durationDetail(value: unknown): string {
  try {
    parseDuration(String(value));
    return 'is not a valid duration';
  } catch (error) {
    return (error as Error).message;
  }
}

function checkString(rule: Extract<SchemaRule, { type: 'string' }>, value: unknown, path: string): string {
  if (rule.pattern === DURATION_PATTERN && typeof value === 'number') fail(path, durationDetail(value));
  if (typeof value !== 'string') return fail(path, `must be a string, not ${kindOf(value)}`);
  const length = [...value].length; // the API server counts characters, not UTF-16 units
  if (rule.minLength !== undefined && length < rule.minLength) fail(path, `must have at least ${rule.minLength} character(s)`);
  if (rule.maxLength !== undefined && length > rule.maxLength) fail(path, `must have at most ${rule.maxLength} characters`);
  if (rule.enum && !rule.enum.includes(value)) fail(path, `must be one of ${rule.enum.join(', ')}, not ${shown(value)}`);
  if (rule.pattern && !rule.pattern.test(value)) {
    fail(path, rule.pattern === DURATION_PATTERN ? durationDetail(value) : `does not match the pattern ${rule.pattern.source}`);
  }
  return value;
}

function checkInteger(rule: Extract<SchemaRule, { type: 'integer' }>, value: unknown, path: string): number {
  if (typeof value !== 'number' || !Number.isInteger(value)) return fail(path, `must be an integer, not ${kindOf(value)}`);
  if (value < rule.minimum || value > rule.maximum) fail(path, `must be between ${rule.minimum} and ${rule.maximum}, not ${value}`);
  return value;
}

function checkArray(rule: Extract<SchemaRule, { type: 'array' }>, value: unknown, path: string): unknown[] {
  if (!Array.isArray(value)) return fail(path, `must be a list, not ${kindOf(value)}`);
  if (value.length > rule.maxItems) fail(path, `must have at most ${rule.maxItems} entries, not ${value.length}`);
  const items = value.map((item, i) => check(rule.items, item, `${path}[${i}]`));
  const keyOf = (item: unknown): unknown => (rule.listType === 'map' ? (item as Json)[rule.mapKeys?.[0] ?? 'name'] : item);
  const seen = new Map<unknown, number>();
  items.forEach((item, i) => {
    if (rule.listType === undefined) return;
    const first = seen.get(keyOf(item));
    if (first !== undefined) fail(`${path}[${i}]`, `duplicates entry ${first}; each entry must be unique`);
    seen.set(keyOf(item), i);
  });
  return items;
}

function checkObject(rule: Extract<SchemaRule, { type: 'object' }>, value: unknown, path: string): Json {
  if (!isObject(value)) return fail(path, `must be a mapping (object), not ${kindOf(value)}`);
  for (const key of Object.keys(value)) {
    if (!Object.hasOwn(rule.properties, key)) {
      fail(`${path}.${key}`, `unknown field (the API server would drop it silently); known: ${Object.keys(rule.properties).join(', ')}`);
    }
  }
  const out: Json = {};
  for (const [key, child] of Object.entries(rule.properties)) {
    // null counts as absent, as the API server prunes a null before defaulting
    const given = value[key] ?? ('default' in child ? structuredClone(child.default) : undefined);
    if (given === undefined) {
      if (rule.required?.includes(key)) fail(`${path}.${key}`, 'is required');
      continue;
    }
    out[key] = check(child, given, `${path}.${key}`);
  }
  return out;
}

/** Validates `value` against `rule` and returns it with the schema's defaults applied; throws `InvalidSpecError`. */
export function check(rule: SchemaRule, value: unknown, path: string): unknown {
  switch (rule.type) {
    case 'string': return checkString(rule, value, path);
    case 'integer': return checkInteger(rule, value, path);
    case 'boolean': return typeof value === 'boolean' ? value : fail(path, `must be true or false, not ${kindOf(value)}`);
    case 'array': return checkArray(rule, value, path);
    case 'object': return checkObject(rule, value, path);
  }
}

/** Freezes an object graph (RegExps excepted) and returns it. */
export function deepFreeze<T>(value: T): T {
  // RegExps are left alone: freezing one shared with another module would be a surprise
  if (typeof value === 'object' && value !== null && !(value instanceof RegExp) && !Object.isFrozen(value)) {
    for (const child of Object.values(value)) deepFreeze(child);
    Object.freeze(value);
  }
  return value;
}
