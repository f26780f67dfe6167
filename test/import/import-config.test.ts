// `registry-notifier import-config` as a user runs it: a child process of src/main.ts on real files; then its output
// given as-is to a real standalone `serve` (`--endpoints`, Secrets as files under `--secrets-dir`), which must take
// every endpoint and deliver with the header values from the Secrets. Only 127.0.0.1 is contacted.
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { parseNotificationEndpointsYaml, type NotificationEndpoint } from '../../src/api/notification-endpoint.ts';
import type { HeaderSecret } from '../../src/import/distribution-config.ts';
import type { EndpointStatus } from '../../src/status/endpoint-status.ts';
import { MAIN_TS, NotifierProcess } from '../e2e/notifier-process.ts';
import { cleanups, owned, post, runCleanups, tempDir } from '../journal/support.ts';
import { makeEvents } from '../support/events.ts';
import { TestReceiver } from '../support/receiver.ts';
import { until } from '../support/wait.ts';

const ROOT = join(import.meta.dirname, '..', '..');
const FIXTURES = join(ROOT, 'test', 'fixtures', 'distribution-configs');
const CONFIGS = [
  join(FIXTURES, 'config-cache.yml'),
  join(FIXTURES, 'config-dev.yml'),
  join(FIXTURES, 'configuration-md.yml'),
  join(FIXTURES, 'notifications-md.yml'),
  join(ROOT, 'examples', 'registry', 'config.yml'),
];
const TOKEN = 'tok-93b1d0c4e8f2';

afterEach(runCleanups);

/** Runs `node src/main.ts import-config ARGS` to completion (stdin from `input`, killed after 15 s). */
function importConfig(args: readonly string[], input = ''): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const env = Object.fromEntries(Object.entries(process.env).filter(([key]) => !key.startsWith('REGISTRY_NOTIFIER_')));
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [MAIN_TS, 'import-config', ...args], { stdio: ['pipe', 'pipe', 'pipe'], env });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    child.stdin.end(input);
    const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
    child.once('error', reject);
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

/** The lines of stderr (without the last newline). */
const lines = (text: string): string[] => text.split('\n').filter((line, i, all) => line !== '' || i < all.length - 1);

