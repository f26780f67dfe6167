// The coalescer on its own (api.md §11 `coalesce`), with times given by the test: the key, the fixed window from
// the first event, the two-phase round (nothing remembered until commit), expiry and the cap on keys.
import { describe, expect, it } from 'vitest';
import { Coalescer, coalesceKey } from '../../src/notifications/coalescer.ts';
import type { Event } from '../../src/notifications/event.ts';
import { fixtureEvent } from '../support/events.ts';

const pullTagged = fixtureEvent('pull-manifest-tagged.json'); // pull demo/app:v1
const pullBlob = fixtureEvent('pull-blob.json'); // pull demo/app@sha256:b027…, no tag
const pushTagged = fixtureEvent('push-manifest-tagged.json'); // push demo/app:v1
const with_ = (event: Event, target: Record<string, unknown>, id = `${event.id}-${JSON.stringify(target)}`): Event =>
  ({ ...event, id, target: { ...event.target, ...target } });

/** Decides `events` in one committed round at `at`; true where delivered. */
function decide(coalescer: Coalescer, at: number, ...events: Event[]): boolean[] {
  const round = coalescer.round(at);
  const out = events.map((event) => round.admit(event));
  round.commit();
  return out;
}

describe('coalesceKey', () => {
  it('is (action, repository, tag) for a tagged event and (action, repository, digest) otherwise', () => {
    expect(coalesceKey(pullTagged)).toBe(coalesceKey(with_(pullTagged, { digest: 'sha256:other' })));
    expect(coalesceKey(pullTagged)).not.toBe(coalesceKey(with_(pullTagged, { tag: 'v2' })));
    expect(coalesceKey(pullTagged)).not.toBe(coalesceKey(pushTagged));
    expect(coalesceKey(pullTagged)).not.toBe(coalesceKey(with_(pullTagged, { repository: 'demo/other' })));
    expect(coalesceKey(pullBlob)).toBe(coalesceKey(with_(pullBlob, { size: 1 })));
    expect(coalesceKey(with_(pullTagged, { tag: '' }))).toBe(coalesceKey(with_(pullTagged, { tag: undefined })));
    expect(coalesceKey(with_(pullTagged, { tag: '' }))).not.toBe(coalesceKey(pullTagged));
  });

  it('is undefined without a repository, or with neither a tag nor a digest (such events are never coalesced)', () => {
    expect(coalesceKey(with_(pullTagged, { repository: undefined }))).toBeUndefined();
    expect(coalesceKey(with_(pullTagged, { repository: '' }))).toBeUndefined();
    expect(coalesceKey(with_(pullTagged, { tag: '', digest: '' }))).toBeUndefined();
    const coalescer = new Coalescer({ actions: ['pull'], windowMs: 60_000 });
    const anonymous = with_(pullTagged, { tag: undefined, digest: undefined });
    expect(decide(coalescer, 0, anonymous, anonymous, anonymous)).toEqual([true, true, true]);
  });
});

