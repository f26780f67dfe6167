import type { Event } from '../notifications/event.ts';
import { IngestError } from './ingest-error.ts';

/**
 * Reads a notification envelope structurally (api.md §4): an object with an `events` array of objects, each
 * with a non-empty string `id`, a string `action` and a `target` object. Everything else, unknown actions and
 * fields included, is accepted and kept: a 400 makes the registry resend the same envelope forever. Throws
 * `IngestError` 400 with the JSON path of the first problem.
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
  });
  return events as Event[];
}

function invalid(path: string, message: string): IngestError {
  return new IngestError(400, 'InvalidEnvelope', message, { path });
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
