import { mkdtempSync, rmSync, writeFileSync, readdirSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { DatabaseSync } from 'node:sqlite';
import { fileURLToPath } from 'node:url';
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
    expect(journal.forget((endpoint) => endpoint !== 'b')).toEqual(new Map([['a', 1]]));
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

  it('never numbers two events alike, even after a transaction that handed out numbers was rolled back', () => {
    // The queue keeps what `append` returned in memory at once; if the surrounding transaction then fails (another
    // endpoint's append, or COMMIT on a full disk), those numbers must not be given to the next events: the
    // delivery of the phantom would acknowledge, and so delete, the pending row of an unrelated event.
    const { journal, dir } = open();
    const a = journal.storeFor('a');
    let phantom: QueuedEvent[] = [];
    expect(() => journal.transaction(() => {
      phantom = a.append([event('phantom')]);
      throw new Error('COMMIT failed: database or disk is full');
    })).toThrow('disk is full');
    const [real] = journal.transaction(() => a.append([event('real')]));
    expect(real!.seq).not.toBe(phantom[0]!.seq);
    a.ack(phantom); // the queue delivered the phantom (the client got a 503; the receiver may see it anyway)
    expect(a.pending().map((e) => e.id)).toEqual(['real']);
    journal.close();
    expect(open(dir).journal.storeFor('a').pending().map((e) => e.id), 'after a restart').toEqual(['real']);
  });

  it('numbers keep growing across a reopen, after everything was delivered and collected', () => {
    const first = open();
    const a = first.journal.storeFor('a');
    a.ack(first.journal.transaction(() => a.append([event('e1'), event('e2')])));
    expect(first.journal.counts().events).toBe(0);
    const [next] = first.journal.transaction(() => a.append([event('e3')]));
    expect(next!.seq).toBe(3);
    first.journal.close();
    const { journal } = open(first.dir);
    const [after] = journal.transaction(() => journal.storeFor('a').append([event('e4')]));
    expect(after!.seq).toBeGreaterThan(3);
  });

  it('is held by one process at a time: a second open fails loudly and moves nothing aside', () => {
    const { journal, dir } = open();
    const a = journal.storeFor('a');
    journal.transaction(() => a.append([event('mine')]));
    expect(() => Journal.open(dir, logger, { busyTimeoutMs: 50 })).toThrow(/in use/);
    expect(readdirSync(dir).filter((f) => f.includes('corrupt')), 'a locked journal is not corrupt').toEqual([]);
    expect(a.pending().map((e) => e.id)).toEqual(['mine']);
  });

  it('a journal locked by another program is not mistaken for a corrupt one', () => {
    const { journal, dir } = open();
    journal.transaction(() => journal.storeFor('a').append([event('kept')]));
    journal.close();
    const other = new DatabaseSync(join(dir, JOURNAL_FILE));
    other.exec('PRAGMA locking_mode = EXCLUSIVE; BEGIN EXCLUSIVE; COMMIT;'); // e.g. an sqlite3 shell, a backup tool
    try {
      expect(() => Journal.open(dir, logger, { busyTimeoutMs: 50 })).toThrow(/in use by another process .*--queue-dir/);
      expect(readdirSync(dir).filter((f) => f.includes('corrupt'))).toEqual([]);
    } finally {
      other.close();
    }
    expect(open(dir).journal.storeFor('a').pending().map((e) => e.id)).toEqual(['kept']);
  });

  it('keeps the newest dead letters per endpoint up to its cap, and deletes the events nobody needs any more', () => {
    const { journal, dir } = open();
    journal.close();
    const capped = Journal.open(dir, logger, { maxDeadLetters: 5 });
    journals.push(capped);
    const [a, b] = [capped.storeFor('a'), capped.storeFor('b')];
    for (let i = 0; i < 8; i++) {
      const stored = capped.transaction(() => {
        const mine = a.append([event(`dead-${i}`)]);
        if (i === 0) b.append(mine); // b still needs the oldest: it must outlive a's cap
        return mine;
      });
      a.deadLetter(stored, 'refused');
    }
    expect(capped.counts()).toEqual({ events: 6, pending: 1, deadLetters: 5 });
    expect(a.takeDeadLetters().map((e) => e.id)).toEqual(['dead-3', 'dead-4', 'dead-5', 'dead-6', 'dead-7']);
    expect(b.pending().map((e) => e.id)).toEqual(['dead-0']);
  });

  it('trims to a large cap in steps of 1% of it, so a full dead-letter list does not cost a scan per event', () => {
    const dir = mkdtempSync(join(tmpdir(), 'rn-journal-'));
    dirs.push(dir);
    const capped = Journal.open(dir, logger, { maxDeadLetters: 300 });
    journals.push(capped);
    const a = capped.storeFor('a');
    const counts: number[] = [];
    for (let i = 0; i < 320; i++) {
      a.deadLetter(capped.transaction(() => a.append([event(`d${i}`)])), 'refused');
      counts.push(capped.counts().deadLetters);
    }
    expect(Math.max(...counts)).toBeLessThanOrEqual(300 + 3);
    expect(counts.at(-1)).toBeGreaterThanOrEqual(300);
    const kept = a.takeDeadLetters().map((e) => e.id);
    expect(kept.at(-1)).toBe('d319');
    expect(kept).toEqual([...kept].sort((x, y) => Number(x.slice(1)) - Number(y.slice(1)))); // oldest first
    expect(kept[0]).not.toBe('d0');
  });

  it('a disk that fills up in the middle of a transaction: all of it is rolled back, none of it committed piecemeal', () => {
    // SQLite rolls the transaction back by itself on an I/O error; an append after that must not run in
    // autocommit (half an ingest request committed behind a 503), and the error reported must be the disk's.
    const dir = mkdtempSync(join(tmpdir(), 'rn-journal-'));
    dirs.push(dir);
    const script = fileURLToPath(new URL('./fixtures/disk-full.ts', import.meta.url));
    const run = spawnSync('sh', ['-c', 'ulimit -f 1024 && exec "$0" "$1" "$2"', process.execPath, script, dir], { encoding: 'utf8', timeout: 15_000 });
    expect(run.status, run.stderr).toBe(0);
    const result = JSON.parse(run.stdout) as Record<string, unknown>;
    expect(result.appendError).toMatch(/disk I\/O error|full/);
    expect(result.transaction, 'the error is the disk\'s, not a failed ROLLBACK').toMatch(/disk I\/O error|full/);
    expect(result.counts).toEqual({ events: 1, pending: 1, deadLetters: 0 });
    expect(result.pendingA).toEqual(['before']);
    expect(result.pendingB, 'nothing of the failed transaction').toEqual([]);
    expect(result.after, 'the journal works on').toEqual(['after']);
  });
});

