import { mkdtempSync, rmSync, writeFileSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { Journal, JOURNAL_FILE } from '../../src/journal/journal.ts';
import type { QueuedEvent } from '../../src/notifications/sink.ts';

const logger = pino({ level: 'silent' });
const dirs: string[] = [];
const journals: Journal[] = [];
afterEach(() => {
  for (const j of journals.splice(0)) j.close();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function open(dir = mkdtempSync(join(tmpdir(), 'rn-journal-'))): { journal: Journal; dir: string } {
  if (!dirs.includes(dir)) dirs.push(dir);
  const journal = Journal.open(dir, logger);
  journals.push(journal);
  return { journal, dir };
}

const event = (id: string, acceptedAt = 1000): QueuedEvent => ({ id, json: `{"id":"${id}"}`, acceptedAt });

describe('Journal', () => {
  it('stores an event once for every endpoint of one transaction, and keeps it until each has it', () => {
    const { journal } = open();
    const a = journal.storeFor('a');
    const b = journal.storeFor('b');
    const [storedA, storedB] = journal.transaction(() => [a.append([event('e1'), event('e2')]), b.append([event('e1')])]);
    expect(storedA!.map((e) => e.seq)).toEqual([1, 2]);
    expect(storedB![0]!.seq).toBe(1);
    expect(journal.counts()).toEqual({ events: 2, pending: 3, deadLetters: 0 });
    a.ack([storedA![0]!]);
    expect(journal.counts()).toEqual({ events: 2, pending: 2, deadLetters: 0 }); // b still needs e1
    b.ack(storedB!);
    expect(journal.counts()).toEqual({ events: 1, pending: 1, deadLetters: 0 });
    a.ack([storedA![1]!]);
    expect(journal.counts()).toEqual({ events: 0, pending: 0, deadLetters: 0 });
  });

  it('rolls the whole transaction back when anything in it fails', () => {
    const { journal } = open();
    const a = journal.storeFor('a');
    expect(() => journal.transaction(() => {
      a.append([event('e1')]);
      throw new Error('boom');
    })).toThrow('boom');
    expect(journal.counts()).toEqual({ events: 0, pending: 0, deadLetters: 0 });
  });

  it('rolls back even when the failing append was swallowed by the caller', () => {
    const { journal } = open();
    const a = journal.storeFor('a');
    expect(() => journal.transaction(() => {
      a.append([event('e1')]);
      try {
        a.append([{ id: 'bad', json: 'x', acceptedAt: Number.NaN, seq: undefined } as unknown as QueuedEvent, { id: null } as unknown as QueuedEvent]);
      } catch {
        // an async caller would see this only as a rejected promise
      }
    })).toThrow();
    expect(journal.counts().events).toBe(0);
  });

  it('gives back what was pending after a reopen, per endpoint, in order, with acceptedAt kept', () => {
    const first = open();
    const a = first.journal.storeFor('a');
    first.journal.transaction(() => a.append([event('e1', 10), event('e2', 20), event('e3', 30)]));
    const stored = a.pending();
    a.ack([stored[1]!]);
    first.journal.close();
    const { journal } = open(first.dir);
    expect(journal.storeFor('a').pending()).toEqual([
      { id: 'e1', json: '{"id":"e1"}', acceptedAt: 10, seq: 1 },
      { id: 'e3', json: '{"id":"e3"}', acceptedAt: 30, seq: 3 },
    ]);
    expect(journal.storeFor('b').pending()).toEqual([]);
  });

  it('moves dead letters aside and back for a replay', () => {
    const { journal } = open();
    const a = journal.storeFor('a');
    const stored = journal.transaction(() => a.append([event('e1'), event('e2')]));
    a.deadLetter([stored[0]!], 'gave up after 3 attempts');
    expect(journal.counts()).toEqual({ events: 2, pending: 1, deadLetters: 1 });
    expect(a.pending().map((e) => e.id)).toEqual(['e2']);
    const replayed = a.takeDeadLetters();
    expect(replayed.map((e) => [e.id, e.seq])).toEqual([['e1', 1]]);
    expect(journal.counts()).toEqual({ events: 2, pending: 2, deadLetters: 0 });
    expect(a.takeDeadLetters()).toEqual([]);
  });

  it('drops an endpoint that no longer exists, and only what nobody else needs', () => {
    const { journal } = open();
    const [a, b] = [journal.storeFor('a'), journal.storeFor('b')];
    journal.transaction(() => {
      a.append([event('shared'), event('only-a')]);
      b.append([event('shared')]);
    });
    a.deadLetter([a.pending()[1]!], 'old');
    expect(journal.endpoints().sort()).toEqual(['a', 'b']);
    expect(journal.forgetExcept(new Set(['b']))).toEqual(new Map([['a', 1]]));
    expect(journal.counts()).toEqual({ events: 1, pending: 1, deadLetters: 0 });
    expect(b.pending().map((e) => e.id)).toEqual(['shared']);
  });

  it('starts on a database it cannot read by moving it aside', () => {
    const dir = mkdtempSync(join(tmpdir(), 'rn-journal-'));
    writeFileSync(join(dir, JOURNAL_FILE), 'this is not a database '.repeat(100));
    const { journal } = open(dir);
    expect(journal.counts()).toEqual({ events: 0, pending: 0, deadLetters: 0 });
    expect(readdirSync(dir).some((f) => f.startsWith(`${JOURNAL_FILE}.corrupt-`))).toBe(true);
  });
});
