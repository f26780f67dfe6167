// The NotificationEndpoint resource (api.md sections 1 and 2): its types, and one validator for both modes.
// SPEC_SCHEMA (spec-schema.ts) mirrors the CRD's structural schema rule for rule (a test compares them), so a file given to
// `--endpoints` is judged as `kubectl apply` judges it; the controller's semantic checks follow. Unknown fields
// are refused here, where the API server would prune them silently. Messages never echo a header value or a URL.
import { parseAllDocuments } from 'yaml';
import type { SigningAlgorithm } from '../notifications/signing.ts';
import { parseDuration } from './duration.ts';
import { isCloudEventsSource, type CloudEventsMode } from '../notifications/cloud-events.ts';
import { check, deepFreeze, DNS1123_LABEL, DNS1123_SUBDOMAIN, fail, InvalidSpecError, isObject, kindOf, shown, SPEC_SCHEMA, type Json } from './spec-schema.ts';

export { InvalidSpecError, SPEC_SCHEMA, type SchemaRule } from './spec-schema.ts';
export type { CloudEventsMode } from '../notifications/cloud-events.ts';

/** Group, version, kind and plural of the resource, as the CRD declares them. */
export const NOTIFICATION_ENDPOINT_RESOURCE = Object.freeze({
  group: 'registry-notifier.io',
  version: 'v1alpha1',
  apiVersion: 'registry-notifier.io/v1alpha1',
  kind: 'NotificationEndpoint',
  plural: 'notificationendpoints',
} as const);

/**
 * The Namespace annotation whose comma-separated globs are the repositories the endpoints in that namespace may
 * receive under `--tenancy namespace` (api.md §9).
 */
export const REPOSITORIES_ANNOTATION = 'registry-notifier.io/repositories';

/** A new value of this annotation asks for the endpoint's dead letters to be replayed once (api.md §11; Flux's requestedAt pattern). */
export const REPLAY_REQUESTED_ANNOTATION = 'registry-notifier.io/replay-requested-at';

/** A new value of this annotation asks an `AutoDisabled` endpoint to send again, once (api.md §11). */
export const RESUME_REQUESTED_ANNOTATION = 'registry-notifier.io/resume-requested-at';

/** An event action that `ignore.actions` may list. */
export type EventAction = 'pull' | 'push' | 'mount' | 'delete';
/** What goes on the wire (api.md §8 `format`). */
export type WireFormat = 'Distribution' | 'CloudEvents';
/** How failed deliveries are retried (api.md `retry.strategy`). */
export type RetryStrategy = 'Breaker' | 'Exponential';
/** What a 4xx other than 408, 409, 425 and 429 does (api.md `retry.clientErrors`). */
export type ClientErrors = 'Retry' | 'DeadLetter';
/** A key of a Secret: in the cluster, in the endpoint's namespace; standalone, the file `<--secrets-dir>/name/key`. */
export interface SecretKeySelector { name: string; key: string }
/** One configured header, as written: exactly one of `value` and `valueFrom`. */
export interface HeaderSpec { name: string; value?: string; valueFrom?: { secretKeyRef: SecretKeySelector } }
/** Include/exclude globs (`*` within a segment, `**` across segments). */
export interface GlobFilterSpec { include?: string[]; exclude?: string[] }

/** The spec as a user writes it: only `url` is required; durations are Go-notation strings. */
export interface NotificationEndpointSpec {
  url: string;
  headers?: HeaderSpec[];
  timeout?: string; threshold?: number; backoff?: string;
  retry?: { strategy?: RetryStrategy; maxBackoff?: string; maxAttempts?: number; maxAge?: string; clientErrors?: ClientErrors; disableAfter?: string };
  ignoredMediaTypes?: string[];
  ignore?: { mediaTypes?: string[]; actions?: EventAction[] };
  filter?: { repositories?: GlobFilterSpec; tags?: GlobFilterSpec };
  /** api.md §11: per window, only the first event per (action, repository, tag or digest) is delivered. */
  coalesce?: { actions: EventAction[]; window: string };
  maxBatchEvents?: number;
  format?: WireFormat;
  cloudEvents?: { mode?: CloudEventsMode; source?: string };
  signing?: { algorithm?: SigningAlgorithm; secretKeyRef: SecretKeySelector };
  tls?: { certSecretRef?: { name: string }; insecureSkipVerify?: boolean };
  disabled?: boolean;
}

