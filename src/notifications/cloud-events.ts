/**
 * CloudEvents 1.0 output (api.md §8): each registry event becomes a CloudEvent whose `data` is the event's own JSON
 * text, sent in the HTTP protocol binding's binary or structured content mode (a JSON array of structured events
 * when the endpoint batches). The cloudevents SDK validates the attributes and names the headers and media types;
 * its transport is never used. The bodies are built here around the registry's bytes rather than by the SDK's
 * `HTTP.binary` / `HTTP.structured`: those re-encode `data` with JSON.stringify (numbers beyond double precision,
 * `1.0`, Go's `\u003c` escapes and field order would change) and rewrite `time` through `Date` (nanoseconds lost).
 */
import { CloudEvent, CONSTANTS, V1, ValidationError } from 'cloudevents';
import type { Event } from './event.ts';
import { EndpointConfigError } from './errors.ts';
import type { QueuedEvent } from './sink.ts';

/** The HTTP binding's content mode: `Binary` (attributes in `ce-*` headers, one event per POST) or `Structured`. */
export type CloudEventsMode = 'Binary' | 'Structured';

/** An endpoint's CloudEvents settings (`spec.cloudEvents`). */
export interface CloudEventsOptions {
  readonly mode: CloudEventsMode;
  /** The `source` attribute, a URI reference; default `//` + the event's `request.host`. */
  readonly source?: string;
}

/** What an HTTP sink encodes with: the endpoint's settings, and whether it batches (`maxBatchEvents` > 1). */
export interface CloudEventsEncoding extends CloudEventsOptions {
  readonly batch: boolean;
}

/** The prefix of every `type`: `io.registry-notifier.push`, `.pull`, `.delete`, `.mount`, or any other action as sent. */
export const CLOUD_EVENT_TYPE_PREFIX = 'io.registry-notifier.';

/**
 * The `source` of an event whose `request.host` is missing or not usable in a URI reference (only made-up events:
 * Distribution always sends the host its client asked for), when the endpoint configures none.
 */
export const FALLBACK_SOURCE = 'urn:registry-notifier';

/** The context attributes of one event, in the order a structured event writes them. */
export interface CloudEventAttributes {
  specversion: typeof V1;
  id: string;
  source: string;
  type: string;
  subject?: string;
  time?: string;
  datacontenttype: typeof CONSTANTS.MIME_JSON;
}

/** Whether the SDK accepts `value` as a CloudEvents `source` (an RFC 3986 URI reference). */
export function isCloudEventsSource(value: string): boolean {
  return accepted({ source: value });
}

/**
 * The attributes of one registry event (api.md §8): `id` the registry's event id, `type` the prefix + action,
 * `subject` `repository:tag`, else `repository@digest`, else `repository`, `time` the event's timestamp as written,
 * `source` the configured one or `//` + `request.host`. Never throws for an event the ingest took: a timestamp the
 * SDK refuses is left out (`time` is optional; `data` still has it), a host it refuses gives `FALLBACK_SOURCE`.
 */
export function cloudEventAttributes(id: string, event: Partial<Event>, source?: string): CloudEventAttributes {
  const target = event.target ?? {};
  const text = (value: unknown): string | undefined => (typeof value === 'string' && value !== '' ? value : undefined);
  const repository = text(target.repository);
  const tag = text(target.tag);
  const digest = text(target.digest);
  const host = text(event.request?.host);
  const subject = repository && (tag ? `${repository}:${tag}` : digest ? `${repository}@${digest}` : repository);
  const type = `${CLOUD_EVENT_TYPE_PREFIX}${typeof event.action === 'string' ? event.action : ''}`;
  const build = (source: string, time: string | undefined): CloudEventAttributes => ({
    specversion: V1, id, source, type, ...(subject && { subject }), ...(time && { time }), datacontenttype: CONSTANTS.MIME_JSON,
  });
  const attributes = build(source ?? (host ? `//${host}` : FALLBACK_SOURCE), text(event.timestamp));
  if (accepted(attributes)) return attributes;
  // Only what came from the event can be refused (a configured source was checked with the spec): repair that.
  const { source: given, time } = attributes;
  return build(accepted({ source: given }) ? given : FALLBACK_SOURCE, time !== undefined && accepted({ time }) ? time : undefined);
}

/** One POST's body and the headers that go with it (`content-type` included). */
export interface EncodedRequest {
  body: string;
  headers: Record<string, string>;
}

