// retry.disableAfter in standalone mode: an endpoint file, the real FileSource and its watcher, a loopback receiver
// that answers 503, virtual time for the engine. `/endpoints` shows AutoDisabled; an edited file sends again.
import { mkdtemp, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import { createLogger } from '../../src/log.ts';
import { EndpointSet } from '../../src/notifications/endpoint-set.ts';
import { FileSource } from '../../src/sources/file-source.ts';
import { endpointStatuses } from '../../src/status/endpoint-status.ts';
import { makeEvents } from '../support/events.ts';
import { TestReceiver } from '../support/receiver.ts';
import { until } from '../support/wait.ts';
import { fakeClock } from '../notifications/test-sinks.ts';

const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!().catch(() => {});
});

const doc = (spec: Record<string, unknown>): string =>
  `apiVersion: registry-notifier.io/v1alpha1\nkind: NotificationEndpoint\nmetadata:\n  name: hook\nspec: ${JSON.stringify(spec)}\n`;

describe('AutoDisabled with an endpoint file', () => {
  it('shows in /endpoints with the queue kept; editing the file sends the queue in order', async () => {
    const receiver = await TestReceiver.start();
    cleanups.push(() => receiver.close());
    let down = true;
    receiver.respond(() => (down ? 503 : 202));
    const dir = await mkdtemp(join(tmpdir(), 'rn-auto-disable-'));
    cleanups.push(() => rm(dir, { recursive: true, force: true }));
    const file = join(dir, 'hook.yaml');
    // Written as editors do (a temporary file renamed over the target), so the watcher sees one complete change.
    const put = async (text: string): Promise<void> => {
      await writeFile(join(dir, '.tmp'), text);
      await rename(join(dir, '.tmp'), file);
    };
    const spec = { url: receiver.url, threshold: 1, backoff: '4s', retry: { disableAfter: '10s' } };
    await put(doc(spec));
    const endpoints = new EndpointSet({ clock: fakeClock() });
    cleanups.push(() => endpoints.close(AbortSignal.abort()));
    const source = new FileSource({ paths: [dir], secretsDir: join(dir, 'secrets'), endpoints, logger: createLogger('error', new Writable({ write: (_c, _e, done) => done() })) });
    cleanups.push(() => source.close());
    await source.start();

    await endpoints.write(makeEvents(2));
    const endpoint = endpoints.get('hook')!;
    await until(() => endpoint.autoDisabled !== undefined, 'auto-disabled', 5000);
    expect(endpointStatuses(endpoints, source.states())).toEqual([
      expect.objectContaining({ name: 'hook', ready: false, reason: 'AutoDisabled', pending: 2, message: expect.stringContaining('no successful delivery for 10s') }),
    ]);

    down = false;
    await put(doc({ ...spec, timeout: '2s' }));
    await until(() => endpoint.pending === 0, 'queue delivered after the edit', 5000);
    expect(receiver.events({ acceptedOnly: true }).map((e) => e.id)).toEqual(['ev-0', 'ev-1']);
    expect(endpointStatuses(endpoints, source.states())).toEqual([expect.objectContaining({ name: 'hook', ready: true, reason: 'Configured' })]);
  });
});
