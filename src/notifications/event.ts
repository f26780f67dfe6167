/**
 * The registry's notification event, shaped exactly as CNCF Distribution writes it (notifications/event.go).
 * Fields the engine does not know are kept: events pass through intact, only ever read, never rewritten; what goes on
 * the wire is the event's own JSON text (`IncomingEvent.json`), never a re-serialisation of this object.
 */

/** Media type of Distribution 2.x envelopes, and the one registry-notifier sends to every endpoint. */
export const EVENTS_MEDIA_TYPE = 'application/vnd.docker.distribution.events.v1+json';

/** Media type of Distribution 3.x envelopes: the same envelope, accepted on ingest. */
export const EVENTS_MEDIA_TYPE_V2 = 'application/vnd.docker.distribution.events.v2+json';

/** The four actions Distribution emits; others are accepted and passed on as plain strings. */
export const KNOWN_ACTIONS = ['pull', 'push', 'mount', 'delete'] as const;

/** One of Distribution's actions, or any other string a newer registry may send. */
export type Action = (typeof KNOWN_ACTIONS)[number] | (string & {});

/** A content descriptor plus where it lives: Distribution's `event.Target`. */
export interface Target {
  mediaType?: string;
  size?: number;
  digest?: string;
  length?: number;
  repository?: string;
  url?: string;
  tag?: string;
  fromRepository?: string;
  references?: unknown[];
  [field: string]: unknown;
}

/** The request that caused the event: Distribution's `RequestRecord`. */
export interface RequestRecord {
  id?: string;
  addr?: string;
  host?: string;
  method?: string;
  useragent?: string;
  [field: string]: unknown;
}

/** Who caused the event: Distribution's `ActorRecord`. */
export interface ActorRecord {
  name?: string;
  [field: string]: unknown;
}

/** Which registry instance emitted the event: Distribution's `SourceRecord`. */
export interface SourceRecord {
  addr?: string;
  instanceID?: string;
  [field: string]: unknown;
}

/** One registry event; `id`, `action` and `target` are always present, everything else as the registry sent it. */
export interface Event {
  id: string;
  timestamp?: string;
  action: Action;
  target: Target;
  request?: RequestRecord;
  actor?: ActorRecord;
  source?: SourceRecord;
  [field: string]: unknown;
}

/** The body of every notification request: `{"events": [...]}`. */
export interface Envelope {
  events: Event[];
}

/**
 * An event as it enters the engine: the parsed object, which filters read, and its JSON text, which is what
 * receivers get: the registry's own bytes when it came through the ingest (numbers, escapes and field order
 * exactly as sent), else `JSON.stringify` of the object.
 */
export interface IncomingEvent {
  readonly event: Event;
  readonly json: string;
}

/** An event made or parsed in this process, with `JSON.stringify` of it as its wire text. */
export function incomingEvent(event: Event): IncomingEvent {
  return { event, json: JSON.stringify(event) };
}

/** Builds the envelope body from already encoded events, in the order given. */
export function envelopeBody(eventsJson: readonly string[]): string {
  return `{"events":[${eventsJson.join(',')}]}`;
}
