import { describe, expect, it } from 'vitest';
import { envelopeBody, incomingEvent, type Envelope } from '../../src/notifications/event.ts';
import { fixtures } from '../support/events.ts';

describe('event model', () => {
  it.each(fixtures().map((f) => [f.file, f] as const))('re-serialises %s losslessly, unknown fields and order kept', (_file, fixture) => {
    const envelope = JSON.parse(JSON.stringify(fixture.body)) as Envelope;
    const body = envelopeBody(envelope.events.map((event) => incomingEvent(event).json));
    expect(body).toBe(JSON.stringify(fixture.body));
    expect(JSON.parse(body)).toEqual(fixture.body);
  });

  it('keeps fields the engine does not know', () => {
    const event = { id: 'x', action: 'scan', target: { repository: 'a', vendor: { score: 7 } }, extra: [1, 2] };
    expect(incomingEvent(event)).toEqual({ event, json: JSON.stringify(event) });
    expect(JSON.parse(incomingEvent(event).json)).toEqual(event);
  });

  it('an envelope is the events\' own texts, joined in order, nothing re-encoded', () => {
    expect(envelopeBody(['{"id":"a","n":12345678901234567890}', '{ "id" : "b" }'])).toBe('{"events":[{"id":"a","n":12345678901234567890},{ "id" : "b" }]}');
  });
});
