// What the journal keeps for an endpoint is dropped only when the endpoint is known to be gone: a definition
// file that cannot be read at start (a half-written edit, a YAML syntax error) must not cost its events.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { JOURNAL_FILE } from '../../src/journal/journal.ts';
import { NotifierProcess } from '../e2e/notifier-process.ts';
import { makeEvents } from '../support/events.ts';
import { TestReceiver } from '../support/receiver.ts';
import { cleanups, journalCounts, owned, post, runCleanups, serveArgs, tempDir, writeEndpoints } from './support.ts';

afterEach(runCleanups);

describe('journal rows of endpoints that seem to be gone', { timeout: 40_000 }, () => {
  it('survive an unreadable endpoints file at start, and are dropped once a readable file no longer has the endpoint', async () => {
    const dir = tempDir('rn-forget-');
    const queueDir = join(dir, 'queue');
    const journal = join(queueDir, JOURNAL_FILE);
    const dead = await TestReceiver.start();
    await dead.close(); // refused: events stay pending
    const file = writeEndpoints(dir, { keep: { url: dead.url, backoff: '1h', threshold: 1 } });
    const first = owned(await NotifierProcess.start(serveArgs({ endpoints: file, queueDir, extra: ['--shutdown-grace', '200ms'] })));
    expect(await post(first.ingestUrl, makeEvents(3, 'owed'))).toBe(202);
    expect(await first.stop('SIGTERM')).toEqual({ code: 0, signal: null });
    expect(journalCounts(journal).pending).toBe(3);

    writeFileSync(file, 'apiVersion: registry-notifier.io/v1alpha1\nkind: NotificationEndpoint\nmetadata: {name: keep\nspec: [');
    const broken = owned(await NotifierProcess.start(serveArgs({ endpoints: file, queueDir })));
    expect(await broken.stop('SIGTERM')).toEqual({ code: 0, signal: null });
    expect(journalCounts(journal).pending).toBe(3);
    expect(broken.logs.some((l) => String(l.msg).includes('no longer exists'))).toBe(false);

    const live = await TestReceiver.start();
    cleanups.push(() => live.close());
    writeEndpoints(dir, { keep: { url: live.url } });
    const fixed = owned(await NotifierProcess.start(serveArgs({ endpoints: file, queueDir })));
    await live.waitFor(() => live.events().length >= 3, 10_000);
    expect(live.events().map((e) => e.id)).toEqual(['owed-0', 'owed-1', 'owed-2']);
    expect(await fixed.stop('SIGTERM')).toEqual({ code: 0, signal: null });

    const stopped = owned(await NotifierProcess.start(serveArgs({ endpoints: writeEndpoints(dir, { other: { url: dead.url, backoff: '1h', threshold: 1 } }), queueDir, extra: ['--shutdown-grace', '200ms'] })));
    expect(await post(stopped.ingestUrl, makeEvents(2, 'other'))).toBe(202);
    expect(await stopped.stop('SIGTERM')).toEqual({ code: 0, signal: null });
    writeEndpoints(dir, {});
    const emptied = owned(await NotifierProcess.start(serveArgs({ endpoints: file, queueDir })));
    expect(await emptied.stop('SIGTERM')).toEqual({ code: 0, signal: null });
    expect(emptied.logs.find((l) => String(l.msg).includes('no longer exists'))).toMatchObject({ endpoint: 'other', discarded: 2 });
    expect(journalCounts(journal)).toEqual({ events: 0, pending: 0, deadLetters: 0 });
  });
});
