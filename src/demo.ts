/**
 * `registry-notifier demo`: the quick start. Runs, all on 127.0.0.1, a webhook receiver that prints what it
 * gets, `serve` in standalone mode with one endpoint pointing at it, and a stand-in registry that posts the
 * notifications Distribution sends for an image push, pull, cross-repository mount and delete.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'undici';
import { createLogger } from './log.ts';
import { Bridge } from './notifications/bridge.ts';
import { EVENTS_MEDIA_TYPE, type Event } from './notifications/event.ts';
import { startServer } from './serve.ts';
import { parseCommand, type ServeConfig } from './config.ts';

const MANIFEST = { mediaType: 'application/vnd.oci.image.manifest.v1+json', size: 418, digest: 'sha256:736bca91cb546b3ff8ee785c3ab7111cfb7e81d61a09a927d960157e65825edd' };
const LAYER = { mediaType: 'application/octet-stream', size: 111, digest: 'sha256:b0277b67da0458e229b60cb33d358a93b4fbb32b9eb1af8544f76bea9809dabd' };
const TOKEN = 'demo-token';

/** Runs the demo for `rounds` rounds (0: until SIGINT/SIGTERM) and resolves with the exit code. */
export async function runDemo(logLevel: string, rounds: number): Promise<number> {
  const receiver = createServer((req, res) => {
    let body = '';
    req.on('data', (chunk: Buffer) => (body += chunk.toString()));
    req.on('end', () => {
      for (const e of (JSON.parse(body) as { events: Event[] }).events) {
        const t = e.target;
        const what = `${t.repository}${t.tag ? `:${t.tag}` : ''}${t.digest ? `@${t.digest.slice(0, 19)}…` : ''}`;
        process.stdout.write(`  receiver <- ${e.action.padEnd(6)} ${what}${t.fromRepository ? ` (from ${t.fromRepository})` : ''}  ${t.mediaType ?? ''}\n`);
      }
      res.writeHead(202).end();
    });
  });
  await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve));
  const receiverUrl = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/events`;
  const dir = await mkdtemp(join(tmpdir(), 'registry-notifier-demo-'));
  const endpointsFile = join(dir, 'endpoints.yaml');
  await writeFile(endpointsFile, `apiVersion: registry-notifier.io/v1alpha1\nkind: NotificationEndpoint\nmetadata:\n  name: demo-receiver\nspec:\n  url: ${receiverUrl}\n  filter:\n    repositories:\n      include: ["demo/**"]\n`);
  const tokenFile = join(dir, 'token');
  await writeFile(tokenFile, TOKEN);
  const config = parseCommand(['serve', '--listen', '127.0.0.1:0', '--metrics-listen', '127.0.0.1:0', '--endpoints', endpointsFile, '--allow-endpoint-cidrs', '127.0.0.0/8',
    '--ingest-token-file', tokenFile, '--log-level', logLevel, '--shutdown-grace', '2s'], {}) as ServeConfig;
  const server = await startServer(config, createLogger(logLevel));
  process.stdout.write(`registry-notifier demo
  receiver   ${receiverUrl}
  ingest     ${server.ingestUrl}   (the registry posts here, with "Authorization: Bearer ${TOKEN}")
  endpoints  ${server.adminUrl}/endpoints     metrics  ${server.adminUrl}/metrics
  endpoint   ${endpointsFile}  (edit it while the demo runs: changes apply live)
Sending the notifications of an image push, pull, mount and delete every 2 seconds; Ctrl-C stops.\n\n`);

  let stop = false;
  const stopped = new Promise<void>((resolve) => {
    const onSignal = (): void => {
      stop = true;
      resolve();
    };
    process.once('SIGINT', onSignal);
    process.once('SIGTERM', onSignal);
  });
  // Stand-in registry: the same bridge Distribution uses makes the events, a POST delivers each envelope.
  const registry = new Bridge({ write: (events) => post(server.ingestUrl, events) }, {
    baseUrl: 'http://127.0.0.1:5000',
    source: { addr: 'demo-registry:5000', instanceID: 'demo' },
    request: { method: 'PUT', useragent: 'skopeo/1.9.3' },
  });
  let left: Map<string, number>;
  try {
    for (let round = 1; !stop && (rounds === 0 || round <= rounds); round++) {
      process.stdout.write(`registry -> round ${round}\n`);
      await registry.blobPushed('demo/app', LAYER);
      await registry.manifestPushed('demo/app', MANIFEST, 'v1');
      await registry.manifestPulled('demo/app', MANIFEST, 'v1');
      await registry.blobMounted('demo/copy', LAYER, 'demo/app');
      await registry.manifestPushed('other/app', MANIFEST, 'v1'); // filtered out: not under demo/**
      await registry.tagDeleted('demo/copy', 'v1');
      if (rounds === 0 || round < rounds) await Promise.race([stopped, new Promise((resolve) => setTimeout(resolve, 2000))]);
    }
  } finally {
    // Also when a post failed: stop the servers, or they would keep the process alive after the error.
    left = await server.shutdown();
    receiver.close();
    await rm(dir, { recursive: true, force: true });
  }
  const undelivered = [...left.values()].reduce((a, b) => a + b, 0);
  process.stdout.write(`\nstopped; ${undelivered} events undelivered\n`);
  return undelivered === 0 ? 0 : 1;
}

async function post(url: string, events: readonly Event[]): Promise<void> {
  const response = await request(url, {
    method: 'POST',
    headers: { 'content-type': EVENTS_MEDIA_TYPE, authorization: `Bearer ${TOKEN}` },
    body: JSON.stringify({ events }),
  });
  const text = await response.body.text();
  if (response.statusCode !== 202) throw new Error(`ingest answered ${response.statusCode}: ${text}`);
}
