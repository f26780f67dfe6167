// What a crash can leave on disk, and what `serve --queue-dir` makes of it at the next start: a WAL cut in the
// middle of its last frame, a WAL whose last frame is garbled, and a journal.db that is no database at all. The
// service must start every time, say so in its log, and deliver everything committed before the damage.
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { JOURNAL_FILE } from '../../src/journal/journal.ts';
import type { Event } from '../../src/notifications/event.ts';
import { NotifierProcess } from '../e2e/notifier-process.ts';
import { makeEvents } from '../support/events.ts';
import { TestReceiver } from '../support/receiver.ts';
import { until } from '../support/wait.ts';
import { cleanups, owned, post, runCleanups, serveArgs, statusOf, tempDir, writeEndpoints } from './support.ts';

afterEach(runCleanups);

const ENVELOPES = 8;
const PER_ENVELOPE = 3;
// A WAL frame is a 24-byte header and one page; the journal uses SQLite's default page size.
const FRAME_HEADER = 24;
const WAL_HEADER = 32;

let dir: string;
let queueDir: string;
let journal: string;
let receiver: TestReceiver;
let envelopes: Event[][];

beforeEach(async () => {
  dir = tempDir('rn-corrupt-');
  queueDir = join(dir, 'queue');
  journal = join(queueDir, JOURNAL_FILE);
  receiver = await TestReceiver.start();
  cleanups.push(() => receiver.close());
  const events = makeEvents(ENVELOPES * PER_ENVELOPE, 'tail');
  envelopes = Array.from({ length: ENVELOPES }, (_, i) => events.slice(i * PER_ENVELOPE, (i + 1) * PER_ENVELOPE));
});

function endpoints(disabled: boolean): string {
  return writeEndpoints(dir, { keeper: { url: receiver.url, disabled, maxBatchEvents: 4 } });
}

/**
 * Runs `serve` with the endpoint disabled (events are journaled, nothing is sent), posts every envelope (one
 * transaction each, the last one last in the WAL) and SIGKILLs it: the WAL is left behind, never checkpointed.
 */
async function journalThenKill(): Promise<void> {
  const notifier = owned(await NotifierProcess.start(serveArgs({ endpoints: endpoints(true), queueDir })));
  for (const envelope of envelopes) expect(await post(notifier.ingestUrl, envelope)).toBe(202);
  expect((await statusOf(notifier, 'keeper')).pending).toBe(ENVELOPES * PER_ENVELOPE);
  await notifier.kill();
  expect(existsSync(`${journal}-wal`), 'the WAL of a killed server is still there').toBe(true);
  expect(statSync(`${journal}-wal`).size, 'and holds the transactions').toBeGreaterThan(WAL_HEADER);
}

/** The WAL's page size (big-endian at offset 8 of its header) and how many whole frames it holds. */
function walLayout(): { pageSize: number; frames: number; size: number } {
  const wal = readFileSync(`${journal}-wal`);
  const pageSize = wal.readUInt32BE(8);
  const frames = Math.floor((wal.length - WAL_HEADER) / (FRAME_HEADER + pageSize));
  return { pageSize, frames, size: wal.length };
}

/** Restarts with the endpoint enabled and a healthy receiver; checks the recovery line and what gets delivered. */
async function restartAndExpectAllButLast(): Promise<NotifierProcess> {
  const notifier = owned(await NotifierProcess.start(serveArgs({ endpoints: endpoints(false), queueDir })));
  const recovery = await notifier.waitForLog((l) => typeof l.msg === 'string' && l.msg.includes('did not stop cleanly'), 5_000);
  expect(recovery.level).toBe('warn');
  const committed = envelopes.slice(0, -1).flat().map((e) => e.id);
  await receiver.waitForEvents((events) => events.length >= committed.length, 10_000);
  await until(async () => (await statusOf(notifier, 'keeper')).pending === 0, 'the restored queue to drain');
  // Exactly what was committed before the damaged transaction, in order; the damaged one (the last envelope,
  // which the registry got a 202 for and will not resend) is what a torn write costs.
  expect(receiver.events().map((e) => e.id)).toEqual(committed);
  // The journal keeps working after the recovery: a new envelope goes through.
  const fresh = makeEvents(2, 'after-recovery');
  expect(await post(notifier.ingestUrl, fresh)).toBe(202);
  await receiver.waitForEvents((events) => events.length === committed.length + fresh.length);
  expect(receiver.events().slice(committed.length).map((e) => e.id)).toEqual(fresh.map((e) => e.id));
  return notifier;
}

