// The fuzz test's cases: seeded envelopes built from real events, mutated, and each recorded with what it must get.
// Every mutation says what it broke (events[2].action is now a number: a 400 at $.events[2].action) or that it
// breaks nothing the contract forbids (an unknown field, an unknown action, nesting well below any sane limit);
// mutations of the bytes whose result the generator cannot know make the case "unknown". Nothing here reads a
// request the way the ingest does.
import { EVENTS_MEDIA_TYPE, EVENTS_MEDIA_TYPE_V2 } from '../../src/notifications/event.ts';
import { fixtures } from '../support/events.ts';
import { TOKEN } from './support.ts';

export const SEED = 0x5eed_2026;
export const BODY_LIMIT = 16 * 1024;
/** Events of this repository go to an endpoint that never delivers: it fills up and valid envelopes may get 503. */
export const FULL_REPOSITORY = 'fuzz/full';

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

// Deep nesting is spliced into the text after JSON.stringify, which itself could not write it. The contract asks
// that an event nested too deeply be refused at the event's path, without naming the limit: the generator keeps
// well clear of wherever it is, at most 200 levels (accepted) or at least 300 (refused).
const DEEP = /"@deep:(\d+)"/g;
const deepText = (levels: number): string => `${'[{"n":'.repeat(levels >> 1)}${levels % 2 ? '[0]' : '0'}${'}]'.repeat(levels >> 1)}`;
const SHALLOW_MAX = 200;
const DEEP_MIN = 300;

/** Sets a field even when it is named `__proto__` (an own property, as JSON.parse makes it). */
function setField(object: Record<string, unknown>, key: string, value: unknown): void {
  Object.defineProperty(object, key, { value, enumerable: true, writable: true, configurable: true });
}

/** One event as the generator built it, and what it broke in it: '' (the event itself), '.id', '.action', '.target'. */
interface EventModel {
  value: unknown;
  problems: Set<string>;
  /** The value is still the object the generator started from (fields can be added and changed). */
  object: boolean;
  /** Its `target` is still an object. */
  target: boolean;
}

/** The envelope as the generator built it: its events, extra top-level fields, or a broken root / events member. */
interface Model {
  events: EventModel[];
  extra: [string, unknown][];
  /** The whole document replaced: by a non-object ('$'), or by an object without `events` ('$.events'). */
  root?: { value: unknown; problem: '$' | '$.events' };
  /** `events` replaced by something other than an array, or deleted. */
  eventsMember?: { value: unknown } | 'deleted';
}

/** What the answer must be, from how the case was made (never from reading the request as the ingest does). */
export type Known =
  | { kind: 'valid'; events: number }
  | { kind: 'invalid'; paths: string[] }
  | { kind: 'unknown' }; // bytes were mutated: only the contract's general properties can be checked

export interface Case {
  index: number;
  description: string[];
  body: Buffer;
  chunked: boolean;
  contentType: string | null;
  authorization: string | null;
  /** Refusals that apply by construction (wrong token, refused media type, over the size limit): the answer is one of them when any does. */
  refusals: (401 | 413 | 415)[];
  known: Known;
}

const FIXTURES = fixtures();
const idPool: string[] = FIXTURES.flatMap((f) => f.body.events.map((e) => e.id));
const NOT_A_STRING: unknown[] = [null, 0, 1.5, -1, true, false, [], ['x'], {}, { id: 'x' }];
const NOT_AN_OBJECT: unknown[] = [null, 0, 'target', '', true, [], [{}], [{ repository: 'x' }]];
const NOT_AN_ARRAY: unknown[] = [null, 0, 'events', true, {}, { 0: { id: 'x', action: 'push', target: {} } }];
// Media types are case-insensitive and parameters do not change the type (empty ones included).
const ACCEPTED_TYPES = [EVENTS_MEDIA_TYPE, EVENTS_MEDIA_TYPE_V2, 'application/json', 'application/json; charset=utf-8', EVENTS_MEDIA_TYPE.toUpperCase(), 'application/json;;;'];
const REFUSED_TYPES = [null, '', 'text/plain', 'application/json5', `${EVENTS_MEDIA_TYPE}x`, 'multipart/form-data; boundary=x', ';'];
const GOOD_AUTH = [`Bearer ${TOKEN}`, `Basic ${Buffer.from(`registry:${TOKEN}`).toString('base64')}`];
const BAD_AUTH = [null, `Bearer ${TOKEN}x`, 'Basic Og==', `Token ${TOKEN}`];
// Field names an added field may have: never one the envelope requires (that would be a replacement).
const EXTRA_NAMES = ['x', '__proto__', '', 'Id', 'ACTION', 'Target', 'extra'];

type Mutation = (r: Random, model: Model, say: (what: string) => void) => void;

