// Registry-shaped events for engine tests, built from the real captured fixtures.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Event } from '../../src/notifications/event.ts';

/** Where the real captured envelopes live (shared, read-only). */
export const FIXTURES_DIR = join(import.meta.dirname, '../../../shared/fixtures/registry-events');

/** One captured request: the headers the registry sent and the exact body. */
export interface Fixture {
  file: string;
  headers: Record<string, string>;
  body: { events: Event[] };
  raw: string;
}

/** Every captured fixture (2.8 at the top level, 3.0 under `v3/`), in file-name order. */
export function fixtures(): Fixture[] {
  const files = [
    ...readdirSync(FIXTURES_DIR).filter((f) => f.endsWith('.json')),
    ...readdirSync(join(FIXTURES_DIR, 'v3')).filter((f) => f.endsWith('.json')).map((f) => `v3/${f}`),
  ].sort();
  return files.map((file) => {
    const raw = readFileSync(join(FIXTURES_DIR, file), 'utf8');
    const parsed = JSON.parse(raw) as { headers: Record<string, string>; body: { events: Event[] } };
    return { file, headers: parsed.headers, body: parsed.body, raw };
  });
}

/** The first event of a fixture file, e.g. `fixtureEvent('push-manifest-tagged.json')`. */
export function fixtureEvent(file: string): Event {
  const found = fixtures().find((f) => f.file === file);
  if (!found?.body.events[0]) throw new Error(`no fixture ${file}`);
  return found.body.events[0];
}

/** `n` distinct push events shaped like the real manifest push, ids `<prefix>-0` … in order. */
export function makeEvents(n: number, prefix = 'ev', overrides: Partial<Event['target']> = {}): Event[] {
  const template = fixtureEvent('push-manifest-tagged.json');
  return Array.from({ length: n }, (_, i) => ({
    ...template,
    id: `${prefix}-${i}`,
    target: { ...template.target, ...overrides },
  }));
}
