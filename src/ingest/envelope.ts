import type { Event } from '../notifications/event.ts';
import { IngestError } from './ingest-error.ts';

/**
 * How deeply an event may nest (the event object is level 1; a registry's events reach 4). JSON.parse reads
 * any depth, but every event is re-serialised for its endpoints and JSON.stringify recurses: a few thousand
 * levels overflow the stack. Refusing deeper events here keeps that a 400 for the sender instead of a failure
 * halfway through queueing.
 */
export const MAX_EVENT_DEPTH = 256;

/**
 * Reads a notification envelope structurally (api.md §4): an object with an `events` array of objects, each
 * with a non-empty string `id`, a string `action` and a `target` object, nested at most `MAX_EVENT_DEPTH`
 * levels. Everything else, unknown actions and fields included, is accepted and kept: a 400 makes the registry
 * resend the same envelope forever. Throws `IngestError` 400 with the JSON path of the first problem.
 */
export function parseEnvelope(text: string): Event[] {
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch (error) {
    throw new IngestError(400, 'InvalidJSON', `body is not valid JSON: ${(error as Error).message}`, { path: '$' });
  }
  if (!isObject(body)) throw invalid('$', 'body must be a JSON object with an "events" array');
  const events = body.events;
  if (!Array.isArray(events)) throw invalid('$.events', '"events" must be an array');
  events.forEach((event: unknown, i) => {
    const at = `$.events[${i}]`;
    if (!isObject(event)) throw invalid(at, 'each event must be an object');
    if (typeof event.id !== 'string' || event.id === '') throw invalid(`${at}.id`, '"id" must be a non-empty string');
    if (typeof event.action !== 'string') throw invalid(`${at}.action`, '"action" must be a string');
    if (!isObject(event.target)) throw invalid(`${at}.target`, '"target" must be an object');
    if (deeperThan(event, MAX_EVENT_DEPTH)) throw invalid(at, `the event is nested deeper than ${MAX_EVENT_DEPTH} levels`);
  });
  return events as Event[];
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