/** An event the mutation can work on: one that is still an object. */
const anObject = (r: Random, model: Model): EventModel | undefined => {
  const objects = model.events.filter((e) => e.object);
  return objects.length === 0 ? undefined : r.pick(objects);
};
const at = (model: Model, e: EventModel): number => model.events.indexOf(e);
const fields = (e: EventModel): Record<string, unknown> => e.value as Record<string, unknown>;

/** Mutations that break a known thing, each recording where. */
const BREAKING: Mutation[] = [
  (r, model, say) => {
    const e = anObject(r, model);
    if (!e) return;
    if (r.chance(0.3)) delete fields(e).id;
    else fields(e).id = r.chance(0.3) ? '' : r.pick(NOT_A_STRING);
    e.problems.add('.id');
    say(`break events[${at(model, e)}].id`);
  },
  (r, model, say) => {
    const e = anObject(r, model);
    if (!e) return;
    if (r.chance(0.3)) delete fields(e).action;
    else fields(e).action = r.pick(NOT_A_STRING);
    e.problems.add('.action');
    say(`break events[${at(model, e)}].action`);
  },
  (r, model, say) => {
    const e = anObject(r, model);
    if (!e) return;
    if (r.chance(0.3)) delete fields(e).target;
    else fields(e).target = r.pick(NOT_AN_OBJECT);
    e.target = false;
    e.problems.add('.target');
    say(`break events[${at(model, e)}].target`);
  },
  (r, model, say) => {
    if (model.events.length === 0) return;
    const i = r.int(model.events.length);
    model.events[i] = { value: r.pick(NOT_AN_OBJECT), problems: new Set(['']), object: false, target: false };
    say(`events[${i}] not an object`);
  },
  (r, model, say) => {
    const e = anObject(r, model);
    if (!e) return;
    const inTarget = e.target && r.chance(0.5);
    const base = inTarget ? 2 : 1; // the level of the object the new field is in (the event is level 1)
    const levels = DEEP_MIN - base + r.int(7000);
    setField((inTarget ? fields(e).target : e.value) as Record<string, unknown>, `deep-${r.int(100)}`, `@deep:${levels}`);
    e.problems.add('');
    say(`events[${at(model, e)}] nested ${base + levels} levels deep`);
  },
];

/** Mutations the contract must accept: unknown fields and values, unknown actions, shallow nesting, fewer or more events. */
const HARMLESS: Mutation[] = [
  (r, model, say) => {
    const e = anObject(r, model);
    if (!e) return;
    const inTarget = e.target && r.chance(0.5);
    const base = inTarget ? 2 : 1;
    const levels = 1 + r.int(SHALLOW_MAX - base);
    setField((inTarget ? fields(e).target : e.value) as Record<string, unknown>, `nest-${r.int(100)}`, `@deep:${levels}`);
    say(`events[${at(model, e)}] nested ${base + levels} levels`);
  },
  (r, model, say) => {
    const e = anObject(r, model);
    if (e && r.chance(0.7)) {
      const inTarget = e.target && r.chance(0.5);
      setField((inTarget ? fields(e).target : e.value) as Record<string, unknown>, r.pick(EXTRA_NAMES), randomJson(r));
      say(`events[${at(model, e)}]${inTarget ? '.target' : ''}: an extra field`);
    } else {
      model.extra.push([r.pick(EXTRA_NAMES), randomJson(r)]);
      say('an extra top-level field');
    }
  },
  (r, model, say) => {
    const e = anObject(r, model);
    if (!e) return;
    const inTarget = e.target && r.chance(0.6);
    const object = (inTarget ? fields(e).target : e.value) as Record<string, unknown>;
    const keys = Object.keys(object).filter((k) => inTarget || !['id', 'action', 'target'].includes(k));
    if (keys.length === 0) return;
    const key = r.pick(keys);
    object[key] = randomJson(r);
    say(`events[${at(model, e)}]${inTarget ? '.target' : ''}.${key} replaced`);
  },
  (r, model, say) => {
    const e = anObject(r, model);
    if (!e || e.problems.has('.action')) return;
    fields(e).action = r.pick(STRINGS);
    say(`events[${at(model, e)}].action unknown`);
  },
  (r, model, say) => {
    if (model.events.length === 0) return;
    const i = r.int(model.events.length);
    model.events.splice(i, 1);
    say(`events[${i}] deleted`);
  },
  (r, model, say) => {
    const e = anObject(r, model);
    if (!e) return;
    model.events.splice(r.int(model.events.length + 1), 0, { ...e, value: structuredClone(e.value), problems: new Set(e.problems) });
    say(`events[${at(model, e)}] copied (same id)`);
  },
];

/** Mutations of the envelope around the events. */
const ENVELOPE: Mutation[] = [
  (r, model, say) => {
    model.root = r.chance(0.5)
      ? { value: r.pick([null, 0, 'events', true, [], [model.events[0]?.value ?? {}]]), problem: '$' }
      : { value: r.pick([{}, { event: [] }, { Events: [] }, { x: randomJson(r) }]), problem: '$.events' };
    say('root replaced');
  },
  (r, model, say) => {
    model.eventsMember = r.chance(0.3) ? 'deleted' : { value: r.pick(NOT_AN_ARRAY) };
    say('events not an array');
  },
];

