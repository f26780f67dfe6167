import { describe, expect, it } from 'vitest';
import { MAX_EVENT_DEPTH, parseEnvelope } from '../../src/ingest/envelope.ts';
import { IngestError } from '../../src/ingest/ingest-error.ts';
import { envelopeBody } from '../../src/notifications/event.ts';
import { fixtures } from '../support/events.ts';

const ok = { id: 'a', action: 'push', target: {} };
const nest = (levels: number): unknown => {
  let value: unknown = 'leaf';
  for (let i = 0; i < levels; i++) value = (levels - i) % 2 === 1 ? { v: value } : [value]; // outermost: an object
  return value;
};

function refusal(text: string): { status: number; code: string; path: string | undefined } {
  try {
    parseEnvelope(text);
  } catch (error) {
    if (!(error instanceof IngestError)) throw error;
    return { status: error.status, code: error.reason, path: error.path };
  }
  throw new Error(`accepted: ${text.slice(0, 80)}`);
}

describe('parseEnvelope', () => {
  it('reads every captured registry envelope and returns its events as they are', () => {
    for (const fixture of fixtures()) {
      const text = JSON.stringify(fixture.body);
      const events = parseEnvelope(text);
      expect(JSON.stringify({ events: events.map((e) => e.event) })).toBe(text);
      expect(envelopeBody(events.map((e) => e.json))).toBe(text);
    }
  });

  it.each([
    ['numbers beyond double precision, 1.0, 1e400', '{"events":[{"id":"a","action":"push","target":{"n":12345678901234567890,"f":1.0,"x":1e400,"z":-0}}]}'],
    ['Go\'s escapes and indentation', '{\n   "events": [\n      {\n         "id": "a",\n         "action": "push",\n         "target": {"u": "\\u003cb\\u003e \\u0026"}\n      }\n   ]\n}'],
    ['non-ASCII text and escaped quotes', '{"events":[{"id":"é€😀","action":"push","target":{"s":"a\\"b\\\\","t":"日本"}},{"id":"b","action":"pull","target":{}}]}'],
    ['members before and after, nested arrays', '{"v":[{"events":[1]}],"events":[ {"id":"a","action":"push","target":{"l":[[1],{"a":"]}"}]}} ,{"id":"b","action":"x","target":{}}],"after":{"}":"{"}}'],
  ])('keeps each event\'s own bytes: %s', (_case, text) => {
    const events = parseEnvelope(Buffer.from(text));
    const parsed = (JSON.parse(text) as { events: unknown[] }).events;
    expect(events.map((e) => e.event)).toEqual(parsed);
    for (const e of events) expect(text, 'each text is a slice of the body').toContain(e.json);
    expect(events.map((e) => JSON.parse(e.json) as unknown)).toEqual(parsed);
  });

  it('takes the last "events" member, as JSON.parse does, also when its key is written with escapes', () => {
    const text = '{"events":[{"id":"first","action":"push","target":{}}],"\\u0065vents":[{"id":"second","action":"push","target":{}}]}';
    expect(parseEnvelope(text).map((e) => [e.event.id, e.json])).toEqual([['second', '{"id":"second","action":"push","target":{}}']]);
  });

  it('never quotes the body in its message (binary bytes, secrets)', () => {
    const error = (() => {
      try {
        parseEnvelope(Buffer.from([0x1f, 0x8b, 0x08, 0x00, 0x73, 0x65, 0x63, 0x72, 0x65, 0x74]));
      } catch (e) {
        return e as IngestError;
      }
    })();
    expect(error).toBeInstanceOf(IngestError);
    expect(error!.message).toMatch(/^body is not valid JSON/);
    expect(error!.message).toMatch(/^[\x20-\x7e]+$/); // printable ASCII only: no byte of the body
    expect(error!.message).not.toContain('secret');
  });

  it.each([
    ['an empty events array', '{"events":[]}', 0],
    ['unknown actions', '{"events":[{"id":"a","action":"replicate","target":{}}]}', 1],
    ['an empty action', '{"events":[{"id":"a","action":"","target":{}}]}', 1],
    ['unknown fields everywhere', '{"v":2,"events":[{"id":"a","action":"push","target":{"x":[1]},"y":null}]}', 1],
    ['3.x delete shape', '{"events":[{"id":"a","action":"delete","target":{"mediaType":"","digest":"","size":0}}]}', 1],
    ['huge and odd numbers', '{"events":[{"id":"a","action":"push","target":{"size":1e400,"length":-0,"n":123456789012345678901234567890}}]}', 1],
    ['a __proto__ key', '{"events":[{"id":"a","action":"push","target":{"__proto__":{"polluted":true}}}]}', 1],
    [`nesting of exactly ${MAX_EVENT_DEPTH} levels`, JSON.stringify({ events: [{ ...ok, target: nest(MAX_EVENT_DEPTH - 1) }] }), 1],
  ])('accepts %s', (_name, text, count) => {
    expect(parseEnvelope(text)).toHaveLength(count);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });

  it('keeps unknown fields and their order', () => {
    const [{ event, json } = { event: undefined, json: '' }] = parseEnvelope('{"events":[{"z":1,"id":"a","target":{"b":2,"a":1},"action":"x","m":[{}]}]}');
    expect(JSON.stringify(event)).toBe('{"z":1,"id":"a","target":{"b":2,"a":1},"action":"x","m":[{}]}');
    expect(json).toBe('{"z":1,"id":"a","target":{"b":2,"a":1},"action":"x","m":[{}]}');
  });

  it.each([
    ['not JSON', '{', 'InvalidJSON', '$'],
    ['empty', '', 'InvalidJSON', '$'],
    ['trailing garbage', '{"events":[]} x', 'InvalidJSON', '$'],
    ['a BOM', '\uFEFF{"events":[]}', 'InvalidJSON', '$'],
    ['an array', '[]', 'InvalidEnvelope', '$'],
    ['a number', '1', 'InvalidEnvelope', '$'],
    ['null', 'null', 'InvalidEnvelope', '$'],
    ['no events', '{}', 'InvalidEnvelope', '$.events'],
    ['events null', '{"events":null}', 'InvalidEnvelope', '$.events'],
    ['events an object', '{"events":{"0":{}}}', 'InvalidEnvelope', '$.events'],
    ['an event a string', `{"events":[${JSON.stringify(ok)},"e"]}`, 'InvalidEnvelope', '$.events[1]'],
    ['an id missing', '{"events":[{"action":"push","target":{}}]}', 'InvalidEnvelope', '$.events[0].id'],
    ['an id empty', '{"events":[{"id":"","action":"push","target":{}}]}', 'InvalidEnvelope', '$.events[0].id'],
    ['an id a number', '{"events":[{"id":1,"action":"push","target":{}}]}', 'InvalidEnvelope', '$.events[0].id'],
    ['an action null', '{"events":[{"id":"a","action":null,"target":{}}]}', 'InvalidEnvelope', '$.events[0].action'],
    ['a target a string', '{"events":[{"id":"a","action":"push","target":"x"}]}', 'InvalidEnvelope', '$.events[0].target'],
    ['a target an array', '{"events":[{"id":"a","action":"push","target":[]}]}', 'InvalidEnvelope', '$.events[0].target'],
    [`nesting of ${MAX_EVENT_DEPTH + 1} levels`, JSON.stringify({ events: [ok, { ...ok, target: nest(MAX_EVENT_DEPTH) }] }), 'InvalidEnvelope', '$.events[1]'],
    ['nesting far beyond what JSON.stringify survives', `{"events":[{"id":"a","action":"push","target":{"x":${'['.repeat(100_000)}${']'.repeat(100_000)}}}]}`, 'InvalidEnvelope', '$.events[0]'],
  ])('refuses %s with 400 at the path', (_name, text, code, path) => {
    expect(refusal(text)).toEqual({ status: 400, code, path });
  });

  it('reports the first bad event', () => {
    const text = JSON.stringify({ events: [ok, ok, { id: 'x', target: {} }, { id: '', action: 'push', target: {} }] });
    expect(refusal(text).path).toBe('$.events[2].action');
  });

  it('every accepted event can be serialised again', () => {
    const events = parseEnvelope(JSON.stringify({ events: [{ ...ok, target: nest(MAX_EVENT_DEPTH - 1) }] }));
    expect(() => JSON.stringify(events.map((e) => e.event))).not.toThrow();
  });
});
