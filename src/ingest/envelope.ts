import type { Event, IncomingEvent } from '../notifications/event.ts';
import { IngestError } from './ingest-error.ts';

/**
 * How deeply an event may nest (the event object is level 1; a registry's events reach 4). JSON.parse reads
 * any depth, but whoever serialises the object again (a JSON.stringify recurses) overflows the stack at a few
 * thousand levels: refusing deeper events here keeps that a 400 for the sender instead of a failure later.
 */
export const MAX_EVENT_DEPTH = 256;

/**
 * Reads a notification envelope structurally (api.md §4): an object with an `events` array of objects, each
 * with a non-empty string `id`, a string `action` and a `target` object, nested at most `MAX_EVENT_DEPTH`
 * levels. Everything else, unknown actions and fields included, is accepted and kept: a 400 makes the registry
 * resend the same envelope forever. Each event comes with its own bytes from the body as its JSON text, so what
 * a receiver gets is what the registry sent (numbers beyond double precision, Go's `\u003c` escapes, field
 * order). Throws `IngestError` 400 with the JSON path of the first problem; its message never quotes the body.
 */
export function parseEnvelope(raw: Buffer | string): IncomingEvent[] {
  const body = typeof raw === 'string' ? Buffer.from(raw, 'utf8') : raw;
  let parsed: unknown;
  try {
    parsed = JSON.parse(body.toString('utf8'));
  } catch (error) {
    // V8's message quotes the text around the problem, which may be binary or a secret: give the position only.
    const at = /position (\d+)/.exec((error as Error).message)?.[1];
    throw new IngestError(400, 'InvalidJSON', `body is not valid JSON${at === undefined ? '' : ` (at position ${at})`}`, { path: '$' });
  }
  if (!isObject(parsed)) throw invalid('$', 'body must be a JSON object with an "events" array');
  const events = parsed.events;
  if (!Array.isArray(events)) throw invalid('$.events', '"events" must be an array');
  events.forEach((event: unknown, i) => {
    const at = `$.events[${i}]`;
    if (!isObject(event)) throw invalid(at, 'each event must be an object');
    if (typeof event.id !== 'string' || event.id === '') throw invalid(`${at}.id`, '"id" must be a non-empty string');
    if (typeof event.action !== 'string') throw invalid(`${at}.action`, '"action" must be a string');
    if (!isObject(event.target)) throw invalid(`${at}.target`, '"target" must be an object');
    if (deeperThan(event, MAX_EVENT_DEPTH)) throw invalid(at, `the event is nested deeper than ${MAX_EVENT_DEPTH} levels`);
  });
  const spans = eventSpans(body);
  if (spans.length !== events.length) throw new Error(`envelope scan found ${spans.length} events, JSON.parse ${events.length}`);
  // Each text is copied out of the body (not a view of it), so a queued event does not keep the whole body alive.
  return spans.map(([start, end], i) => ({ event: events[i] as Event, json: body.toString('utf8', start, end) }));
}

function invalid(path: string, message: string): IngestError {
  return new IngestError(400, 'InvalidEnvelope', message, { path });
}

/** Whether `root` (level 1) holds objects or arrays below level `limit`; iterative, so any depth is safe. */
function deeperThan(root: object, limit: number): boolean {
  const stack: [value: object, depth: number][] = [[root, 1]];
  for (let entry = stack.pop(); entry !== undefined; entry = stack.pop()) {
    const [value, depth] = entry;
    for (const child of Array.isArray(value) ? value : Object.values(value)) {
      if (typeof child !== 'object' || child === null) continue;
      if (depth + 1 > limit) return true;
      stack.push([child as object, depth + 1]);
    }
  }
  return false;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

// JSON's structural bytes; UTF-8 never uses these byte values inside a multi-byte character, so scanning the
// bytes is safe whatever the text holds.
const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const COMMA = 0x2c;
const OPEN_OBJECT = 0x7b;
const CLOSE_OBJECT = 0x7d;
const OPEN_ARRAY = 0x5b;
const CLOSE_ARRAY = 0x5d;
const EVENTS_KEY = Buffer.from('"events"');

/**
 * The byte ranges of the elements of the body's top-level `events` array: of its last `events` member, the
 * one JSON.parse keeps. Only called on a body JSON.parse accepted, so it need not validate anything.
 */
function eventSpans(body: Buffer): [number, number][] {
  let events: [number, number] | undefined;
  let i = skipSpace(body, 0) + 1; // past the top-level `{`
  for (;;) {
    i = skipSpace(body, i);
    if (body[i] === CLOSE_OBJECT) break;
    const keyStart = i;
    i = skipString(body, i);
    const keyEnd = i;
    i = skipSpace(body, skipSpace(body, i) + 1); // past the `:`
    const valueStart = i;
    i = skipValue(body, i);
    if (isEventsKey(body, keyStart, keyEnd)) events = [valueStart, i];
    i = skipSpace(body, i);
    if (body[i] === COMMA) i++;
  }
  const spans: [number, number][] = [];
  if (events === undefined) return spans;
  let j = events[0] + 1; // past the `[`
  for (;;) {
    j = skipSpace(body, j);
    if (body[j] === CLOSE_ARRAY) break;
    const start = j;
    j = skipValue(body, j);
    spans.push([start, j]);
    j = skipSpace(body, j);
    if (body[j] === COMMA) j++;
  }
  return spans;
}

function isEventsKey(body: Buffer, start: number, end: number): boolean {
  if (body.subarray(start, end).equals(EVENTS_KEY)) return true;
  // A key written with escapes (`"\u0065vents"`) is the same key to JSON.parse.
  return body.indexOf(BACKSLASH, start) < end && JSON.parse(body.toString('utf8', start, end)) === 'events';
}

function skipSpace(body: Buffer, i: number): number {
  for (let c = body[i]; c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09; c = body[++i]);
  return i;
}

/** From an opening quote to just past its closing quote. */
function skipString(body: Buffer, i: number): number {
  for (i++; body[i] !== QUOTE; i += body[i] === BACKSLASH ? 2 : 1);
  return i + 1;
}

/** From the first byte of a value to just past its last. */
function skipValue(body: Buffer, i: number): number {
  const first = body[i];
  if (first === QUOTE) return skipString(body, i);
  if (first === OPEN_OBJECT || first === OPEN_ARRAY) {
    let depth = 0;
    do {
      const c = body[i];
      if (c === QUOTE) {
        i = skipString(body, i);
        continue;
      }
      if (c === OPEN_OBJECT || c === OPEN_ARRAY) depth++;
      else if (c === CLOSE_OBJECT || c === CLOSE_ARRAY) depth--;
      i++;
    } while (depth > 0);
    return i;
  }
  // A number, true, false or null: up to the next delimiter.
  for (let c = body[i]; c !== undefined && c !== COMMA && c !== CLOSE_OBJECT && c !== CLOSE_ARRAY && c !== 0x20 && c !== 0x0a && c !== 0x0d && c !== 0x09; c = body[++i]);
  return i;
}
