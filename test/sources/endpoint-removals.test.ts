// EndpointRemovals against a real EndpointSet and a loopback receiver that holds its answers: an endpoint leaves
// routing the moment it is removed, while its closing (the attempt in flight ending) finishes in the background.
import { afterEach, describe, expect, it } from 'vitest';
import { EndpointSet } from '../../src/notifications/endpoint-set.ts';
import { endpointConfig } from '../../src/notifications/endpoint.ts';
import { EndpointRemovals } from '../../src/sources/endpoint-removals.ts';
import { makeEvents } from '../support/events.ts';
import { TestReceiver } from '../support/receiver.ts';
import { captureLogs, type LogLine } from '../k8s/support.ts';

const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!().catch(() => {});
});

interface Harness {
  endpoints: EndpointSet;
  removals: EndpointRemovals;
  removed: [string, number][];
  logs: LogLine[];
  receiver: TestReceiver;
  /** Lets every held answer go. */
  answer: () => void;
}

async function harness(): Promise<Harness> {
  const receiver = await TestReceiver.start();
  let answer!: () => void;
  const held = new Promise<void>((resolve) => (answer = resolve));
  receiver.respond(async () => {
    await held;
    return 200;
  });
  const endpoints = new EndpointSet({ userAgent: 'registry-notifier/test' });
  cleanups.push(() => receiver.close());
  cleanups.push(() => endpoints.close(AbortSignal.abort()));
  cleanups.push(async () => answer());
  const { logger, lines } = captureLogs();
  const removed: [string, number][] = [];
  const removals = new EndpointRemovals({ endpoints, logger, onRemoved: (name, discarded) => void removed.push([name, discarded]) });
  return { endpoints, removals, removed, logs: lines, receiver, answer };
}

describe('EndpointRemovals', () => {
  it('takes endpoints out at once, however long their attempts in flight take; onRemoved and one log line each once closed', async () => {
    const h = await harness();
    for (const name of ['a', 'b', 'c']) h.endpoints.apply(name, endpointConfig({ url: `${h.receiver.url}/${name}`, timeoutMs: 60_000 }));
    await h.endpoints.write(makeEvents(3, 'held'));
    await h.receiver.waitFor((r) => r.length === 3); // one attempt in flight per endpoint, none answered
    expect(h.removals.remove('a')).toBe(true);
    expect(h.removals.remove('b')).toBe(true);
    expect(h.endpoints.list().map((e) => e.name)).toEqual(['c']);
    await h.endpoints.write(makeEvents(1, 'later'));
    expect(h.endpoints.get('c')?.pending).toBe(4);
    let settled = false;
    const settling = h.removals.settled('a').then(() => void (settled = true));
    // The marker: an endpoint with nothing in flight, removed after a and b, finishes closing; a and b, whose
    // attempts are still unanswered, must not have.
    h.endpoints.apply('idle', endpointConfig({ url: `${h.receiver.url}/idle` }));
    expect(h.removals.remove('idle')).toBe(true);
    await h.removals.settled('idle');
    expect([settled, h.removed]).toEqual([false, [['idle', 0]]]); // a and b still closing
    h.answer();
    await settling;
    await h.removals.idle();
    expect(h.removed.sort()).toEqual([['a', 2], ['b', 2], ['idle', 0]]); // the attempt in flight ended; the two behind it discarded
    const lines = h.logs.filter((l) => l.msg === 'endpoint removed');
    expect(lines.map((l) => [l.level, l.endpoint, l.discarded]).sort()).toEqual([['info', 'idle', 0], ['warn', 'a', 2], ['warn', 'b', 2]]);
  });

  it('an unknown name: false, nothing called; settled and idle resolve at once; nothing discarded logs at info', async () => {
    const h = await harness();
    expect(h.removals.remove('nope')).toBe(false);
    await h.removals.settled('nope');
    await h.removals.idle();
    expect(h.removed).toEqual([]);
    h.endpoints.apply('idle', endpointConfig({ url: h.receiver.url }));
    expect(h.removals.remove('idle')).toBe(true);
    expect(h.removals.remove('idle')).toBe(false); // already out
    await h.removals.idle();
    expect(h.removed).toEqual([['idle', 0]]);
    expect(h.logs.filter((l) => l.msg === 'endpoint removed').map((l) => l.level)).toEqual(['info']);
  });
});
