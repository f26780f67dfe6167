import { describe, expect, it } from 'vitest';
import { encodeEvent, envelopeBody, type Envelope } from '../../src/notifications/event.ts';
import { fixtures } from '../support/events.ts';

describe('event model', () => {
  it.each(fixtures().map((f) => [f.file, f] as const))('re-serialises %s losslessly, unknown fields and order kept', (_file, fixture) => {
    const envelope = JSON.parse(JSON.stringify(fixture.body)) as Envelope;
    const body = envelopeBody(envelope.events.map(encodeEvent));
    expect(body).toBe(JSON.stringify(fixture.body));
    expect(JSON.parse(body)).toEqual(fixture.body);
  });

  it('keeps fields the engine does not know', () => {
    const event = { id: 'x', action: 'scan', target: { repository: 'a', vendor: { score: 7 } }, extra: [1, 2] };
    expect(JSON.parse(encodeEvent(event))).toEqual(event);
  });

  it('serialises each event object once, however many endpoints queue it', () => {
    const event = { id: 'x', action: 'push', target: {} };
    expect(encodeEvent(event)).toBe(encodeEvent(event));
  });
});
