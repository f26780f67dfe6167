// The dead-letter round trip with the real command: `serve` (child process) gives up on a receiver that answers
// 500 after `retry.maxAttempts: 2`, the receiver recovers, `registry-notifier replay --endpoint NAME` (another
// child process) asks the server to put the dead letters back, and the receiver gets them in their order. With
// `--queue-dir` the dead letters outlive a SIGKILL and replay after the restart.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { JOURNAL_FILE } from '../../src/journal/journal.ts';
import { NotifierProcess } from '../e2e/notifier-process.ts';
import { makeEvents } from '../support/events.ts';
import { TestReceiver } from '../support/receiver.ts';
import { until } from '../support/wait.ts';
import { cleanups, journalCounts, metricValue, owned, post, runCleanups, runCommand, serveArgs, statusOf, tempDir, writeEndpoints } from './support.ts';

afterEach(runCleanups);

const TOKEN = 'replay-ingest-token-41f9';
const EVENTS = makeEvents(5, 'dead');

let dir: string;
let tokenFile: string;
let receiver: TestReceiver;
let endpoints: string;

beforeEach(async () => {
  dir = tempDir('rn-replay-');
  tokenFile = join(dir, 'token');
  writeFileSync(tokenFile, `${TOKEN}\n`);
  receiver = await TestReceiver.start();
  cleanups.push(() => receiver.close());
  receiver.respond(() => 500);
  endpoints = writeEndpoints(dir, {
    refused: { url: receiver.url, backoff: '10ms', retry: { maxAttempts: 2 } },
  });
});

/** `--metrics-listen` of a running server, as the replay command takes it. */
const adminAddress = (notifier: NotifierProcess): string => new URL(notifier.adminUrl).host;

/** Runs the replay command against `notifier`; `tokenFile` null sends no token. */
const replay = (notifier: NotifierProcess, endpoint: string, token: string | null = tokenFile): ReturnType<typeof runCommand> =>
  runCommand(['replay', '--endpoint', endpoint, '--metrics-listen', adminAddress(notifier), ...(token !== null ? ['--ingest-token-file', token] : [])]);

/** Posts the events (two envelopes) and waits until all five are dead letters; checks the counters. */
async function deadLetterAll(notifier: NotifierProcess): Promise<void> {
  expect(await post(notifier.ingestUrl, EVENTS.slice(0, 2), TOKEN)).toBe(202);
  expect(await post(notifier.ingestUrl, EVENTS.slice(2), TOKEN)).toBe(202);
  await until(async () => (await statusOf(notifier, 'refused')).deadLettered === 5, 'five dead letters', 10_000);
  const status = await statusOf(notifier, 'refused');
  expect(status).toMatchObject({ pending: 0, delivered: 0, failures: 10, deadLettered: 5, responses: [{ code: 500, count: 10 }] });
  expect(await metricValue(notifier, 'registry_notifier_dead_lettered_total', { endpoint: 'refused' })).toBe(5);
  expect(receiver.events().map((e) => e.id)).toEqual(EVENTS.flatMap((e) => [e.id, e.id])); // two attempts each
}

/** The receiver recovers; the replay command brings the five back, in order. */
async function replayAndExpectDelivery(notifier: NotifierProcess): Promise<void> {
  receiver.clear();
  receiver.respond(null);
  const result = await replay(notifier, 'refused');
  expect(result, result.stderr).toMatchObject({ code: 0, stdout: 'replayed 5 dead letters of refused\n', stderr: '' });
  await receiver.waitFor(() => receiver.events({ acceptedOnly: true }).length === 5);
  await until(async () => (await statusOf(notifier, 'refused')).pending === 0, 'the replay to drain');
  expect(receiver.events().map((e) => e.id)).toEqual(EVENTS.map((e) => e.id));
  expect((await statusOf(notifier, 'refused')).delivered).toBe(5);
  const again = await replay(notifier, 'refused');
  expect(again).toMatchObject({ code: 0, stdout: 'replayed 0 dead letters of refused\n' });
}

describe('registry-notifier replay', { timeout: 30_000 }, () => {
  it('in memory: dead-lettered after two attempts, replayed in order once the receiver recovers', async () => {
    const notifier = owned(await NotifierProcess.start(serveArgs({ endpoints, tokenFile })));
    await deadLetterAll(notifier);
    await replayAndExpectDelivery(notifier);
    expect(notifier.logs.some((l) => l.msg === 'dead letters replayed' && l.endpoint === 'refused' && l.replayed === 5)).toBe(true);
  });

  it('with --queue-dir: the dead letters survive a SIGKILL and replay after the restart', async () => {
    const queueDir = join(dir, 'queue');
    const args = serveArgs({ endpoints, tokenFile, queueDir });
    const first = owned(await NotifierProcess.start(args));
    await deadLetterAll(first);
    await first.kill();
    receiver.clear();
    receiver.respond(null);

    const second = owned(await NotifierProcess.start(args));
    expect((await statusOf(second, 'refused')).pending, 'dead letters are not sent again on their own').toBe(0);
    await replayAndExpectDelivery(second);
    expect(await second.stop('SIGTERM')).toEqual({ code: 0, signal: null });
    expect(journalCounts(join(queueDir, JOURNAL_FILE)), 'nothing is owed any more').toEqual({ events: 0, pending: 0, deadLetters: 0 });
  });

  it('refusals: an unknown endpoint (404), no or a wrong token (401), no token configured (403), no server: exit 1, one clear line', async () => {
    const notifier = owned(await NotifierProcess.start(serveArgs({ endpoints, tokenFile })));
    const unknown = await replay(notifier, 'nope');
    expect(unknown).toMatchObject({ code: 1, stdout: '', stderr: 'registry-notifier: replay refused (404): no endpoint nope\n' });
    const anonymous = await replay(notifier, 'refused', null);
    expect(anonymous).toMatchObject({ code: 1, stdout: '', stderr: 'registry-notifier: replay refused (401): missing or wrong token\n' });
    const wrongFile = join(dir, 'wrong-token');
    writeFileSync(wrongFile, 'not-the-token\n');
    expect(await replay(notifier, 'refused', wrongFile)).toMatchObject({ code: 1, stderr: 'registry-notifier: replay refused (401): missing or wrong token\n' });

    const open = owned(await NotifierProcess.start(serveArgs({ endpoints })));
    const forbidden = await replay(open, 'refused');
    expect(forbidden.code).toBe(1);
    expect(forbidden.stderr).toMatch(/^registry-notifier: replay refused \(403\): replay needs an ingest token to be configured \(--ingest-token-file\)\n$/);

    const address = adminAddress(open);
    await open.stop('SIGTERM');
    const gone = await runCommand(['replay', '--endpoint', 'refused', '--metrics-listen', address, '--ingest-token-file', tokenFile]);
    expect(gone.code).toBe(1);
    expect(gone.stderr).toMatch(new RegExp(`^registry-notifier: cannot reach http://${address.replace(/[.[\]]/g, '\\$&')}: .+\\n$`));
  });
});
