import { mkdtempSync, rmSync, writeFileSync, readdirSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { DatabaseSync } from 'node:sqlite';
import { fileURLToPath } from 'node:url';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { Journal, JOURNAL_FILE, JournalWriteError } from '../../src/journal/journal.ts';
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

/** Commits one request: endpoint -> events (the same object in two lists is one event); returns what each got. */
function commit(journal: Journal, routes: Record<string, QueuedEvent[]>): QueuedEvent[][] {
  return journal.commit(Object.entries(routes).map(([endpoint, events]) => ({ endpoint, events }))).routes.map((route) => [...route.events]);
}

describe('Journal', () => {
  it('stores an event once for every endpoint of one transaction, and keeps it until each has it', () => {
    const { journal } = open();
    const a = journal.storeFor('a');
    const b = journal.storeFor('b');
    const e1 = event('e1');
    const [storedA, storedB] = commit(journal, { a: [e1, event('e2')], b: [e1] });
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

  it('rolls the whole commit back when anything in it fails: no event and no pending row of it is kept', () => {
    const { journal } = open();
    const bad = { id: null, json: 'x', acceptedAt: Number.NaN } as unknown as QueuedEvent;
    expect(() => commit(journal, { a: [event('e1')], b: [event('e2'), bad] })).toThrow(JournalWriteError);
    expect(journal.counts()).toEqual({ events: 0, pending: 0, deadLetters: 0 });
    expect(journal.storeFor('a').pending()).toEqual([]);
  });

  it('gives back what was pending after a reopen, per endpoint, in order, with acceptedAt kept', () => {
    const first = open();
    const a = first.journal.storeFor('a');
    commit(first.journal, { a: [event('e1', 10), event('e2', 20), event('e3', 30)] });
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
    const [stored = []] = commit(journal, { a: [event('e1'), event('e2')] });
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
    const shared = event('shared');
    commit(journal, { a: [shared, event('only-a')], b: [shared] });
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

  it('never numbers two events alike, even after a commit that handed out numbers was rolled back', () => {
    const { journal, dir } = open();
    const a = journal.storeFor('a');
    const bad = { id: null, json: 'x', acceptedAt: Number.NaN } as unknown as QueuedEvent;
    expect(() => commit(journal, { a: [event('phantom'), bad] })).toThrow(JournalWriteError);
    const [[real] = []] = commit(journal, { a: [event('real')] });
    expect(real!.seq, 'numbers 1 and 2 went to the rolled-back commit').toBe(3);
    expect(a.pending().map((e) => e.id)).toEqual(['real']);
    journal.close();
    expect(open(dir).journal.storeFor('a').pending().map((e) => e.id), 'after a restart').toEqual(['real']);
  });

  it('numbers keep growing across a reopen, after everything was delivered and collected', () => {
    const first = open();
    const a = first.journal.storeFor('a');
    a.ack(commit(first.journal, { a: [event('e1'), event('e2')] })[0]!);
    expect(first.journal.counts().events).toBe(0);
    const [[next] = []] = commit(first.journal, { a: [event('e3')] });
    expect(next!.seq).toBe(3);
    first.journal.close();
    const { journal } = open(first.dir);
    const [[after] = []] = commit(journal, { a: [event('e4')] });
    expect(after!.seq).toBeGreaterThan(3);
  });

  it('is held by one process at a time: a second open fails loudly and moves nothing aside', () => {
    const { journal, dir } = open();
    const a = journal.storeFor('a');
    commit(journal, { a: [event('mine')] });
    expect(() => Journal.open(dir, logger, { busyTimeoutMs: 50 })).toThrow(/in use/);
    expect(readdirSync(dir).filter((f) => f.includes('corrupt')), 'a locked journal is not corrupt').toEqual([]);
    expect(a.pending().map((e) => e.id)).toEqual(['mine']);
  });

  it('a journal locked by another program is not mistaken for a corrupt one', () => {
    const { journal, dir } = open();
    commit(journal, { a: [event('kept')] });
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
      const mine = event(`dead-${i}`);
      const [stored = []] = commit(capped, i === 0 ? { a: [mine], b: [mine] } : { a: [mine] }); // b still needs the oldest
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
      a.deadLetter(commit(capped, { a: [event(`d${i}`)] })[0]!, 'refused');
      counts.push(capped.counts().deadLetters);
    }
    expect(Math.max(...counts)).toBeLessThanOrEqual(300 + 3);
    expect(counts.at(-1)).toBeGreaterThanOrEqual(300);
    const kept = a.takeDeadLetters().map((e) => e.id);
    expect(kept.at(-1)).toBe('d319');
    expect(kept).toEqual([...kept].sort((x, y) => Number(x.slice(1)) - Number(y.slice(1)))); // oldest first
    expect(kept[0]).not.toBe('d0');
  });

  it('a disk that fills up in the middle of a commit: all of it is rolled back, none of it committed piecemeal', () => {
    // SQLite rolls the transaction back by itself on an I/O error; what follows must not run in autocommit
    // (half an ingest request committed behind a 503), and the error reported must be the disk's.
    const dir = mkdtempSync(join(tmpdir(), 'rn-journal-'));
    dirs.push(dir);
    const script = fileURLToPath(new URL('./fixtures/disk-full.ts', import.meta.url));
    const run = spawnSync('sh', ['-c', 'ulimit -f 1024 && exec "$0" "$1" "$2"', process.execPath, script, dir], { encoding: 'utf8', timeout: 15_000 });
    expect(run.status, run.stderr).toBe(0);
    const result = JSON.parse(run.stdout) as Record<string, unknown>;
    expect(result.transaction).toBe('journal: write failed');
    expect(result.cause, 'the error is the disk\'s, not a failed ROLLBACK').toMatch(/disk I\/O error|full/);
    expect(result.code).toBe('ERR_JOURNAL_WRITE');
    expect(result.counts).toEqual({ events: 1, pending: 1, deadLetters: 0 });
    expect(result.pendingA).toEqual(['before']);
    expect(result.pendingB, 'nothing of the failed transaction').toEqual([]);
    expect(result.after, 'the journal works on').toEqual(['after']);
  });
});

