// The crash drill: `serve --queue-dir` as a child process, a 10k-event burst from concurrent posters into a backlog
// (slow receivers), SIGKILL in the middle of it, restart on the same journal. Every event that got a 202 must
// reach every endpoint whose filter takes it, in the order the ingest accepted it; duplicates only for what was on
// the wire at the kill; envelopes without an answer all-or-nothing.
import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { JOURNAL_FILE } from '../../src/journal/journal.ts';
import type { Event } from '../../src/notifications/event.ts';
import { NotifierProcess } from '../e2e/notifier-process.ts';
import { makeEvents } from '../support/events.ts';
import { type ReceivedEvent, TestReceiver } from '../support/receiver.ts';
import { until } from '../support/wait.ts';
import { cleanups, journalCounts, owned, post, prng, runCleanups, serveArgs, statusOf, tempDir, writeEndpoints } from './support.ts';

afterEach(runCleanups);

const TOTAL_EVENTS = 10_000;
const POSTERS = 6;
const KILL_AFTER_ACCEPTED = 4_000; // events with a 202 before the SIGKILL: well into the burst, well before its end
const BATCH = { all: 5, 'team-a': 3 } as const;
// Receivers before the kill hold every answer this long: far slower than the ingest, so a backlog builds.
const HOLD_MS = { all: 4, 'team-a': 3 } as const;

type Name = keyof typeof BATCH;
const takes: Record<Name, (event: Event) => boolean> = {
  all: () => true,
  'team-a': (event) => String(event.target.repository).startsWith('team-a/'),
};

interface Envelope {
  poster: number;
  events: Event[];
  /** 'accepted' = 202; 'refused' = another status; 'unanswered' = the connection died (in flight at the kill). */
  outcome?: 'accepted' | 'refused' | 'unanswered';
}

/** The burst, split per poster into envelopes of 1-20 events with unique ids; a third go to team-a/ repositories. */
function burst(seed: number): Envelope[][] {
  const random = prng(seed);
  const template = makeEvents(1, 'template')[0]!;
  const perPoster: Envelope[][] = Array.from({ length: POSTERS }, () => []);
  for (let n = 0; n < TOTAL_EVENTS; ) {
    const poster = n % POSTERS;
    const size = Math.min(1 + Math.floor(random() * 20), TOTAL_EVENTS - n);
    const events = Array.from({ length: size }, (_, i): Event => {
      const k = n + i;
      const repository = k % 3 === 0 ? `team-a/app-${poster}` : `team-b/app-${poster}`;
      return { ...template, id: `p${poster}-e${k}`, target: { ...template.target, repository, tag: `v${k}` } };
    });
    perPoster[poster]!.push({ poster, events });
    n += size;
  }
  return perPoster;
}

