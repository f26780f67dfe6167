// Posts a few thousand random and mutated envelopes (seeded, so a failure reproduces) to a running ingest and
// checks each answer against an independent reading of the request: the status the contract demands, the
// error path for a 400, and for a 202 the counts. Afterwards the server must still work, every accepted event
// must have reached the receiver exactly once, and the heap must not have grown.
import { Readable } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import { MAX_EVENT_DEPTH } from '../../src/ingest/envelope.ts';
import { EVENTS_MEDIA_TYPE, EVENTS_MEDIA_TYPE_V2 } from '../../src/notifications/event.ts';
import { NO_FILTER } from '../../src/notifications/filter.ts';
import { fixtures } from '../support/events.ts';
import { until } from '../support/wait.ts';
import { collectGarbage, envelope, event, post, startIngest, TOKEN, type Answer, type Harness } from './support.ts';

const SEED = 0x5eed_2026;
const CASES = 3000;
const CONCURRENCY = 8;
const BODY_LIMIT = 16 * 1024;
// ep1 takes only this repository and never delivers (disabled), so it fills up and the ingest answers 503.
const FULL_REPOSITORY = 'fuzz/full';
const FULL_LIMIT = 60;

/** mulberry32: small, fast, and the same sequence for the same seed everywhere. */
class Random {
  #state: number;
  constructor(seed: number) {
    this.#state = seed >>> 0;
  }
  next(): number {
    this.#state = (this.#state + 0x6d2b79f5) >>> 0;
    let t = this.#state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  int(n: number): number {
    return Math.floor(this.next() * n);
  }
  chance(p: number): boolean {
    return this.next() < p;
  }
  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)]!;
  }
}

const STRINGS = ['', 'push', 'pull', 'delete', 'mount', 'é', '\u0000', '\ud800', '😀', '"\\', 'a'.repeat(300), '<script>', '\u2028'];
const NUMBERS = [0, -0, 1, -1, 0.5, 2 ** 53 + 1, 1e308, -1e308, 5e-324, 123456789];

function randomJson(r: Random, depth = 0): unknown {
  switch (r.int(depth > 3 ? 7 : 9)) {
    case 0: return null;
    case 1: return r.chance(0.5);
    case 2: return r.pick(NUMBERS);
    case 3: return r.next() * 1e6;
    case 4: return r.pick(STRINGS);
    case 5: return Array.from({ length: r.int(8) }, () => String.fromCharCode(r.int(0x10000))).join('');
    case 6: return `s-${r.int(1000)}`;
    case 7: return Array.from({ length: r.int(4) }, () => randomJson(r, depth + 1));
    default: return Object.fromEntries(Array.from({ length: r.int(4) }, () => [r.pick(['id', 'action', 'target', 'events', 'x', '__proto__', '']), randomJson(r, depth + 1)]));
  }
}

// Deep nesting is spliced into the text after JSON.stringify, which itself could not write it.
const DEEP = /"@deep:(\d+)"/g;
const deepText = (levels: number): string => `${'[{"n":'.repeat(levels >> 1)}${levels % 2 ? '[0]' : '0'}${'}]'.repeat(levels >> 1)}`;

/** Every place in a JSON value that can be replaced or deleted: the root, each object field, each array item. */
function slots(root: unknown): { parent: Record<string, unknown> | unknown[] | undefined; key: string | number }[] {
  const out: { parent: Record<string, unknown> | unknown[] | undefined; key: string | number }[] = [{ parent: undefined, key: 0 }];
  const stack: unknown[] = [root];
  while (stack.length > 0) {
    const value = stack.pop();
    if (Array.isArray(value)) value.forEach((item, i) => (out.push({ parent: value, key: i }), stack.push(item)));
    else if (typeof value === 'object' && value !== null) {
      for (const [key, item] of Object.entries(value)) {
        out.push({ parent: value as Record<string, unknown>, key });
        stack.push(item);
      }
    }
  }
  return out;
}

interface Case {
  index: number;
  description: string[];
  body: Buffer;
  chunked: boolean;
  contentType: string | null;
  authorization: string | null;
  authorized: boolean;
}

const FIXTURES = fixtures();
const idPool: string[] = FIXTURES.flatMap((f) => f.body.events.map((e) => e.id));

