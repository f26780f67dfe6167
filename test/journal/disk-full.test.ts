// The journal's disk fills up while `serve --queue-dir` runs (a real full file system: a small tmpfs filled to
// the last byte). Refused requests leave nothing behind, deliveries whose acknowledgement cannot be written are
// not sent again, each condition is logged once, and everything works again once space returns.
import { execFileSync } from 'node:child_process';
import { closeSync, mkdirSync, openSync, rmSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { NotifierProcess } from '../e2e/notifier-process.ts';
import { makeEvents } from '../support/events.ts';
import { TestReceiver } from '../support/receiver.ts';
import { until } from '../support/wait.ts';
import { cleanups, metricValue, owned, post, runCleanups, serveArgs, statusOf, tempDir, writeEndpoints } from './support.ts';

afterEach(runCleanups);

// Mounting a tmpfs needs root, as CI has; elsewhere the drill is skipped, loudly.
const root = process.getuid?.() === 0;
if (!root) {
  if (process.env.CI) throw new Error('the disk-full drill needs root (it mounts a tmpfs) and must run in CI');
  console.warn('SKIPPED test/journal/disk-full.test.ts: not root, cannot mount a tmpfs for a real full disk');
}

/** A 4 MiB tmpfs, unmounted at cleanup. */
function smallDisk(): string {
  const dir = tempDir('rn-disk-full-');
  const mount = join(dir, 'disk');
  mkdirSync(mount);
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=4m', 'tmpfs', mount]);
  cleanups.push(() => execFileSync('umount', ['-l', mount]));
  return mount;
}

/** Writes a file until the file system refuses (ENOSPC); returns its path. */
function fill(disk: string): string {
  const path = join(disk, 'filler');
  const fd = openSync(path, 'w');
  const block = Buffer.alloc(4096, 1);
  try {
    for (;;) writeSync(fd, block);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOSPC') throw error;
  } finally {
    closeSync(fd);
  }
  return path;
}

describe.runIf(root)('a full disk under the journal', { timeout: 60_000 }, () => {
  it('refuses with 503 and keeps nothing, never re-sends what it delivered, logs each condition once, recovers', async () => {
    const disk = smallDisk();
    const dir = tempDir('rn-disk-full-cfg-');
    const r = await TestReceiver.start();
    cleanups.push(() => r.close());
    r.respond(() => 503); // the first events stay pending while the disk fills
    const notifier = owned(await NotifierProcess.start(serveArgs({
      endpoints: writeEndpoints(dir, { hook: { url: r.url, backoff: '50ms', threshold: 1 } }),
      queueDir: join(disk, 'queue'),
    })));
    const owed = makeEvents(2, 'owed');
    expect(await post(notifier.ingestUrl, owed)).toBe(202);
    await until(async () => (await statusOf(notifier, 'hook')).failures > 0, 'a refused attempt');

    fill(disk);
    // Big requests need new pages: with the disk full they are refused, however often the registry retries.
    const padded = makeEvents(40, 'refused').map((e) => ({ ...e, pad: 'x'.repeat(4000) }));
    const statuses: number[] = [];
    for (let i = 0; i < 10; i++) statuses.push(await post(notifier.ingestUrl, padded));
    expect(statuses).toContain(503);
    expect(statuses.filter((s) => s !== 503 && s !== 202), 'nothing but 202 or 503').toEqual([]);
    expect(await metricValue(notifier, 'registry_notifier_storage_available', { backend: 'journal' })).toBe(0);

    // The receiver comes back while the disk is still full: each owed event is delivered once.
    r.respond(null);
    await r.waitFor(() => r.events({ acceptedOnly: true }).length >= 2);
    // A second or two of refused requests: long enough for the old bug to have sent the head event again. Time
    // passing is the point here (the journal retries what it could not record every second), not a synchronisation.
    const deadline = Date.now() + 2500;
    while (Date.now() < deadline) {
      statuses.push(await post(notifier.ingestUrl, padded.slice(0, 10)));
      await new Promise((resolve) => setTimeout(resolve, 20)); // a registry retrying, not a synchronisation
    }

    rmSync(join(disk, 'filler'));
    const resent = makeEvents(3, 'after');
    await until(async () => (await post(notifier.ingestUrl, resent)) === 202, 'the ingest to accept again');
    await r.waitFor(() => r.events({ acceptedOnly: true }).some((e) => e.id === 'after-2'));
    await until(async () => (await statusOf(notifier, 'hook')).pending === 0, 'the queue to drain');
    expect(await metricValue(notifier, 'registry_notifier_storage_available', { backend: 'journal' })).toBe(1);

    const ids = r.events({ acceptedOnly: true }).map((e) => e.id);
    const accepted = statuses.filter((s) => s === 202).length;
    // What the ingest refused never arrives; what it accepted arrives once, in order.
    const expected = [...owed.map((e) => e.id), ...(accepted > 0 ? padded.map((e) => e.id) : []), ...resent.map((e) => e.id)];
    if (accepted === 0) expect(ids).toEqual(expected);
    else expect(new Set(ids).size, `no event twice: ${ids.join(' ')}`).toBe(ids.length);
    expect(ids.filter((id) => id === 'owed-0'), 'the head event is not sent again while its acknowledgement cannot be written').toHaveLength(1);

    const lines = (msg: string): number => notifier.logs.filter((l) => l.msg === msg).length;
    expect(lines('ingest: events cannot be stored; answering 503 until they can'), notifier.describe()).toBe(1);
    expect(lines('ingest: events are stored again')).toBe(1);
    expect(lines('journal: cannot record deliveries; kept in memory and retried every second (a restart before then sends those events again)')).toBeLessThanOrEqual(1);
    expect(notifier.logs.filter((l) => l.level === 'error' || l.level === 'warn').length, `one line per condition, not per request: ${notifier.describe()}`).toBeLessThanOrEqual(3);
    expect(await notifier.stop('SIGTERM')).toEqual({ code: 0, signal: null });
  });
});