/** A metav1.Condition; `message` is omitted rather than empty, as a 1.20 API server refuses any empty string. */
export interface Condition {
  type: 'Ready' | 'Delivering' | (string & {}); status: 'True' | 'False' | 'Unknown'; observedGeneration?: number;
  lastTransitionTime: string; reason: string; message?: string;
}
/** Reasons of the Ready condition (True: Configured; False: the others). */
export type ReadyReason = 'Configured' | 'InvalidSpec' | 'SecretNotFound' | 'Disabled' | 'EndpointRefused' | 'ReconcileFailed' | 'NoRepositoryGrant' | 'AutoDisabled';
/** Reasons of the Delivering condition (True: Succeeded, Idle; False: Failing; Unknown: NotRunning). */
export type DeliveringReason = 'Succeeded' | 'Idle' | 'Failing' | 'NotRunning';

/**
 * The status subresource (api.md section 2); counters are int64, times RFC 3339, lastError at most 256 characters.
 * `failed` = `failures` + `errors`: every attempt that did not succeed.
 */
export interface NotificationEndpointStatus {
  observedGeneration?: number;
  conditions?: Condition[];
  pending?: number; delivered?: number; failed?: number; failures?: number; errors?: number; deadLettered?: number;
  /** Events coalesced by `spec.coalesce`: never queued nor delivered. */
  coalesced?: number;
  responses?: { code: number; count: number }[];
  lastSuccessTime?: string; lastFailureTime?: string; lastError?: string;
  insecureSkipVerify?: boolean;
  /** With `signing.algorithm: Ed25519`: the public key receivers verify with, `whpk_` + base64. */
  signingPublicKey?: string;
  /** The `registry-notifier.io/replay-requested-at` value last handled (a request equal to it is not handled again). */
  lastHandledReplayAt?: string;
  /** The `registry-notifier.io/resume-requested-at` value last handled. */
  lastHandledResumeAt?: string;
}

/** The whole resource as stored in the cluster or written in an `--endpoints` file. */
export interface NotificationEndpoint {
  apiVersion: typeof NOTIFICATION_ENDPOINT_RESOURCE.apiVersion;
  kind: typeof NOTIFICATION_ENDPOINT_RESOURCE.kind;
  metadata: { name: string; namespace?: string; [field: string]: unknown };
  spec: NotificationEndpointSpec;
  status?: NotificationEndpointStatus;
}

/** A header after validation: a literal value, or a Secret reference still to be resolved. */
export type NormalisedHeader =
  | { readonly name: string; readonly value: string }
  | { readonly name: string; readonly secretKeyRef: Readonly<SecretKeySelector> };
/** Globs after defaulting: both lists always present, possibly empty. */
export interface NormalisedGlobFilter { readonly include: readonly string[]; readonly exclude: readonly string[] }

/** The spec with every default applied and durations in milliseconds; deeply frozen. */
export interface NormalisedSpec {
  readonly url: string;
  readonly headers: readonly NormalisedHeader[];
  readonly timeoutMs: number;
  readonly threshold: number;
  readonly backoffMs: number;
  readonly retry: {
    readonly strategy: RetryStrategy; readonly maxBackoffMs: number; readonly maxAttempts: number; readonly maxAgeMs: number;
    readonly clientErrors: ClientErrors; readonly disableAfterMs: number;
  };
  readonly ignoredMediaTypes: readonly string[];
  readonly ignoredActions: readonly EventAction[];
  readonly repositories: NormalisedGlobFilter;
  readonly tags: NormalisedGlobFilter;
  /** Present only when `spec.coalesce` is set: its actions, and its window in milliseconds (> 0, at most `MAX_COALESCE_WINDOW_MS`). */
  readonly coalesce?: { readonly actions: readonly EventAction[]; readonly windowMs: number };
  readonly maxBatchEvents: number;
  readonly format: WireFormat;
  /** Applies with `format: CloudEvents` only; `mode` defaults to Binary, no `source` means `//` + the event's host. */
  readonly cloudEvents: { readonly mode: CloudEventsMode; readonly source?: string };
  readonly signing?: { readonly algorithm: SigningAlgorithm; readonly secretKeyRef: Readonly<SecretKeySelector> };
  readonly tls: { readonly certSecretRef?: { readonly name: string }; readonly insecureSkipVerify: boolean };
  readonly disabled: boolean;
}

