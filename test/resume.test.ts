// `registry-notifier resume` as a user runs it in standalone mode: `serve` (child process) with an endpoint file
// whose `retry.disableAfter` stops it while its loopback receiver fails (Ready=False, AutoDisabled, queue kept); the
// receiver recovers, `registry-notifier resume --endpoint NAME` (another child process) asks the admin port, and
// the kept events arrive in their order, with `/endpoints` showing the endpoint Ready again.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { NotifierProcess } from './e2e/notifier-process.ts';
import { cleanups, owned, post, runCleanups, runCommand, serveArgs, statusOf, tempDir, writeEndpoints } from './journal/support.ts';
import { makeEvents } from './support/events.ts';
import { TestReceiver } from './support/receiver.ts';
import { until } from './support/wait.ts';

afterEach(runCleanups);

const TOKEN = 'resume-ingest-token-8e2a';
const EVENTS = makeEvents(4, 'kept');

describe('registry-notifier resume', { timeout: 30_000 }, () => {
  it('standalone: an AutoDisabled endpoint sends its kept queue in order after the command, and is Ready again', async () => {
    const dir = tempDir('rn-resume-');
    const tokenFile = join(dir, 'token');
    writeFileSync(tokenFile, `${TOKEN}\n`);
    const receiver = await TestReceiver.start();
    cleanups.push(() => receiver.close());
    let down = true;
    receiver.respond(() => (down ? 503 : 202));
    // A breaker that retries every 100 ms and stops after 1 s without a success.
    const endpoints = writeEndpoints(dir, { hook: { url: receiver.url, threshold: 1, backoff: '100ms', retry: { disableAfter: '1s' } } });
    const notifier = owned(await NotifierProcess.start(serveArgs({ endpoints, tokenFile })));
    const resume = (): ReturnType<typeof runCommand> =>
      runCommand(['resume', '--endpoint', 'hook', '--metrics-listen', new URL(notifier.adminUrl).host, '--ingest-token-file', tokenFile]);

    const before = await resume();
    expect(before, 'not AutoDisabled yet').toMatchObject({ code: 0, stdout: 'hook was not AutoDisabled: nothing to resume\n', stderr: '' });

    expect(await post(notifier.ingestUrl, EVENTS.slice(0, 2), TOKEN)).toBe(202);
    expect(await post(notifier.ingestUrl, EVENTS.slice(2), TOKEN)).toBe(202);
    await until(async () => (await statusOf(notifier, 'hook')).reason === 'AutoDisabled', 'AutoDisabled', 10_000);
    expect(await statusOf(notifier, 'hook')).toMatchObject({ ready: false, reason: 'AutoDisabled', pending: 4, delivered: 0 });
    expect(receiver.events({ acceptedOnly: true })).toEqual([]);

    down = false;
    const result = await resume();
    expect(result, result.stderr).toMatchObject({ code: 0, stdout: 'resumed hook: it sends its queue again\n', stderr: '' });
    await until(async () => (await statusOf(notifier, 'hook')).pending === 0, 'the kept queue delivered', 10_000);
    expect(receiver.events({ acceptedOnly: true }).map((e) => e.id)).toEqual(EVENTS.map((e) => e.id));
    expect(await statusOf(notifier, 'hook')).toMatchObject({ ready: true, reason: 'Configured', pending: 0, delivered: 4 });
    expect(notifier.logs.some((l) => l.msg === 'resume requested' && l.endpoint === 'hook' && l.resumed === true)).toBe(true);

    const again = await resume();
    expect(again).toMatchObject({ code: 0, stdout: 'hook was not AutoDisabled: nothing to resume\n' });
  });

  it('refusals exit 1 with one line, as replay: an unknown endpoint (404), a wrong token (401)', async () => {
    const dir = tempDir('rn-resume-');
    const tokenFile = join(dir, 'token');
    writeFileSync(tokenFile, `${TOKEN}\n`);
    const wrongFile = join(dir, 'wrong');
    writeFileSync(wrongFile, 'not-the-token\n');
    const endpoints = writeEndpoints(dir, { hook: { url: 'http://127.0.0.1:9/events', retry: { disableAfter: '1m' } } });
    const secured = owned(await NotifierProcess.start(serveArgs({ endpoints, tokenFile })));
    const resume = (notifier: NotifierProcess, endpoint: string, token: string): ReturnType<typeof runCommand> =>
      runCommand(['resume', '--endpoint', endpoint, '--metrics-listen', new URL(notifier.adminUrl).host, '--ingest-token-file', token]);

    expect(await resume(secured, 'nope', tokenFile)).toMatchObject({ code: 1, stdout: '', stderr: 'registry-notifier: resume refused (404): no endpoint nope\n' });
    expect(await resume(secured, 'hook', wrongFile)).toMatchObject({ code: 1, stdout: '', stderr: 'registry-notifier: resume refused (401): missing or wrong token\n' });
  });
});