describe('crash drill: SIGKILL during a burst, restart on the same journal', { timeout: 40_000 }, () => {
  it('delivers every 202-acknowledged event to every matching endpoint, in order, with bounded duplicates', async () => {
    const dir = tempDir('rn-crash-');
    const queueDir = join(dir, 'queue');
    const receivers = {} as Record<Name, TestReceiver>;
    for (const name of Object.keys(BATCH) as Name[]) {
      const receiver = await TestReceiver.start();
      cleanups.push(() => receiver.close());
      receiver.respond(() => new Promise((resolve) => setTimeout(() => resolve(200), HOLD_MS[name]))); // a slow receiver
      receivers[name] = receiver;
    }
    const endpoints = writeEndpoints(dir, {
      all: { url: receivers.all.url, maxBatchEvents: BATCH.all, timeout: '5s' },
      'team-a': { url: receivers['team-a'].url, maxBatchEvents: BATCH['team-a'], timeout: '5s', filter: { repositories: { include: ['team-a/**'] } } },
    });
    const args = serveArgs({ endpoints, queueDir });
    const first = owned(await NotifierProcess.start(args));

    // The burst: each poster sends its envelopes one after the other (so its own order is the accepted order),
    // the posters all at once. At KILL_AFTER_ACCEPTED the server is SIGKILLed from inside the response handler.
    const plan = burst(0x5eed);
    let accepted = 0;
    let killedAt = 0;
    let killing: Promise<void> | undefined;
    const started = Date.now();
    await Promise.all(
      plan.map(async (envelopes) => {
        for (const envelope of envelopes) {
          try {
            const status = await post(first.ingestUrl, envelope.events);
            envelope.outcome = status === 202 ? 'accepted' : 'refused';
          } catch {
            envelope.outcome = 'unanswered';
            return; // the server is gone: this poster's burst ends here
          }
          if (envelope.outcome === 'accepted') accepted += envelope.events.length;
          if (accepted >= KILL_AFTER_ACCEPTED && !killing) {
            killedAt = Date.now();
            killing = first.kill();
          }
        }
      }),
    );
    expect(killing, 'the burst ended before the kill').toBeDefined();
    await killing;
    expect(await first.exited).toEqual({ code: null, signal: 'SIGKILL' });
    const journal = join(queueDir, JOURNAL_FILE);
    expect(existsSync(`${journal}-wal`) && statSync(`${journal}-wal`).size > 0, 'a killed server leaves its WAL behind').toBe(true);

    const all = plan.flat();
    expect(all.filter((e) => e.outcome === 'refused'), 'no envelope was refused during the burst').toEqual([]);
    const acceptedEvents = all.filter((e) => e.outcome === 'accepted').flatMap((e) => e.events);
    const unanswered = all.filter((e) => e.outcome === 'unanswered');
    expect(acceptedEvents.length).toBeGreaterThanOrEqual(KILL_AFTER_ACCEPTED);
    expect(acceptedEvents.length, 'the kill came in the middle of the burst').toBeLessThan(TOTAL_EVENTS);
    const cut = {} as Record<Name, number>;
    for (const name of Object.keys(BATCH) as Name[]) cut[name] = receivers[name].events().length;
    const backlog = acceptedEvents.filter(takes.all).length - cut.all;
    expect(backlog, 'a backlog had built up at the kill').toBeGreaterThan(500);
    console.log(
      `[measure] crash drill: ${acceptedEvents.length} events in ${all.filter((e) => e.outcome === 'accepted').length} envelopes accepted (202) ` +
        `in ${killedAt - started} ms before the SIGKILL; ${unanswered.length} envelopes unanswered; ` +
        `delivered before the kill: all=${cut.all}, team-a=${cut['team-a']}; backlog of all: ${backlog}`,
    );

    // Restart on the same journal; the receivers are healthy now.
    for (const receiver of Object.values(receivers)) receiver.respond(null);
    const restartedAt = Date.now();
    const second = owned(await NotifierProcess.start(args));
    await second.waitForLog((l) => typeof l.msg === 'string' && l.msg.includes('did not stop cleanly'), 5_000);
    await until(async () => (await statusOf(second, 'all')).pending === 0 && (await statusOf(second, 'team-a')).pending === 0, 'both queues to drain', 25_000);
    const drainMs = Date.now() - restartedAt;

    const unansweredIds = new Set(unanswered.flatMap((e) => e.events.map((ev) => ev.id)));
    const sent = new Map(all.flatMap((e) => e.events.map((ev) => [ev.id, ev] as const)));
    const posterOf = new Map(all.flatMap((e) => e.events.map((ev) => [ev.id, e.poster] as const)));
    const figures: string[] = [];
    const firstSeen = {} as Record<Name, string[]>;
    for (const name of Object.keys(BATCH) as Name[]) {
      const received = receivers[name].events();
      const before = received.slice(0, cut[name]);
      const after = received.slice(cut[name]);
      const ids = received.map((e) => e.id);
      const owed = acceptedEvents.filter(takes[name]).map((e) => e.id);
      const owedSet = new Set(owed);
      const got = new Set(ids);

      // Every 202-acknowledged event the endpoint takes arrived.
      expect(owed.filter((id) => !got.has(id)), `${name}: acknowledged events never delivered`).toEqual([]);
      // Nothing arrived that was not sent, or that its filter refuses, or that was refused.
      const strays = ids.filter((id) => !sent.has(id) || !takes[name](sent.get(id)!) || !(owedSet.has(id) || unansweredIds.has(id)));
      expect(strays, `${name}: events it should not have`).toEqual([]);
      // An envelope without an answer was journaled whole or not at all.
      for (const envelope of unanswered) {
        const mine = envelope.events.filter(takes[name]).map((e) => e.id);
        const arrived = mine.filter((id) => got.has(id)).length;
        expect([0, mine.length], `${name}: envelope ${mine[0]} arrived in part`).toContain(arrived);
      }

      // Duplicates: only what was on the wire at the kill (one batch), first thing after the restart, ids and bodies kept.
      const beforeIds = new Set(before.map((e) => e.id));
      const duplicated = after.filter((e) => beforeIds.has(e.id));
      expect(duplicated.length, `${name}: duplicates beyond the batch in flight`).toBeLessThanOrEqual(BATCH[name]);
      expect(after.slice(0, duplicated.length).map((e) => e.id), `${name}: duplicates come first`).toEqual(duplicated.map((e) => e.id));
      expect(new Set(after.map((e) => e.id)).size, `${name}: duplicates after the restart`).toBe(after.length);
      const bodyOf = new Map(before.map((e) => [e.id, JSON.stringify(e)]));
      for (const dup of duplicated) expect(JSON.stringify(dup)).toBe(bodyOf.get(dup.id));

      // Order: first occurrences follow each poster's sending order...
      const order = dedupe(received);
      for (let p = 0; p < POSTERS; p++) {
        const mine = order.filter((id) => posterOf.get(id) === p);
        const expected = all.filter((e) => e.poster === p).flatMap((e) => e.events.filter(takes[name]).map((ev) => ev.id)).filter((id) => got.has(id));
        expect(mine, `${name}: poster ${p} out of order`).toEqual(expected);
      }
      firstSeen[name] = order;
      figures.push(`${name}: ${after.length} delivered after the restart, ${duplicated.length} duplicates`);
    }
    // ...and the global order (the journal's seq) is the same at both endpoints: team-a's stream is all's, filtered.
    const teamA = new Set(firstSeen['team-a']);
    expect(firstSeen.all.filter((id) => teamA.has(id))).toEqual(firstSeen['team-a']);
    const allGot = new Set(receivers.all.events().map((e) => e.id));
    const journaledAnyway = unanswered.filter((e) => allGot.has(e.events[0]!.id)).length;
    console.log(
      `[measure] crash drill after restart: ${figures.join('; ')}; drained in ${drainMs} ms (from spawn); ` +
        `${journaledAnyway} of ${unanswered.length} unanswered envelopes had been journaled (delivered whole)`,
    );

    // The journal keeps only what is still owed: nothing, once drained and stopped cleanly.
    expect(await second.stop('SIGTERM')).toEqual({ code: 0, signal: null });
    expect(existsSync(`${journal}-wal`) ? statSync(`${journal}-wal`).size : 0, 'a clean stop checkpoints the WAL').toBe(0);
    expect(journalCounts(journal)).toEqual({ events: 0, pending: 0, deadLetters: 0 });
  });
});

function dedupe(events: readonly ReceivedEvent[]): string[] {
  const seen = new Set<string>();
  const out: string[] = [];
  for (const { id } of events) {
    if (seen.has(id)) continue;
    seen.add(id);
    out.push(id);
  }
  return out;
}