/** A validated endpoint: identity (`namespace` only when the document set one) and normalised spec; deeply frozen. */
export interface ParsedEndpoint { readonly name: string; readonly namespace?: string; readonly spec: NormalisedSpec }

const RESERVED_HEADERS = new Set(['content-type', 'content-length', 'host']);

function normaliseHeaders(headers: HeaderSpec[]): NormalisedHeader[] {
  const seen = new Map<string, number>();
  return headers.map(({ name, value, valueFrom }, i) => {
    const path = `spec.headers[${i}]`;
    const lower = name.toLowerCase();
    if (RESERVED_HEADERS.has(lower) || lower.startsWith('webhook-')) {
      fail(`${path}.name`, `${shown(name)} is reserved: Content-Type, Content-Length, Host and webhook-* are set by registry-notifier`);
    }
    const first = seen.get(lower);
    if (first !== undefined) fail(`${path}.name`, `${shown(name)} repeats spec.headers[${first}] (names are case-insensitive)`);
    seen.set(lower, i);
    if ((value === undefined) === (valueFrom === undefined)) fail(path, 'set exactly one of value and valueFrom');
    return valueFrom ? { name, secretKeyRef: valueFrom.secretKeyRef } : { name, value: value ?? '' };
  });
}

// CloudEvents (api.md §8 and §12): a block without the format is a mistake, binary mode carries one event per POST,
// the source must be a URI reference, and `ce-*` headers would clash with the attributes.
function checkCloudEvents(spec: Defaulted): NormalisedSpec['cloudEvents'] {
  const { mode = 'Binary', source } = spec.cloudEvents ?? {};
  if (spec.format !== 'CloudEvents') {
    if (spec.cloudEvents) fail('spec.cloudEvents', `applies only with format: CloudEvents, and format is ${spec.format}`);
    return { mode };
  }
  if (mode === 'Binary' && spec.maxBatchEvents > 1) {
    fail('spec.maxBatchEvents', 'must be 1 with format: CloudEvents in Binary mode (the default), which sends one event per POST with its attributes as ce-* headers; set cloudEvents.mode: Structured to batch');
  }
  if (source !== undefined && !isCloudEventsSource(source)) fail('spec.cloudEvents.source', `${shown(source)} is not a URI reference (RFC 3986)`);
  (spec.headers ?? []).forEach(({ name }, i) => {
    if (name.toLowerCase().startsWith('ce-')) fail(`spec.headers[${i}].name`, `${shown(name)} is reserved with format: CloudEvents: ce-* headers carry its attributes`);
  });
  return { mode, ...(source !== undefined && { source }) };
}