function makeCase(index: number): Case {
  const r = new Random(SEED ^ Math.imul(index + 1, 0x9e3779b1));
  const description: string[] = [];
  // Start from 1-4 real events, ids fresh or reused (duplicates), now and then a huge or odd id.
  const events = Array.from({ length: 1 + r.int(4) }, () => {
    const base = structuredClone(r.pick(FIXTURES).body.events[0]!) as Record<string, unknown>;
    const roll = r.next();
    base.id = roll < 0.2 ? r.pick(idPool) : roll < 0.23 ? `big-${index}-${'x'.repeat(4000 + r.int(8000))}` : roll < 0.26 ? `ü-${index}-\ud83d` : `fz-${index}-${r.int(1e9)}`;
    idPool.push(base.id as string);
    if (r.chance(0.05)) {
      (base.target as Record<string, unknown>).repository = FULL_REPOSITORY;
      description.push('full-repository');
    }
    return base;
  });
  let doc: unknown = { events };
  for (let m = r.int(4); m > 0; m--) {
    const all = slots(doc);
    const { parent, key } = r.pick(all);
    const op = r.int(5);
    const replacement = op === 3 ? `@deep:${r.chance(0.5) ? MAX_EVENT_DEPTH - 4 + r.int(8) : 500 + r.int(7000)}` : randomJson(r);
    if (op === 0 && parent !== undefined) {
      description.push(`delete ${String(key)}`);
      if (Array.isArray(parent)) parent.splice(key as number, 1);
      else delete parent[key as string];
    } else if (op === 4 && parent !== undefined && !Array.isArray(parent)) {
      description.push('add field');
      parent[`extra-${r.int(100)}`] = randomJson(r);
    } else if (parent === undefined) {
      if (r.chance(0.3)) {
        description.push('replace root');
        doc = replacement;
      }
    } else {
      description.push(`replace ${String(key)}${op === 3 ? ' with deep nesting' : ''}`);
      (parent as Record<string | number, unknown>)[key] = replacement;
    }
  }
  let text = (JSON.stringify(doc) ?? 'null').replace(DEEP, (_, levels: string) => deepText(Number(levels)));
  if (r.chance(0.1)) {
    description.push('huge number text');
    text = text.replace(/:(\d+)([,}])/, `:${r.pick(['1e999', '-1E+400', '123456789012345678901234567890', '0.0000000000000000000000001'])}$2`);
  }
  let body = Buffer.from(text, 'utf8');
  const byteOp = r.int(12);
  if (byteOp === 0) {
    description.push('truncate');
    body = body.subarray(0, r.int(body.length));
  } else if (byteOp === 1) {
    description.push('flip bytes');
    body = Buffer.from(body);
    for (let n = 1 + r.int(4); n > 0; n--) body[r.int(body.length)]! ^= 1 << r.int(8);
  } else if (byteOp === 2) {
    description.push('invalid utf-8');
    const at = r.int(body.length);
    body = Buffer.concat([body.subarray(0, at), Buffer.from(r.pick([[0xff], [0xc3, 0x28], [0xed, 0xa0, 0x80], [0xf8, 0x88, 0x80, 0x80, 0x80], [0xe2, 0x82]])), body.subarray(at)]);
  } else if (byteOp === 3) {
    description.push('random bytes');
    body = Buffer.from(Array.from({ length: r.int(600) }, () => r.int(256)));
  } else if (byteOp === 4) {
    description.push('padded over the limit');
    body = Buffer.concat([body, Buffer.alloc(Math.max(0, BODY_LIMIT - body.length) + 1 + r.int(BODY_LIMIT), ' ')]);
  }
  const contentType = r.chance(0.85)
    ? r.pick([EVENTS_MEDIA_TYPE, EVENTS_MEDIA_TYPE_V2, 'application/json', 'application/json; charset=utf-8', EVENTS_MEDIA_TYPE.toUpperCase()])
    : r.pick([null, '', 'text/plain', 'application/json5', `${EVENTS_MEDIA_TYPE}x`, 'multipart/form-data; boundary=x', ';', 'application/json;;;']);
  const auth = r.next();
  const authorization = auth < 0.9 ? `Bearer ${TOKEN}` : auth < 0.93 ? `Basic ${Buffer.from(`registry:${TOKEN}`).toString('base64')}` : auth < 0.97 ? null : r.pick([`Bearer ${TOKEN}x`, 'Basic Og==', `Token ${TOKEN}`]);
  const authorized = auth < 0.93;
  return { index, description, body, chunked: r.chance(0.1), contentType, authorization, authorized };
}

