// Registry-shaped events for engine tests, built from the real captured fixtures in test/fixtures/registry-events
// (their provenance is in its README.md).
import { readdirSync, readFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import type { Event } from '../../src/notifications/event.ts';

/** Where the real captured envelopes live, in the repository (never edited: see its README.md). */
export const FIXTURES_DIR = join(import.meta.dirname, '../fixtures/registry-events');

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

/** One of the newer Distribution 3.0 captures of `v3/extra/`: the headers, the parsed body and the exact request bytes. */
export interface ExtraFixture {
  /** e.g. `v3/extra/push-index.json`. */
  file: string;
  headers: Record<string, string>;
  body: { events: Event[] };
  /** The request body exactly as the registry sent it (`v3/extra/raw/<name>.body`): 3-space indent, `\u003c`-style escapes. */
  raw: Buffer;
}

/** Every capture of `v3/extra/` (an OCI index push, a manifest delete by digest and the tag delete it causes), in file-name order. */
export function extraFixtures(): ExtraFixture[] {
  const dir = join(FIXTURES_DIR, 'v3/extra');
  return readdirSync(dir).filter((f) => f.endsWith('.json')).sort().map((f) => {
    const parsed = JSON.parse(readFileSync(join(dir, f), 'utf8')) as { headers: Record<string, string>; body: { events: Event[] } };
    return { file: `v3/extra/${f}`, headers: parsed.headers, body: parsed.body, raw: rawBody(basename(f, '.json')) };
  });
}

/** The exact bytes of the request body `v3/extra/raw/<name>.body`, e.g. `rawBody('push-index')`; throws for an unknown name. */
export function rawBody(name: string): Buffer {
  return readFileSync(join(FIXTURES_DIR, 'v3/extra/raw', `${name}.body`));
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