describe('journal recovery after an unclean stop', { timeout: 30_000 }, () => {
  it('a WAL cut in the middle of its last frame: the last transaction is dropped, everything before it delivered', async () => {
    await journalThenKill();
    const { pageSize, frames, size } = walLayout();
    expect(frames).toBeGreaterThan(ENVELOPES); // the schema and one or more frames per envelope
    truncateSync(`${journal}-wal`, size - Math.floor(pageSize / 2)); // mid-frame: half of the last page is gone
    await restartAndExpectAllButLast();
  });

  it('a WAL whose last frame is garbled: its checksum fails, that transaction is dropped, the rest delivered', async () => {
    await journalThenKill();
    const { pageSize, size } = walLayout();
    const wal = readFileSync(`${journal}-wal`);
    const lastPage = size - pageSize;
    for (let i = lastPage + 100; i < lastPage + 164; i++) wal[i] = wal[i]! ^ 0xa5;
    writeFileSync(`${journal}-wal`, wal);
    await restartAndExpectAllButLast();
  });

  it('a journal.db that is not a database: moved aside with a loud line, a new journal started', async () => {
    mkdirSync(queueDir, { recursive: true });
    writeFileSync(journal, 'this is not an SQLite database, just what a broken disk left behind\n'.repeat(200));
    const notifier = owned(await NotifierProcess.start(serveArgs({ endpoints: endpoints(false), queueDir })));
    const loud = await notifier.waitForLog((l) => typeof l.msg === 'string' && l.msg.includes('unreadable; moved aside'), 5_000);
    expect(loud.level).toBe('error');
    const aside = readdirSync(queueDir).filter((f) => f.startsWith(`${JOURNAL_FILE}.corrupt-`));
    expect(aside).toHaveLength(1);
    expect(loud.movedTo).toBe(join(queueDir, aside[0]!));
    expect(readFileSync(join(queueDir, aside[0]!), 'utf8')).toContain('not an SQLite database'); // kept for a post-mortem
    // The new journal works.
    expect(await post(notifier.ingestUrl, envelopes[0]!)).toBe(202);
    await receiver.waitForEvents((events) => events.length === PER_ENVELOPE);
    expect(receiver.events().map((e) => e.id)).toEqual(envelopes[0]!.map((e) => e.id));
  });

  it('a journal.db garbled in the middle (a corrupt page): refused by the integrity check, moved aside, start succeeds', async () => {
    await journalThenKill();
    // Checkpoint the WAL into the database with a clean run, so the damage lands in pages that hold data.
    const clean = owned(await NotifierProcess.start(serveArgs({ endpoints: endpoints(true), queueDir })));
    expect(await clean.stop('SIGTERM')).toEqual({ code: 0, signal: null });
    const db = readFileSync(journal);
    const pageSize = db.readUInt16BE(16) === 1 ? 65536 : db.readUInt16BE(16);
    expect(db.length).toBeGreaterThan(2 * pageSize);
    for (let i = pageSize; i < db.length; i++) db[i] = (i * 31) & 0xff; // every page after the first: noise
    writeFileSync(journal, db);
    const notifier = owned(await NotifierProcess.start(serveArgs({ endpoints: endpoints(false), queueDir })));
    const loud = await notifier.waitForLog((l) => typeof l.msg === 'string' && l.msg.includes('unreadable; moved aside'), 5_000);
    expect(loud.level).toBe('error');
    expect(await post(notifier.ingestUrl, envelopes[0]!)).toBe(202);
    await receiver.waitForEvents((events) => events.length === PER_ENVELOPE);
  });
});