export function makeCase(index: number): Case {
  const r = new Random(SEED ^ Math.imul(index + 1, 0x9e3779b1));
  const description: string[] = [];
  const say = (what: string): void => void description.push(what);
  // Start from 1-4 real events, ids fresh or reused (duplicates), now and then a huge or odd id.
  const model: Model = {
    extra: [],
    events: Array.from({ length: 1 + r.int(4) }, () => {
      const base = structuredClone(r.pick(FIXTURES).body.events[0]!) as Record<string, unknown>;
      const roll = r.next();
      base.id = roll < 0.2 ? r.pick(idPool) : roll < 0.23 ? `big-${index}-${'x'.repeat(4000 + r.int(8000))}` : roll < 0.26 ? `ü-${index}-\ud83d` : `fz-${index}-${r.int(1e9)}`;
      idPool.push(base.id as string);
      if (r.chance(0.05)) {
        (base.target as Record<string, unknown>).repository = FULL_REPOSITORY;
        say('full-repository');
      }
      return { value: base, problems: new Set<string>(), object: true, target: true };
    }),
  };
  for (let m = r.int(4); m > 0; m--) {
    const roll = r.next();
    r.pick(roll < 0.42 ? BREAKING : roll < 0.95 ? HARMLESS : ENVELOPE)(r, model, say);
  }

  // The document and what it must get, both from the model.
  let doc: unknown;
  let known: Known;
  if (model.root) {
    doc = model.root.value;
    known = { kind: 'invalid', paths: [model.root.problem] };
  } else {
    const envelope: Record<string, unknown> = {};
    if (model.eventsMember !== 'deleted') envelope.events = model.eventsMember ? model.eventsMember.value : model.events.map((e) => e.value);
    for (const [key, value] of model.extra) setField(envelope, key, value);
    doc = envelope;
    const broken = model.events.findIndex((e) => e.problems.size > 0);
    known = model.eventsMember ? { kind: 'invalid', paths: ['$.events'] }
      : broken >= 0 ? { kind: 'invalid', paths: [...model.events[broken]!.problems].map((p) => `$.events[${broken}]${p}`) }
      : { kind: 'valid', events: model.events.length };
  }
  let text = JSON.stringify(doc).replace(DEEP, (_, levels: string) => deepText(Number(levels)));
  if (r.chance(0.1)) {
    // A number stays a number (a match inside a string stays inside it): the answer does not change.
    say('huge number text');
    text = text.replace(/:(\d+)([,}])/, `:${r.pick(['1e999', '-1E+400', '123456789012345678901234567890', '0.0000000000000000000000001'])}$2`);
  }
  let body = Buffer.from(text, 'utf8');
  const byteOp = r.int(12);
  if (byteOp === 0) {
    say('truncate');
    body = body.subarray(0, r.int(body.length));
  } else if (byteOp === 1) {
    say('flip bytes');
    body = Buffer.from(body);
    for (let n = 1 + r.int(4); n > 0; n--) body[r.int(body.length)]! ^= 1 << r.int(8);
  } else if (byteOp === 2) {
    say('invalid utf-8');
    const where = r.int(body.length);
    body = Buffer.concat([body.subarray(0, where), Buffer.from(r.pick([[0xff], [0xc3, 0x28], [0xed, 0xa0, 0x80], [0xf8, 0x88, 0x80, 0x80, 0x80], [0xe2, 0x82]])), body.subarray(where)]);
  } else if (byteOp === 3) {
    say('random bytes');
    body = Buffer.from(Array.from({ length: r.int(600) }, () => r.int(256)));
  } else if (byteOp === 4) {
    say('padded over the limit');
    body = Buffer.concat([body, Buffer.alloc(Math.max(0, BODY_LIMIT - body.length) + 1 + r.int(BODY_LIMIT), ' ')]);
  }
  if (byteOp <= 3) known = { kind: 'unknown' };

  const typeAccepted = r.chance(0.85);
  const contentType = r.pick<string | null>(typeAccepted ? ACCEPTED_TYPES : REFUSED_TYPES);
  const auth = r.next();
  const authorized = auth < 0.93;
  const authorization = authorized ? (auth < 0.9 ? GOOD_AUTH[0]! : GOOD_AUTH[1]!) : r.pick(BAD_AUTH);
  const refusals: Case['refusals'] = [];
  if (!authorized) refusals.push(401);
  if (!typeAccepted) refusals.push(415);
  if (body.length > BODY_LIMIT) refusals.push(413);
  return { index, description, body, chunked: r.chance(0.1), contentType, authorization, refusals, known };
}