type Expected = { status: 202; events: number } | { status: 400; code: string; path: string } | { status: 401 | 413 | 415 };

/** What the contract says the answer must be, read independently of the ingest's code. */
function expectedAnswer(c: Case): Expected {
  if (!c.authorized) return { status: 401 };
  const type = (c.contentType ?? '').split(';')[0]!.trim().toLowerCase();
  if (![EVENTS_MEDIA_TYPE, EVENTS_MEDIA_TYPE_V2, 'application/json'].includes(type)) return { status: 415 };
  if (c.body.length > BODY_LIMIT) return { status: 413 };
  let doc: unknown;
  try {
    doc = JSON.parse(c.body.toString('utf8'));
  } catch {
    return { status: 400, code: 'InvalidJSON', path: '$' };
  }
  const bad = (path: string): Expected => ({ status: 400, code: 'InvalidEnvelope', path });
  const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
  const depth = (root: object): number => {
    let deepest = 0;
    const stack: [unknown, number][] = [[root, 1]];
    for (let entry = stack.pop(); entry; entry = stack.pop()) {
      const [value, level] = entry;
      if (typeof value !== 'object' || value === null) continue;
      deepest = Math.max(deepest, level);
      for (const child of Object.values(value)) stack.push([child, level + 1]);
    }
    return deepest;
  };
  if (!isObject(doc)) return bad('$');
  if (!Array.isArray(doc.events)) return bad('$.events');
  for (const [i, e] of (doc.events as unknown[]).entries()) {
    if (!isObject(e)) return bad(`$.events[${i}]`);
    if (typeof e.id !== 'string' || e.id === '') return bad(`$.events[${i}].id`);
    if (typeof e.action !== 'string') return bad(`$.events[${i}].action`);
    if (!isObject(e.target)) return bad(`$.events[${i}].target`);
    if (depth(e) > MAX_EVENT_DEPTH) return bad(`$.events[${i}]`);
  }
  return { status: 202, events: (doc.events as unknown[]).length };
}

function check(c: Case, answer: Answer, expected: Expected): { accepted: number } {
  const where = `seed ${SEED} case ${c.index} [${c.description.join(', ')}] ${c.contentType} ${c.authorization?.slice(0, 12)} ${c.body.subarray(0, 160).toString('latin1')}`;
  expect(answer.headers['content-type'], where).toBe('application/json');
  if (expected.status === 202) {
    if (answer.status === 503) {
      // Only a full queue may refuse a valid envelope, and it must say so.
      expect(answer.json, where).toEqual({ error: { code: 'QueueFull', message: expect.any(String) } });
      expect(answer.headers['retry-after'], where).toMatch(/^\d+$/);
      return { accepted: 0 };
    }
    expect(answer.status, `${where}\n${answer.text}`).toBe(202);
    const counts = answer.json as { accepted: number; duplicates: number };
    expect(Object.keys(counts), where).toEqual(['accepted', 'duplicates']);
    expect(counts.accepted + counts.duplicates, where).toBe(expected.events);
    return counts;
  }
  expect(answer.status, `${where}\n${answer.text}`).toBe(expected.status);
  const error = (answer.json as { error: Record<string, unknown> }).error;
  if (expected.status === 400) expect(error, where).toEqual({ code: expected.code, message: expect.any(String), path: expected.path });
  else expect(error, where).toEqual({ code: expect.any(String), message: expect.any(String) });
  return { accepted: 0 };
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
        const expected = expectedAnswer(c);
        const body = c.chunked ? Readable.from([c.body.subarray(0, c.body.length >> 1), c.body.subarray(c.body.length >> 1)]) : c.body;
        let answer: Answer;
        try {
          answer = await post(harness.ingest.url, body, { contentType: c.contentType, authorization: c.authorization });
        } catch (error) {
          throw new Error(`seed ${SEED} case ${c.index} [${c.description.join(', ')}]: no answer: ${String(error)}`, { cause: error });
        }
        statuses.set(answer.status, (statuses.get(answer.status) ?? 0) + 1);
        accepted += check(c, answer, expected).accepted;
      }
    };
    await Promise.all(Array.from({ length: CONCURRENCY }, worker));

    // Every kind of answer occurred, and nothing else.
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
