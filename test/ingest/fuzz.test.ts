// Posts a few thousand random and mutated envelopes (seeded, so a failure reproduces) to a running ingest and
// checks each answer against how the case was made, never against a second validator: the generator records what
// each mutation broke (events[2].action is a number: a 400 at $.events[2].action; a wrong token: 401), and for
// bytes it mangled without knowing the result (truncated, flipped) only the contract's general properties are
// checked: a 400 names a place in the document, a 202 counts the events JSON.parse finds. Afterwards the server
// must still work, every accepted event must have reached the receiver exactly once, and the heap must not have grown.
import { Readable } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import { NO_FILTER } from '../../src/notifications/filter.ts';
import { until } from '../support/wait.ts';
import { BODY_LIMIT, FULL_REPOSITORY, makeCase, SEED, type Case } from './fuzz-cases.ts';
import { collectGarbage, envelope, event, post, startIngest, type Answer, type Harness } from './support.ts';

const CASES = 3000;
const CONCURRENCY = 8;
// ep1 takes only FULL_REPOSITORY and never delivers (disabled), so it fills up and the ingest answers 503.
const FULL_LIMIT = 60;

/** Whether a JSON path (`$`, `.name`, `[n]`) names a place in `doc`: every step but the last exists, the last one's container does. */
function locates(doc: unknown, path: string): boolean {
  if (!path.startsWith('$')) return false;
  const steps = [...path.slice(1).matchAll(/\.([A-Za-z_$][\w$]*)|\[(\d+)\]|(.)/g)];
  let here: unknown = doc;
  for (const [i, [, name, index, junk]] of steps.entries()) {
    if (junk !== undefined) return false;
    const last = i === steps.length - 1;
    if (name !== undefined) {
      if (typeof here !== 'object' || here === null || Array.isArray(here)) return false;
      if (!last && !Object.hasOwn(here, name)) return false;
      here = (here as Record<string, unknown>)[name];
    } else {
      if (!Array.isArray(here) || Number(index) >= here.length) return false;
      here = here[Number(index)];
    }
  }
  return true;
}

function check(c: Case, answer: Answer): { accepted: number } {
  const where = `seed ${SEED} case ${c.index} [${c.description.join(', ')}] ${c.contentType} ${c.authorization?.slice(0, 12)} ${c.body.subarray(0, 160).toString('latin1')}`;
  const said = `${where}\n${answer.status} ${answer.text.slice(0, 300)}`;
  expect(answer.headers['content-type'], where).toBe('application/json');
  const error = (answer.json as { error?: Record<string, unknown> } | undefined)?.error;
  if (c.refusals.length > 0) {
    expect(c.refusals, said).toContain(answer.status);
    expect(error, said).toEqual({ code: expect.any(String), message: expect.any(String) });
    return { accepted: 0 };
  }
  if (answer.status === 503 && c.known.kind !== 'invalid') {
    // Only a full queue may refuse an envelope the ingest can read, and it must say so.
    expect(answer.json, said).toEqual({ error: { code: 'QueueFull', message: expect.any(String) } });
    expect(answer.headers['retry-after'], said).toMatch(/^\d+$/);
    return { accepted: 0 };
  }
  if (c.known.kind === 'invalid') {
    expect(answer.status, said).toBe(400);
    // Any of the first broken event's problems may be the one named: the order of the checks is not the contract.
    expect(error, said).toEqual({ code: 'InvalidEnvelope', message: expect.any(String), path: expect.any(String) });
    expect(c.known.paths, said).toContain(error!.path);
    return { accepted: 0 };
  }
  let doc: unknown;
  let parses = true;
  try {
    doc = JSON.parse(c.body.toString('utf8'));
  } catch {
    parses = false;
  }
  if (c.known.kind === 'unknown') {
    expect([202, 400], said).toContain(answer.status);
    if (answer.status === 400) {
      expect(error, said).toEqual({ code: parses ? 'InvalidEnvelope' : 'InvalidJSON', message: expect.any(String), path: expect.any(String) });
      if (!parses) expect(error!.path, said).toBe('$');
      else expect(locates(doc, error!.path as string), `${said}\npath ${String(error!.path)} names no place in the document`).toBe(true);
      return { accepted: 0 };
    }
    expect(parses, said).toBe(true);
  }
  expect(answer.status, said).toBe(202);
  const counts = answer.json as { accepted: number; duplicates: number };
  expect(Object.keys(counts), said).toEqual(['accepted', 'duplicates']);
  const events = c.known.kind === 'valid' ? c.known.events : (doc as { events: unknown[] }).events.length;
  expect(counts.accepted + counts.duplicates, said).toBe(events);
  return counts;
}

