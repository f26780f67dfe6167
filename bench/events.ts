// Registry-shaped events for the benchmarks, cloned from a real captured Distribution 2.8 push notification.
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Event } from '../src/notifications/event.ts';

/** The repository's captured envelopes (test/fixtures/registry-events; provenance in its README.md). */
const FIXTURES = join(import.meta.dirname, '../test/fixtures/registry-events');

/** The captured fixture the benchmark events are cloned from. */
export const TEMPLATE_FIXTURE = join(FIXTURES, 'push-manifest-tagged.json');

/** The Distribution 3.0 capture of the same push: `target.references` make its JSON about 1 KB. */
export const V3_TEMPLATE_FIXTURE = join(FIXTURES, 'v3/push-manifest-tagged.json');

/** The first event of a captured envelope (by default the 2.8 manifest push). */
export function loadTemplate(path: string = TEMPLATE_FIXTURE): Event {
  const parsed = JSON.parse(readFileSync(path, 'utf8')) as { body: { events: Event[] } };
  const event = parsed.body.events[0];
  if (!event) throw new Error(`${path}: no event in body.events`);
  return event;
}

/**
 * A fresh event shaped exactly like `template` with its own UUIDs (event id and request id), as the registry
 * would send for a new push; nested objects are new too, so nothing is shared with the template except strings.
 */
export function cloneEvent(template: Event): Event {
  return {
    ...template,
    id: randomUUID(),
    target: { ...template.target },
    request: { ...template.request, id: randomUUID() },
    actor: { ...template.actor },
    source: { ...template.source },
  };
}

/** Fills a new array with `n` fresh events; the caller writes it and lets it go. */
export function eventChunk(template: Event, n: number): Event[] {
  const chunk = new Array<Event>(n);
  for (let i = 0; i < n; i++) chunk[i] = cloneEvent(template);
  return chunk;
}