describe('Coalescer', () => {
  it('delivers the first event, coalesces the same key within the window, delivers again once it has ended', () => {
    const coalescer = new Coalescer({ actions: ['pull'], windowMs: 60_000 });
    expect(decide(coalescer, 1_000, pullTagged)).toEqual([true]);
    expect(decide(coalescer, 1_001, pullTagged, pullTagged)).toEqual([false, false]);
    expect(decide(coalescer, 60_999, pullTagged)).toEqual([false]);
    expect(decide(coalescer, 61_000, pullTagged)).toEqual([true]); // the window is [1000, 61000)
    expect(decide(coalescer, 61_001, pullTagged)).toEqual([false]);
  });

  it('keeps a fixed window: duplicates do not extend it (one event per window under a steady stream)', () => {
    const coalescer = new Coalescer({ actions: ['pull'], windowMs: 10_000 });
    const delivered: number[] = [];
    for (let at = 0; at < 60_000; at += 1_000) if (decide(coalescer, at, pullTagged)[0]) delivered.push(at);
    expect(delivered).toEqual([0, 10_000, 20_000, 30_000, 40_000, 50_000]);
  });

  it('never coalesces different tags, digests, repositories or actions', () => {
    const coalescer = new Coalescer({ actions: ['pull', 'push'], windowMs: 60_000 });
    const events = [
      pullTagged,
      with_(pullTagged, { tag: 'v2' }),
      pullBlob,
      with_(pullBlob, { digest: 'sha256:0000000000000000000000000000000000000000000000000000000000000000' }),
      with_(pullTagged, { repository: 'demo/other' }),
      pushTagged,
    ];
    expect(decide(coalescer, 0, ...events)).toEqual(events.map(() => true));
    expect(decide(coalescer, 1, ...events)).toEqual(events.map(() => false));
  });

  it('never coalesces actions it does not list', () => {
    const coalescer = new Coalescer({ actions: ['pull'], windowMs: 60_000 });
    const mount = fixtureEvent('mount-blob.json');
    const deleted = fixtureEvent('delete-tag.json');
    expect(decide(coalescer, 0, pushTagged, pushTagged, mount, mount, deleted, deleted)).toEqual([true, true, true, true, true, true]);
    expect(coalescer.size).toBe(0);
  });

  it('coalesces within one round too, and counts what it coalesced when committed', () => {
    const coalescer = new Coalescer({ actions: ['pull'], windowMs: 60_000 });
    const counts: number[] = [];
    const round = coalescer.round(0, (n) => counts.push(n));
    expect([pullTagged, pullBlob, pullTagged, pullTagged].map((e) => round.admit(e))).toEqual([true, true, false, false]);
    expect(round.coalesced).toBe(2);
    expect(counts).toEqual([]);
    round.commit();
    round.commit(); // a second commit does nothing
    expect(counts).toEqual([2]);
    coalescer.round(1, (n) => counts.push(n)).commit(); // nothing coalesced: nothing reported
    expect(counts).toEqual([2]);
  });

  it('remembers nothing from a round that is never committed (a refused request opens no window)', () => {
    const coalescer = new Coalescer({ actions: ['pull'], windowMs: 60_000 });
    const refused = coalescer.round(0);
    expect(refused.admit(pullTagged)).toBe(true);
    expect(coalescer.size).toBe(0);
    expect(decide(coalescer, 1, pullTagged)).toEqual([true]); // the resend is delivered, not coalesced
  });

  it('keeps the window a concurrent round opened first', () => {
    const coalescer = new Coalescer({ actions: ['pull'], windowMs: 10_000 });
    const first = coalescer.round(0);
    const second = coalescer.round(5_000);
    expect(first.admit(pullTagged)).toBe(true);
    expect(second.admit(pullTagged)).toBe(true); // decided before the first committed: both go through
    first.commit();
    second.commit();
    expect(decide(coalescer, 9_999, pullTagged)).toEqual([false]);
    expect(decide(coalescer, 10_000, pullTagged)).toEqual([true]); // the first round's window, not one from 5000
  });

  it('forgets windows that ended, so memory follows the keys of one window', () => {
    const coalescer = new Coalescer({ actions: ['pull'], windowMs: 1_000 });
    for (let i = 0; i < 100; i++) decide(coalescer, i * 10, with_(pullTagged, { tag: `t${i}` }));
    expect(coalescer.size).toBe(100);
    decide(coalescer, 1_500, with_(pullTagged, { tag: 'late' }));
    expect(coalescer.size).toBe(50); // t51 (opened at 510, open until 1510) … t99 are still open, plus "late"
    expect(coalescer.forgotten).toBe(0);
  });

  it('at its cap ends the oldest window early: that key is delivered again rather than dropped', () => {
    const coalescer = new Coalescer({ actions: ['pull'], windowMs: 60_000 }, { maxKeys: 3 });
    const tag = (t: string): Event => with_(pullTagged, { tag: t });
    expect(decide(coalescer, 0, tag('a'), tag('b'), tag('c'))).toEqual([true, true, true]);
    expect(decide(coalescer, 1, tag('d'))).toEqual([true]);
    expect(coalescer.size).toBe(3);
    expect(coalescer.forgotten).toBe(1);
    expect(decide(coalescer, 2, tag('b'), tag('c'), tag('d'))).toEqual([false, false, false]);
    expect(decide(coalescer, 3, tag('a'))).toEqual([true]); // forgotten early: delivered, and b's window is now the oldest
    expect(decide(coalescer, 4, tag('b'))).toEqual([true]);
    expect(coalescer.forgotten).toBe(3);
  });
});