describe('ingest fuzz', () => {
  let h: Harness | undefined;
  afterEach(async () => {
    await h?.close();
  });

  it(`answers ${CASES} random and mutated envelopes as the contract says, keeps serving, keeps its memory`, { timeout: 60_000 }, async () => {
    h = await startIngest({
      maxBodySize: BODY_LIMIT,
      limits: { perEndpoint: FULL_LIMIT, total: 100_000 },
      endpoints: [
        { maxBatchEvents: 100 },
        { disabled: true, filter: { ...NO_FILTER, repositories: { include: [FULL_REPOSITORY], exclude: [] } } },
      ],
    });
    const harness = h;
    const receiver = harness.receivers[0]!;
    const statuses = new Map<number, number>();
    // What the generator made, so a change to it that stops making some kind of case fails here.
    const kinds = new Map<string, number>();
    const tally = (c: Case): void => {
      const kind = c.refusals.length > 0 ? `refused ${c.refusals.join('+')}`
        : c.known.kind === 'invalid' && c.known.paths.length > 1 ? 'invalid, several problems in the first broken event'
        : c.known.kind === 'invalid' && c.description.some((d) => d.includes('levels deep')) ? 'invalid, nested deep'
        : c.known.kind === 'valid' && c.description.some((d) => / nested \d+ levels$/.test(d)) ? 'valid, nested'
        : c.known.kind;
      kinds.set(kind, (kinds.get(kind) ?? 0) + 1);
    };
    let accepted = 0;
    let heapBefore = 0;

    let next = 0;
    const worker = async (): Promise<void> => {
      for (let index = next++; index < CASES; index = next++) {
        if (index === 300) {
          collectGarbage();
          heapBefore = process.memoryUsage().heapUsed;
        }
        const c = makeCase(index);
        tally(c);
        const body = c.chunked ? Readable.from([c.body.subarray(0, c.body.length >> 1), c.body.subarray(c.body.length >> 1)]) : c.body;
        let answer: Answer;
        try {
          answer = await post(harness.ingest.url, body, { contentType: c.contentType, authorization: c.authorization });
        } catch (error) {
          throw new Error(`seed ${SEED} case ${c.index} [${c.description.join(', ')}]: no answer: ${String(error)}`, { cause: error });
        }
        statuses.set(answer.status, (statuses.get(answer.status) ?? 0) + 1);
        accepted += check(c, answer).accepted;
      }
    };
    await Promise.all(Array.from({ length: CONCURRENCY }, worker));

    // Every kind of case was made, every kind of answer occurred, and nothing else.
    for (const kind of ['valid', 'valid, nested', 'invalid', 'invalid, nested deep', 'invalid, several problems in the first broken event', 'unknown', 'refused 401', 'refused 413', 'refused 415']) {
      expect(kinds.get(kind) ?? 0, `${kind} cases (${JSON.stringify([...kinds])})`).toBeGreaterThanOrEqual(10);
    }
    expect([...statuses.keys()].sort()).toEqual([202, 400, 401, 413, 415, 503]);
    expect(harness.heard.requests.length).toBe(CASES);
    expect(harness.heard.events.reduce((a, b) => a + b, 0)).toBe(accepted);

    // Still serving.
    const after = await post(harness.ingest.url, envelope([event('fuzz-after')]));
    expect(after.text).toBe('{"accepted":1,"duplicates":0}');
    accepted += 1;

    // Every accepted event reached ep0's receiver, once.
    const ep0 = harness.endpoints.get('ep0')!;
    await until(() => ep0.pending === 0 && receiver.events({ acceptedOnly: true }).length >= accepted, 'ep0 to deliver everything');
    const ids = receiver.events({ acceptedOnly: true }).map((e) => e.id);
    expect(ids.length).toBe(accepted);
    expect(new Set(ids).size).toBe(ids.length);
    expect(harness.endpoints.get('ep1')!.pending).toBeLessThanOrEqual(FULL_LIMIT);

    receiver.clear();
    collectGarbage();
    const growth = process.memoryUsage().heapUsed - heapBefore;
    expect(growth, `heap grew by ${(growth / 2 ** 20).toFixed(1)} MiB`).toBeLessThan(50 * 2 ** 20);
  });
});