/**
 * Encodes the events of one POST as CloudEvents: in `Binary` mode the event's JSON text is the body and its
 * attributes are `ce-*` headers (percent-encoded as the binding requires); in `Structured` mode the body is one
 * `application/cloudevents+json` object, or with `batch` an `application/cloudevents-batch+json` array (always,
 * even of one event, so a receiver sees one shape per endpoint). Throws `EndpointConfigError` for a binary
 * encoding that batches, and for several events given to a binary one.
 */
export class CloudEventsEncoder {
  readonly #options: CloudEventsEncoding;

  constructor(options: CloudEventsEncoding) {
    if (options.batch) checkBatching(options.mode, Number.POSITIVE_INFINITY);
    this.#options = options;
  }

  /** The body and headers of one POST holding `items`, in order. */
  encode(items: readonly QueuedEvent[]): EncodedRequest {
    const { mode, source, batch } = this.#options;
    const attributes = (item: QueuedEvent): CloudEventAttributes => cloudEventAttributes(item.id, JSON.parse(item.json) as Partial<Event>, source);
    if (mode === 'Binary') {
      if (items.length !== 1) throw new EndpointConfigError(`a binary-mode CloudEvents POST carries one event, not ${items.length}`);
      const item = items[0]!;
      return { body: item.json, headers: binaryHeaders(attributes(item)) };
    }
    if (!batch && items.length === 1) {
      const item = items[0]!;
      return { body: structured(attributes(item), item.json), headers: { [CONSTANTS.HEADER_CONTENT_TYPE]: CONSTANTS.MIME_CE_JSON } };
    }
    const body = `[${items.map((item) => structured(attributes(item), item.json)).join(',')}]`;
    return { body, headers: { [CONSTANTS.HEADER_CONTENT_TYPE]: CONSTANTS.MIME_CE_BATCH } };
  }
}

/** Throws `EndpointConfigError` unless `mode` can carry `maxBatchEvents` events per POST (`Binary` carries one). */
export function checkBatching(mode: CloudEventsMode, maxBatchEvents: number): void {
  if (mode === 'Binary' && maxBatchEvents > 1) {
    throw new EndpointConfigError('CloudEvents binary mode sends one event per POST: set maxBatchEvents to 1, or use structured mode to batch');
  }
}

// A structured event: the attributes through JSON.stringify (strings only, so nothing is lost), then the event's
// own JSON text spliced in as `data`, byte for byte (datacontenttype is application/json: `data` is JSON itself).
function structured(attributes: CloudEventAttributes, json: string): string {
  return `${JSON.stringify(attributes).slice(0, -1)},"data":${json}}`;
}

// The binary mode's headers: `datacontenttype` is the Content-Type, every other attribute a `ce-*` header.
function binaryHeaders(attributes: CloudEventAttributes): Record<string, string> {
  const { CE_HEADERS: CE, HEADER_CONTENT_TYPE } = CONSTANTS;
  const { specversion, id, source, type, subject, time, datacontenttype } = attributes;
  return {
    [HEADER_CONTENT_TYPE]: datacontenttype,
    [CE.SPEC_VERSION]: specversion,
    [CE.ID]: percentEncoded(id),
    [CE.SOURCE]: percentEncoded(source),
    [CE.TYPE]: percentEncoded(type),
    ...(subject !== undefined && { [CE.SUBJECT]: percentEncoded(subject) }),
    ...(time !== undefined && { [CE.TIME]: percentEncoded(time) }),
  };
}

// HTTP binding §3.1.3.2: space, `"`, `%` and everything outside printable ASCII are sent as the %XX of their UTF-8
// bytes. The SDK leaves header values as they are, so this is done here. Registry names, tags, digests and hosts
// never hold such characters; an unknown action or a made-up event may.
function percentEncoded(value: string): string {
  return value.replace(/[^\x21-\x7e]|["%]/gu, (char) => [...Buffer.from(char, 'utf8')].map((byte) => `%${byte.toString(16).toUpperCase().padStart(2, '0')}`).join(''));
}

// A CloudEvent the SDK's schema would judge, the required attributes fixed to valid values unless given.
const PROBE = { specversion: V1, id: 'probe', type: 'probe', source: '/' };

// Whether the SDK's validation (its JSON schema: URI reference, RFC 3339 time, non-empty strings) accepts these attributes.
function accepted(attributes: Partial<CloudEventAttributes>): boolean {
  try {
    new CloudEvent({ ...PROBE, ...attributes });
    return true;
  } catch (error) {
    if (error instanceof ValidationError) return false;
    throw error;
  }
}