// The concurrent CLI tests share one directory (the shared cleanup list runs after each test, theirs included).
const scratch = mkdtempSync(join(tmpdir(), 'import-config-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

/** Writes `content` to the file `name` in the scratch directory; its path. */
function write(name: string, content: string): string {
  const path = join(scratch, name);
  writeFileSync(path, content);
  return path;
}

describe.concurrent('import-config on the command line', () => {
  it('--help documents the command and exits 0', async () => {
    const { code, stdout, stderr } = await importConfig(['--help']);
    expect(code).toBe(0);
    expect(stdout).toMatch(/^Usage: registry-notifier import-config FILE \[--namespace NS\]/);
    for (const word of ['NotificationEndpoint', 'Secret', 'secretKeyRef', '", "', '--namespace NS', 'stderr', 'Exit codes']) expect(stdout).toContain(word);
    expect(stderr).toBe('');
  });

  it.each([
    [[], /^registry-notifier: import-config needs FILE/],
    [['a.yml', 'b.yml'], /^registry-notifier: import-config takes one FILE, not also "b.yml"$/],
    [['a.yml', '--namespace', 'Not_A_Namespace'], /^registry-notifier: --namespace: "Not_A_Namespace" is not a namespace name/],
    [['a.yml', '--namespace'], /^registry-notifier: .*namespace/],
    [['a.yml', '--no-such-flag'], /^registry-notifier: Unknown option '--no-such-flag'/],
  ])('%j is bad usage: exit 2, one line on stderr, nothing on stdout', async (args, message) => {
    const { code, stdout, stderr } = await importConfig(args);
    expect(code).toBe(2);
    expect(stdout).toBe('');
    expect(lines(stderr)).toEqual([expect.stringMatching(message)]);
  });

  it.each([
    ['a file that does not exist', () => '/nonexistent/config.yml', /^registry-notifier: import-config: cannot read \/nonexistent\/config\.yml: ENOENT$/],
    ['a directory', () => scratch, /: cannot read .*: EISDIR$/],
    ['broken YAML', () => write('broken.yml', `notifications:\n  endpoints: [\n    {name: a, headers: {X: [${TOKEN}]}\n`), /^registry-notifier: import-config: .*broken\.yml: not valid YAML \(/],
    ['a YAML list', () => write('list.yml', '- a\n- b\n'), /list\.yml: holds a list, not a Distribution configuration \(a mapping\)$/],
    ['an empty file', () => write('empty.yml', ''), /empty\.yml: holds nothing, not a Distribution configuration/],
  ])('%s: exit 2 with one line that quotes no value, nothing on stdout', async (_what, file, message) => {
    const { code, stdout, stderr } = await importConfig([file()]);
    expect(code).toBe(2);
    expect(stdout).toBe('');
    expect(lines(stderr)).toEqual([expect.stringMatching(message)]);
    expect(stderr).not.toContain(TOKEN);
  });

  it('a registry config without notifications: exit 0, nothing on stdout, one note on stderr', async () => {
    const file = write('plain.yml', 'version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: /var/lib/registry\n');
    const { code, stdout, stderr } = await importConfig([file]);
    expect(code).toBe(0);
    expect(stdout).toBe('');
    expect(lines(stderr)).toEqual([`${file}: notifications: none in this file, so there is nothing to convert`]);
  });

  it('objects on stdout, notes on stderr (prefixed with the file, one per line, no header value), exit 0', async () => {
    const file = write('mixed.yml', `notifications:
  events: {includereferences: true}
  endpoints:
    - name: Team Hook
      url: https://hooks.example/in
      headers: {Authorization: [Bearer ${TOKEN}], Content-Type: [text/plain], X-Multi: [a, b]}
      timeout: 500
      queue: 10
    - name: broken
      url: ftp://files.example/
`);
    const { code, stdout, stderr } = await importConfig([file, '--namespace', 'hooks']);
    expect(code).toBe(0);
    expect(lines(stderr)).toEqual([
      `${file}: notifications.events.includereferences: shapes the events the registry sends, so it stays in the registry's config (registry-notifier passes events on as they come); no NotificationEndpoint field`,
      `${file}: notifications.endpoints[0] ("Team Hook").queue: is not a field of a Distribution endpoint (nor of a NotificationEndpoint); left out`,
      `${file}: notifications.endpoints[0] ("Team Hook").headers.Content-Type: is set by registry-notifier itself (Content-Type, Content-Length, Host and webhook-* cannot be configured); left out`,
      expect.stringMatching(/\("Team Hook"\)\.headers\.X-Multi: has 2 values: sent as one header line, joined with ", "/),
      expect.stringMatching(/\("Team Hook"\)\.timeout: is a bare number, which Distribution reads as 500 nanoseconds: written as "0\.0005ms"/),
      expect.stringMatching(/\("Team Hook"\)\.name: named "team-hook"/),
      `${file}: notifications.endpoints[1] (broken).url: uses ftp:// (registry-notifier sends to http:// and https:// only); the endpoint is left out`,
    ]);
    expect(stderr).not.toContain(TOKEN);
    expect(stderr).not.toContain('apiVersion');
    const documents = parseAllDocuments(stdout).map((d) => d.toJS() as HeaderSecret | NotificationEndpoint);
    expect(documents.map((d) => `${d.kind} ${d.metadata.namespace}/${d.metadata.name}`)).toEqual(['Secret hooks/team-hook-headers', 'NotificationEndpoint hooks/team-hook']);
    expect(documents[0]).toMatchObject({ type: 'Opaque', stringData: { Authorization: `Bearer ${TOKEN}`, 'X-Multi': 'a, b' } });
    expect(documents[1]).toMatchObject({ spec: { url: 'https://hooks.example/in', timeout: '0.0005ms' } });
    expect(parseNotificationEndpointsYaml(stdout, 'stdout').errors).toEqual([]);
  });

  it("FILE '-' reads stdin", async () => {
    const { code, stdout, stderr } = await importConfig(['-'], readFileSync(join(FIXTURES, 'notifications-md.yml'), 'utf8'));
    expect(code).toBe(0);
    expect(stdout).toContain('name: alistener-headers');
    expect(lines(stderr)).toEqual([expect.stringMatching(/^stdin: notifications\.endpoints\[0\] \(alistener\)\.headers\.Authorization: has 2 values/)]);
  });

  it.each(CONFIGS.map((path) => [path.slice(ROOT.length + 1), path]))('%s: the output passes our own parser', async (_name, path) => {
    const { code, stdout } = await importConfig([path]);
    expect(code).toBe(0);
    const { endpoints, errors } = parseNotificationEndpointsYaml(stdout, path);
    expect(errors.map((e) => e.error.message)).toEqual([]);
    expect(endpoints.length).toBeGreaterThan(0);
  });
});

describe('standalone serve takes the output as it is', () => {
  it.each(CONFIGS.map((path) => [path.slice(ROOT.length + 1), path]))('%s: every endpoint is parsed and live (Disabled where the registry had it disabled); enabled ones deliver with the Secret\'s header values', { timeout: 60_000 }, async (_name, path) => {
    const receiver = await TestReceiver.start();
    cleanups.push(() => receiver.close());
    const { code, stdout } = await importConfig([path]);
    expect(code).toBe(0);
    const documents = parseAllDocuments(stdout).map((d) => d.toJS() as HeaderSecret | NotificationEndpoint);
    const dir = tempDir('import-serve-');
    // Secrets as Kubernetes mounts them: <secrets-dir>/<name>/<key>.
    for (const secret of documents.filter((d): d is HeaderSecret => d.kind === 'Secret')) {
      mkdirSync(join(dir, 'secrets', secret.metadata.name), { recursive: true });
      for (const [key, value] of Object.entries(secret.stringData)) writeFileSync(join(dir, 'secrets', secret.metadata.name, key), value);
    }
    // The examples name hosts on the internet or in a cluster: only the address is changed, to the loopback receiver,
    // so that nothing outside this machine is contacted (not even a DNS server). Everything else is as printed.
    const endpoints = documents.filter((d): d is NotificationEndpoint => d.kind === 'NotificationEndpoint');
    const receiverUrl = new URL(receiver.url);
    const printed = parseAllDocuments(stdout);
    printed.forEach((document, i) => {
      const doc = documents[i];
      if (doc?.kind !== 'NotificationEndpoint') return;
      const url = new URL(doc.spec.url);
      document.setIn(['spec', 'url'], `http://${receiverUrl.host}${url.pathname}${url.search}`);
    });
    const endpointsFile = join(dir, 'endpoints.yaml');
    writeFileSync(endpointsFile, printed.map((d) => d.toString()).join(''));

    const notifier = owned(await NotifierProcess.start([
      '--listen', '127.0.0.1:0', '--metrics-listen', '127.0.0.1:0', '--endpoints', endpointsFile,
      '--secrets-dir', join(dir, 'secrets'), '--allow-endpoint-cidrs', '127.0.0.0/8', '--log-level', 'info', // info: `serving` tells the addresses
    ]));
    const expected = Object.fromEntries(endpoints.map((e) => [e.metadata.name, e.spec.disabled ? 'Disabled' : 'Configured']));
    let seen: Record<string, string | undefined> = {};
    await until(async () => {
      const { status, text } = await notifier.admin('/endpoints');
      seen = status === 200 ? Object.fromEntries((JSON.parse(text) as EndpointStatus[]).map((e) => [e.name, e.reason])) : {};
      return JSON.stringify(seen) === JSON.stringify(expected);
    }, () => `/endpoints to show ${JSON.stringify(expected)}; it shows ${JSON.stringify(seen)}\n${notifier.describe()}`, 15_000);

    const live = endpoints.filter((e) => !e.spec.disabled);
    if (live.length === 0) return;
    expect(await post(notifier.ingestUrl, makeEvents(1, 'import'))).toBe(202);
    const requests = await receiver.waitFor((all) => all.length >= live.length);
    const secretValue = (ref: { name: string; key: string } | undefined): string | undefined =>
      documents.find((d): d is HeaderSecret => d.kind === 'Secret' && d.metadata.name === ref?.name)?.stringData[ref?.key ?? ''];
    for (const endpoint of live) {
      const request = requests.find((r) => new URL(r.url, 'http://x').pathname === new URL(endpoint.spec.url).pathname);
      expect(request, endpoint.metadata.name).toBeDefined();
      for (const header of endpoint.spec.headers ?? []) {
        expect(request?.headers[header.name.toLowerCase()], header.name).toBe(secretValue(header.valueFrom?.secretKeyRef));
      }
    }
    expect(requests.every((r) => (r.json as { events: { id: string }[] }).events[0]?.id === 'import-0')).toBe(true);
  });
});