function checkUrl(url: string): void {
  // new URL() would quietly drop tabs and line breaks that the HTTP client then refuses or sends
  // eslint-disable-next-line no-control-regex -- matching control characters is the point
  if (/[\s\x00-\x1f\x7f]/.test(url)) fail('spec.url', 'must not contain spaces or control characters');
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch (error) {
    return fail('spec.url', 'is not a valid URL', error);
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') fail('spec.url', 'must use http:// or https://');
  if (parsed.hostname === '') fail('spec.url', 'must name a host');
}

const toMs = (text: string, path: string): number => {
  try {
    return parseDuration(text);
  } catch (error) {
    return fail(path, (error as Error).message, error);
  }
};

/** The longest `coalesce.window` (24h): a window is kept in memory only, and a day covers a daily rebuild or pull. */
export const MAX_COALESCE_WINDOW_MS = 24 * 3600_000;

function coalesceWindow(text: string): number {
  const path = 'spec.coalesce.window';
  const ms = toMs(text, path);
  if (ms <= 0) fail(path, 'must be longer than 0s');
  if (ms > MAX_COALESCE_WINDOW_MS) fail(path, `must be at most 24h, not ${shown(text)}`);
  return ms;
}

// An attempt with no time to run fails before it is sent (Distribution reads 0 as its default, 1s; say so instead).
function attemptTimeout(text: string): number {
  const ms = toMs(text, 'spec.timeout');
  if (ms <= 0) fail('spec.timeout', 'must be longer than 0s (every attempt would fail before it is sent; the default is 1s)');
  return ms;
}

type Defaulted = NotificationEndpointSpec & {
  timeout: string; threshold: number; backoff: string; maxBatchEvents: number; format: WireFormat; disabled: boolean;
  retry: { strategy: RetryStrategy; maxBackoff: string; maxAttempts: number; maxAge: string; clientErrors: ClientErrors; disableAfter: string };
};

function normaliseSpec(spec: Defaulted): NormalisedSpec {
  checkUrl(spec.url);
  const { retry, filter, tls } = spec;
  return {
    url: spec.url,
    headers: normaliseHeaders(spec.headers ?? []),
    timeoutMs: attemptTimeout(spec.timeout),
    threshold: spec.threshold,
    backoffMs: toMs(spec.backoff, 'spec.backoff'),
    retry: {
      strategy: retry.strategy,
      maxBackoffMs: toMs(retry.maxBackoff, 'spec.retry.maxBackoff'),
      maxAttempts: retry.maxAttempts,
      maxAgeMs: toMs(retry.maxAge, 'spec.retry.maxAge'),
      clientErrors: retry.clientErrors,
      disableAfterMs: toMs(retry.disableAfter, 'spec.retry.disableAfter'),
    },
    ignoredMediaTypes: [...new Set([...(spec.ignoredMediaTypes ?? []), ...(spec.ignore?.mediaTypes ?? [])])],
    ignoredActions: spec.ignore?.actions ?? [],
    repositories: { include: filter?.repositories?.include ?? [], exclude: filter?.repositories?.exclude ?? [] },
    tags: { include: filter?.tags?.include ?? [], exclude: filter?.tags?.exclude ?? [] },
    ...(spec.coalesce && { coalesce: { actions: spec.coalesce.actions, windowMs: coalesceWindow(spec.coalesce.window) } }),
    maxBatchEvents: spec.maxBatchEvents,
    format: spec.format,
    cloudEvents: checkCloudEvents(spec),
    ...(spec.signing && { signing: { algorithm: spec.signing.algorithm ?? 'HMAC-SHA256', secretKeyRef: spec.signing.secretKeyRef } }),
    tls: { ...(tls?.certSecretRef && { certSecretRef: tls.certSecretRef }), insecureSkipVerify: tls?.insecureSkipVerify ?? false },
    disabled: spec.disabled,
  };
}

function checkMetadata(metadata: unknown): { name: string; namespace?: string } {
  if (!isObject(metadata)) return fail('metadata', `must be a mapping with a name, not ${kindOf(metadata)}`);
  const { name, namespace } = metadata;
  if (typeof name !== 'string' || name === '') return fail('metadata.name', 'is required');
  if (name.length > 253 || !DNS1123_SUBDOMAIN.test(name)) {
    fail('metadata.name', `${shown(name)} must be a DNS-1123 subdomain: lower-case letters, digits, '-' and '.', at most 253`);
  }
  if (namespace === undefined || namespace === null) return { name };
  if (typeof namespace !== 'string' || namespace.length > 63 || !DNS1123_LABEL.test(namespace)) {
    fail('metadata.namespace', 'must be a DNS-1123 label: lower-case letters, digits and -, at most 63');
  }
  return { name, namespace: namespace as string };
}

const TOP_LEVEL = new Set(['apiVersion', 'kind', 'metadata', 'spec', 'status']);

/** Validates one NotificationEndpoint document as the CRD schema and the controller would, applies the defaults and returns it normalised and deeply frozen; throws InvalidSpecError (status is ignored). */
export function parseNotificationEndpoint(doc: unknown): ParsedEndpoint {
  const { apiVersion, kind } = NOTIFICATION_ENDPOINT_RESOURCE;
  if (!isObject(doc)) return fail('', `a NotificationEndpoint must be a mapping (object), not ${kindOf(doc)}`);
  const unknown = Object.keys(doc).find((key) => !TOP_LEVEL.has(key));
  if (unknown !== undefined) fail(unknown, 'unknown field; a document has apiVersion, kind, metadata, spec and status');
  if (doc.kind !== kind) fail('kind', `must be ${kind}`);
  if (doc.apiVersion !== apiVersion) fail('apiVersion', `must be ${apiVersion}`);
  const identity = checkMetadata(doc.metadata);
  if (doc.spec === undefined || doc.spec === null) fail('spec', 'is required');
  const spec = normaliseSpec(check(SPEC_SCHEMA, doc.spec, 'spec') as Defaulted);
  return deepFreeze({ ...identity, spec });
}

/**
 * Names of the Secrets a spec as written references (headers' `valueFrom`, `signing`, `tls.certSecretRef`), each
 * once, in that order. Tolerates any shape, so the spec of an object not validated yet can be asked too.
 */
export function referencedSecrets(spec: unknown): string[] {
  const names = new Set<string>();
  const at = (value: unknown, ...path: string[]): unknown =>
    path.reduce<unknown>((node, key) => (isObject(node) ? node[key] : undefined), value);
  const add = (name: unknown): void => void (typeof name === 'string' && name !== '' && names.add(name));
  const headers = at(spec, 'headers');
  if (Array.isArray(headers)) for (const header of headers) add(at(header, 'valueFrom', 'secretKeyRef', 'name'));
  add(at(spec, 'signing', 'secretKeyRef', 'name'));
  add(at(spec, 'tls', 'certSecretRef', 'name'));
  return [...names];
}

/** One document of a YAML stream that was refused; `index` counts documents from 0. */
export interface EndpointsYamlError { source: string; index: number; name?: string; error: InvalidSpecError }

// `kubectl get nep -o yaml` writes a `kind: List`; its items are read as documents of their own.
const LIST_KINDS = new Set<unknown>(['List', `${NOTIFICATION_ENDPOINT_RESOURCE.kind}List`]);

// A document is someone else's (skipped) only when both its kind and its API group are not ours.
function isForeign(doc: Json): boolean {
  const { apiVersion, kind } = doc;
  if (typeof apiVersion !== 'string' || typeof kind !== 'string') return false;
  const group = apiVersion.includes('/') ? apiVersion.slice(0, apiVersion.indexOf('/')) : '';
  return kind !== NOTIFICATION_ENDPOINT_RESOURCE.kind && group !== NOTIFICATION_ENDPOINT_RESOURCE.group;
}

function yamlFailure(errors: readonly { code: string; message: string }[]): InvalidSpecError {
  const first = errors[0];
  // only the first line: later lines quote the source, which may hold a header value
  const where = first?.message.split('\n')[0]?.replace(/:$/, '') ?? 'unreadable';
  return new InvalidSpecError('', `invalid YAML (${first?.code ?? 'ERROR'}): ${where}`, { cause: first });
}

/** Parses a multi-document YAML stream: valid NotificationEndpoints (and the items of a `kind: List`) in order, one error per refused document (a bad one never hides the others); empty documents and other groups' kinds are skipped; a name seen twice is refused the second time. */
export function parseNotificationEndpointsYaml(text: string, source: string): { endpoints: ParsedEndpoint[]; errors: EndpointsYamlError[] } {
  const endpoints: ParsedEndpoint[] = [];
  const errors: EndpointsYamlError[] = [];
  const firstIndex = new Map<string, number>();
  const accept = (doc: unknown, index: number): void => {
    if (isObject(doc) && isForeign(doc)) return;
    const name = isObject(doc) && isObject(doc.metadata) && typeof doc.metadata.name === 'string' ? doc.metadata.name : undefined;
    try {
      const endpoint = parseNotificationEndpoint(doc);
      const first = firstIndex.get(endpoint.name);
      if (first !== undefined) fail('metadata.name', `${shown(endpoint.name)} is already defined by document ${first} of ${source}`);
      firstIndex.set(endpoint.name, index);
      endpoints.push(endpoint);
    } catch (error) {
      if (!(error instanceof InvalidSpecError)) throw error;
      errors.push({ source, index, ...(name !== undefined && { name }), error });
    }
  };
  [...parseAllDocuments(text)].forEach((document, index) => {
    if (document.errors.length > 0) return void errors.push({ source, index, error: yamlFailure(document.errors) });
    let doc: unknown;
    try {
      doc = document.toJS();
    } catch (error) {
      return void errors.push({ source, index, error: new InvalidSpecError('', 'unreadable YAML document', { cause: error }) });
    }
    if (doc === null || doc === undefined) return;
    if (isObject(doc) && LIST_KINDS.has(doc.kind) && Array.isArray(doc.items)) doc.items.forEach((item) => accept(item, index));
    else accept(doc, index);
  });
  return { endpoints, errors };
}

