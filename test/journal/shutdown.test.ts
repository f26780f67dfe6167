// A graceful stop with --queue-dir: what the grace period could not deliver is given up in memory but stays in
// the journal (no `drop`), and the next start delivers it. An attempt in flight when the grace runs out is let
// finish and its outcome recorded before the journal closes, so it is not sent twice.
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { JOURNAL_FILE } from '../../src/journal/journal.ts';
import { NotifierProcess } from '../e2e/notifier-process.ts';
import { makeEvents } from '../support/events.ts';
import { TestReceiver } from '../support/receiver.ts';
import { until } from '../support/wait.ts';
import { cleanups, journalCounts, owned, post, runCleanups, serveArgs, statusOf, tempDir, writeEndpoints } from './support.ts';

afterEach(runCleanups);

async function receiver(): Promise<TestReceiver> {
  const r = await TestReceiver.start();
  cleanups.push(() => r.close());
  return r;
}

describe('graceful shutdown with a journal', { timeout: 30_000 }, () => {
  it('SIGTERM with a dead receiver: exit 0, the undelivered events stay journaled and go out after the restart, in order', async () => {
    const dir = tempDir('rn-shutdown-');
    const queueDir = join(dir, 'queue');
    const journal = join(queueDir, JOURNAL_FILE);
    const dead = await receiver();
    await dead.close(); // nothing listens there any more: every attempt is refused
    const events = makeEvents(12, 'kept');
    const first = owned(await NotifierProcess.start(serveArgs({
      endpoints: writeEndpoints(dir, { down: { url: dead.url, maxBatchEvents: 5, backoff: '50ms' } }),
      queueDir,
      extra: ['--shutdown-grace', '300ms'],
    })));
    for (let i = 0; i < events.length; i += 4) expect(await post(first.ingestUrl, events.slice(i, i + 4))).toBe(202);
    await until(async () => (await statusOf(first, 'down')).errors > 0, 'a refused attempt');
    expect(await first.stop('SIGTERM')).toEqual({ code: 0, signal: null });
    const stopped = first.logs.find((l) => l.msg === 'stopped');
    expect(stopped, first.describe()).toMatchObject({ level: 'info', undelivered: 12, byEndpoint: { down: 12 }, keptIn: 'journal' });
    // A clean stop checkpoints: the WAL is gone or empty, the events are in the database itself.
    expect(existsSync(`${journal}-wal`) ? statSync(`${journal}-wal`).size : 0).toBe(0);
    expect(journalCounts(journal)).toEqual({ events: 12, pending: 12, deadLetters: 0 });

    const live = await receiver();
    const second = owned(await NotifierProcess.start(serveArgs({
      endpoints: writeEndpoints(dir, { down: { url: live.url, maxBatchEvents: 5 } }),
      queueDir,
    })));
    await live.waitFor(() => live.events({ acceptedOnly: true }).length >= 12);
    await until(async () => (await statusOf(second, 'down')).pending === 0, 'the restored queue to drain');
    expect(live.events().map((e) => e.id)).toEqual(events.map((e) => e.id));
    expect(second.logs.some((l) => typeof l.msg === 'string' && l.msg.includes('did not stop cleanly')), 'the stop was clean').toBe(false);
    expect(await second.stop('SIGTERM')).toEqual({ code: 0, signal: null });
    expect(journalCounts(journal)).toEqual({ events: 0, pending: 0, deadLetters: 0 });
  });

  it('an attempt in flight when the grace runs out is let finish and recorded: delivered once, the rest after the restart', async () => {
    const dir = tempDir('rn-shutdown-');
    const queueDir = join(dir, 'queue');
    const slow = await receiver();
    let release: (() => void) | undefined;
    // The first request is held until the test lets it go; the others are refused, so they stay owed.
    slow.respond((req) => (req.seq === 0 ? new Promise((resolve) => (release = () => resolve(200))) : 503));
    const events = makeEvents(6, 'held');
    const endpoints = writeEndpoints(dir, { slow: { url: slow.url, maxBatchEvents: 2, timeout: '20s', backoff: '50ms' } });
    const first = owned(await NotifierProcess.start(serveArgs({ endpoints, queueDir, extra: ['--shutdown-grace', '200ms'] })));
    expect(await post(first.ingestUrl, events)).toBe(202);
    await slow.waitFor((requests) => requests.length === 1);
    const exited = first.stop('SIGTERM', 20_000);
    let done = false;
    void exited.then(() => (done = true));
    await first.waitForLog((l) => l.msg === 'shutting down: draining queues');
    // A measured interval, not a synchronisation: five times the grace, after which the process is still there,
    // waiting for the answer to the request on the wire.
    await new Promise((resolve) => setTimeout(resolve, 1000));
    expect(done, 'the process did not wait for the attempt in flight').toBe(false);
    release!();
    expect(await exited).toEqual({ code: 0, signal: null });
    expect(first.logs.find((l) => l.msg === 'stopped')).toMatchObject({ undelivered: 4 });
    expect(journalCounts(join(queueDir, JOURNAL_FILE))).toEqual({ events: 4, pending: 4, deadLetters: 0 });

    slow.respond(null);
    const second = owned(await NotifierProcess.start(serveArgs({ endpoints, queueDir })));
    await slow.waitFor(() => slow.events({ acceptedOnly: true }).length >= 6);
    await until(async () => (await statusOf(second, 'slow')).pending === 0, 'the rest delivered');
    expect(slow.events().map((e) => e.id), 'the held batch is not sent twice').toEqual(events.map((e) => e.id));
  });

  it('a second serve on the same --queue-dir refuses to start (exit 1, one clear line); the first keeps its journal', async () => {
    const dir = tempDir('rn-shutdown-');
    const queueDir = join(dir, 'queue');
    const live = await receiver();
    const endpoints = writeEndpoints(dir, { one: { url: live.url } });
    const first = owned(await NotifierProcess.start(serveArgs({ endpoints, queueDir })));
    const second = await NotifierProcess.start(serveArgs({ endpoints, queueDir })).then(
      (started) => (owned(started), 'started'),
      (error: Error) => error.message,
    );
    expect(second).toMatch(/exited \(\{"code":1,"signal":null\}\)/);
    expect(second).toMatch(/registry-notifier: journal .*journal\.db is in use by another process .*--queue-dir\?/);
    expect(readdirSync(queueDir).filter((f) => f.includes('corrupt'))).toEqual([]);
    const events = makeEvents(3, 'first');
    expect(await post(first.ingestUrl, events)).toBe(202);
    await live.waitFor(() => live.events({ acceptedOnly: true }).length === 3);
    expect(live.events().map((e) => e.id)).toEqual(events.map((e) => e.id));
  });
});

