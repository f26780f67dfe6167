// The `registry-notifier` command as a user runs it: child processes of src/main.ts on the same Node, real
// signals, real files, receivers on 127.0.0.1.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { EVENTS_MEDIA_TYPE, type Event } from '../src/notifications/event.ts';
import { makeEvents } from './support/events.ts';
import { TestReceiver } from './support/receiver.ts';
import { until } from './support/wait.ts';

const ROOT = join(import.meta.dirname, '..');
const MAIN = join(ROOT, 'src', 'main.ts');
const API_MD = join(ROOT, 'docs', 'api.md'); // the public contract
const TOKEN = 'ingest-token-0c8e41f2a7';
const SECRET_HEADER = 'secret-header-value-6b29d4';

const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!().catch(() => {});
});

/** A running `registry-notifier` child: its output so far, line by line, and how it ended. */
interface Child {
  process: ChildProcess;
  stdout: string[];
  stderr: string[];
  /** stdout lines that are JSON log records. */
  logs(): Record<string, unknown>[];
  waitForLog(predicate: (line: Record<string, unknown>) => boolean, timeoutMs?: number): Promise<Record<string, unknown>>;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null; at: number }>;
}

type Cleanup = (fn: () => Promise<unknown>) => void;
const afterThisTest: Cleanup = (fn) => void cleanups.push(fn);
/** For concurrent tests: cleanups run when this very test finishes (the shared afterEach would hit its neighbours). */
const later = (onTestFinished: (fn: () => Promise<void>) => void): Cleanup => (fn) => onTestFinished(async () => void (await fn().catch(() => {})));

/**
 * Runs `node src/main.ts ...args` with an environment free of REGISTRY_NOTIFIER_* unless given in `env`;
 * `cleanup` registers the kill of a process still running when the test ends.
 */
function run(args: string[], env: Record<string, string> = {}, cleanup: Cleanup = afterThisTest): Child {
  const clean = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('REGISTRY_NOTIFIER_')));
  const child = spawn(process.execPath, [MAIN, ...args], { cwd: ROOT, env: { ...clean, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  const stdout: string[] = [];
  const stderr: string[] = [];
  const waiters = new Set<() => void>();
  const lines = (from: NodeJS.ReadableStream, into: string[]): void => {
    let rest = '';
    from.on('data', (chunk: Buffer) => {
      const parts = (rest + chunk.toString()).split('\n');
      rest = parts.pop() ?? '';
      into.push(...parts);
      for (const wake of waiters) wake();
    });
    from.on('end', () => void (rest !== '' && into.push(rest)));
  };
  lines(child.stdout!, stdout);
  lines(child.stderr!, stderr);
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null; at: number }>((resolve) => {
    child.on('close', (code, signal) => {
      for (const wake of waiters) wake();
      resolve({ code, signal, at: performance.now() });
    });
  });
  const logs = (): Record<string, unknown>[] =>
    stdout.flatMap((line) => {
      try {
        return line.startsWith('{') ? [JSON.parse(line) as Record<string, unknown>] : [];
      } catch {
        return [];
      }
    });
  cleanup(async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL');
      await exited;
    }
  });
  return {
    process: child,
    stdout,
    stderr,
    logs,
    exited,
    waitForLog: (predicate, timeoutMs = 15_000) =>
      new Promise((resolve, reject) => {
        const check = (): void => {
          const found = logs().find(predicate);
          if (found) {
            done();
            resolve(found);
          } else if (child.exitCode !== null || child.signalCode !== null) {
            done();
            reject(new Error(`process ended (${child.exitCode ?? child.signalCode}) before the log line\n${stdout.join('\n')}\n${stderr.join('\n')}`));
          }
        };
        const timer = setTimeout(() => {
          done();
          reject(new Error(`no such log line within ${timeoutMs} ms\n${stdout.join('\n')}\n${stderr.join('\n')}`));
        }, timeoutMs);
        const done = (): void => {
          clearTimeout(timer);
          waiters.delete(check);
        };
        waiters.add(check);
        check();
      }),
  };
}

/** Resolves with the exit, or rejects if the process is still running after `timeoutMs`. */
async function exitOf(child: Child, timeoutMs = 15_000): Promise<{ code: number | null; signal: NodeJS.Signals | null; at: number }> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`still running after ${timeoutMs} ms\n${child.stdout.join('\n')}\n${child.stderr.join('\n')}`)), timeoutMs);
  });
  try {
    return await Promise.race([child.exited, deadline]);
  } finally {
    clearTimeout(timer);
  }
}

const errorLines = (child: Child): string[] => child.stderr;

async function tempDir(cleanup: Cleanup): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'rn-main-'));
  cleanup(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

async function receiver(): Promise<TestReceiver> {
  const r = await TestReceiver.start();
  cleanups.push(() => r.close());
  return r;
}

function endpointDoc(name: string, spec: Record<string, unknown>): string {
  return `apiVersion: registry-notifier.io/v1alpha1\nkind: NotificationEndpoint\nmetadata:\n  name: ${name}\nspec: ${JSON.stringify(spec)}\n`;
}

/**
 * Writes the endpoints file, a header secret `hdr/value` and the token file `<dir>/token`; returns the `serve`
 * arguments for them (the token file only when asked: `--ingest-token-file`).
 */
async function serveArgs(documents: string[], extra: string[] = [], tokenFile = false, cleanup: Cleanup = afterThisTest): Promise<string[]> {
  const dir = await tempDir(cleanup);
  await writeFile(join(dir, 'endpoints.yaml'), documents.join('---\n'));
  await writeFile(join(dir, 'token'), `${TOKEN}\n`);
  await mkdir(join(dir, 'secrets', 'hdr'), { recursive: true });
  await writeFile(join(dir, 'secrets', 'hdr', 'value'), `${SECRET_HEADER}\n`);
  return [
    'serve', ...(tokenFile ? ['--ingest-token-file', join(dir, 'token')] : []), '--listen', '127.0.0.1:0', '--metrics-listen', '127.0.0.1:0', '--endpoints', join(dir, 'endpoints.yaml'),
    '--secrets-dir', join(dir, 'secrets'), '--allow-endpoint-cidrs', '127.0.0.0/8', ...extra,
  ];
}

async function post(ingestUrl: string, events: Event[], token = TOKEN): Promise<Response> {
  return fetch(ingestUrl, {
    method: 'POST',
    headers: { 'content-type': EVENTS_MEDIA_TYPE, authorization: `Bearer ${token}` },
    body: JSON.stringify({ events }),
    signal: AbortSignal.timeout(5000),
  });
}

/** The flags of docs/api.md section 3's table, as written there. */
async function contractFlags(): Promise<string[]> {
  const text = await readFile(API_MD, 'utf8');
  const section = text.slice(text.indexOf('## 3. Command line'), text.indexOf('## 4.'));
  const rows = section.split('\n').filter((line) => line.startsWith('| `--'));
  return rows.flatMap((row) => [...(row.split('|')[1] ?? '').matchAll(/`(--[a-z-]+)/g)].map((m) => m[1]!));
}

// Each of these starts a short-lived process; they run side by side.
describe.concurrent('registry-notifier command line', () => {
  it('serve --help documents every flag of docs/api.md section 3 with its environment twin, and exits 0', async ({ onTestFinished }) => {
    const flags = await contractFlags();
    expect(flags.length).toBeGreaterThanOrEqual(15);
    const child = run(['serve', '--help'], {}, later(onTestFinished));
    expect((await exitOf(child)).code).toBe(0);
    const help = child.stdout.join('\n');
    for (const flag of flags) {
      expect(help, flag).toMatch(new RegExp(`^\\s+${flag}(?![\\w-])`, 'm'));
      expect(help, flag).toContain(`REGISTRY_NOTIFIER_${flag.slice(2).toUpperCase().replaceAll('-', '_')}`);
    }
    expect(errorLines(child)).toEqual([]);
  });

  it.for([{ args: ['--help'] }, { args: ['replay', '--help'] }, { args: ['resume', '--help'] }, { args: ['demo', '--help'] }])('$args prints usage and exits 0', async ({ args }, { onTestFinished }) => {
    const child = run(args, {}, later(onTestFinished));
    expect((await exitOf(child)).code).toBe(0);
    expect(child.stdout.join('\n')).toMatch(/^Usage: registry-notifier/);
    expect(errorLines(child)).toEqual([]);
  });

  it('version prints the version of package.json', async ({ onTestFinished }) => {
    const { version } = JSON.parse(await readFile(join(ROOT, 'package.json'), 'utf8')) as { version: string };
    const child = run(['version'], {}, later(onTestFinished));
    expect((await exitOf(child)).code).toBe(0);
    expect(child.stdout).toEqual([`registry-notifier ${version}`]);
  });

  it.for([
    ['an unknown flag', ['serve', '--endpoints', 'x.yaml', '--no-such-flag']],
    ['an unknown command', ['frobnicate']],
    ['no command at all', []],
    ['a bad address', ['serve', '--endpoints', 'x.yaml', '--listen', 'nonsense']],
    ['a bare-number duration', ['serve', '--endpoints', 'x.yaml', '--shutdown-grace', '500']],
    ['a bad log level', ['serve', '--endpoints', 'x.yaml', '--log-level', 'loud']],
    ['serve without endpoints', ['serve']],
    ['both sources', ['serve', '--endpoints', 'x.yaml', '--kubernetes']],
    ['tenancy in standalone mode', ['serve', '--endpoints', 'x.yaml', '--tenancy', 'namespace']],
    ['replay without --endpoint', ['replay']],
    ['resume without --endpoint', ['resume']],
    ['an endpoints path that does not exist', ['serve', '--endpoints', '/nonexistent/registry-notifier/endpoints.yaml']],
  ] as const)('%s: exit 2 with one line on stderr', async ([, args], { onTestFinished }) => {
    const child = run([...args], {}, later(onTestFinished));
    expect((await exitOf(child)).code).toBe(2);
    const lines = errorLines(child);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^registry-notifier: \S/);
    expect(child.stdout.join('')).toBe('');
  });

  it('a listen address in use: exit 1 with one line on stderr, nothing left running', async ({ onTestFinished }) => {
    const taken = createServer();
    await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
    onTestFinished(() => new Promise((resolve) => taken.close(() => resolve())));
    const port = (taken.address() as { port: number }).port;
    const args = await serveArgs([endpointDoc('a', { url: 'http://127.0.0.1:9/events' })], [], false, later(onTestFinished));
    const child = run([...args, '--listen', `127.0.0.1:${port}`], {}, later(onTestFinished));
    expect((await exitOf(child, 10_000)).code).toBe(1);
    expect(errorLines(child)).toEqual([expect.stringMatching(/^registry-notifier: .*EADDRINUSE/)]);
  });
});

describe('registry-notifier serve', () => {
  it('SIGTERM drains every queued event to the receiver, logs undelivered: 0 and exits 0', async () => {
    const r = await receiver();
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    r.respond(async (req) => {
      if (req.seq === 0) await gate; // held until the process is draining
      return 202;
    });
    const args = await serveArgs([
      // a timeout that outlasts the hold: the held attempt is answered, not given up and resent
      endpointDoc('hook', { url: r.url, timeout: '30s', headers: [{ name: 'X-Secret', valueFrom: { secretKeyRef: { name: 'hdr', key: 'value' } } }] }),
    ], [], true);
    // the flag's token file wins over a variable that holds another token
    const child = run(args, { REGISTRY_NOTIFIER_INGEST_TOKEN: 'the-variable-loses' });
    const serving = await child.waitForLog((l) => l.msg === 'serving');
    expect(serving).toMatchObject({ auth: true, endpoints: 1 });
    const ingestUrl = String(serving.ingest);
    const adminUrl = String(serving.admin);
    expect(ingestUrl).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/events$/);
    expect(adminUrl).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    expect((await fetch(`${adminUrl}/readyz`)).status).toBe(200);

    expect((await post(ingestUrl, makeEvents(5, 'a'), 'wrong-token')).status).toBe(401);
    expect((await post(ingestUrl, makeEvents(5, 'a'))).status).toBe(202);
    expect((await post(ingestUrl, makeEvents(5, 'b'))).status).toBe(202);
    await r.waitFor((rs) => rs.length === 1);

    child.process.kill('SIGTERM');
    await child.waitForLog((l) => l.msg === 'shutting down: draining queues');
    expect(r.requests).toHaveLength(1);
    release();
    const exit = await exitOf(child);
    expect(exit).toMatchObject({ code: 0, signal: null });
    expect(r.events({ acceptedOnly: true }).map((e) => e.id)).toEqual([
      'a-0', 'a-1', 'a-2', 'a-3', 'a-4', 'b-0', 'b-1', 'b-2', 'b-3', 'b-4',
    ]);
    expect(r.requests.every((req) => req.headers['x-secret'] === SECRET_HEADER)).toBe(true);
    const stopped = child.logs().find((l) => l.msg === 'stopped');
    expect(stopped).toMatchObject({ level: 'info', undelivered: 0 });
    const output = [...child.stdout, ...child.stderr].join('\n');
    expect(output).not.toContain(TOKEN);
    expect(output).not.toContain(SECRET_HEADER);
    expect(errorLines(child)).toEqual([]);
  });

  it('SIGTERM with a dead receiver: exits 0 once --shutdown-grace is over and logs what was undelivered', async () => {
    const dead = await TestReceiver.start();
    await dead.close(); // nothing listens on its port any more
    const args = await serveArgs([
      endpointDoc('dead', { url: dead.url, threshold: 1, backoff: '1h', headers: [{ name: 'X-Secret', valueFrom: { secretKeyRef: { name: 'hdr', key: 'value' } } }] }),
    ], ['--shutdown-grace', '500ms']);
    const child = run(args, { REGISTRY_NOTIFIER_INGEST_TOKEN: TOKEN }); // the token's value in the variable
    const serving = await child.waitForLog((l) => l.msg === 'serving');
    expect(serving).toMatchObject({ auth: true });
    expect((await post(String(serving.ingest), makeEvents(3, 'ev'))).status).toBe(202);
    const admin = String(serving.admin);
    // wait until the first attempt failed, so the endpoint is in its hour-long backoff
    await until(async () => ((await (await fetch(`${admin}/endpoints`)).json()) as { name: string; errors: number }[]).some((e) => e.errors > 0), 'the first attempt to fail', 5000);

    const sent = performance.now();
    child.process.kill('SIGTERM');
    const exit = await exitOf(child);
    expect(exit).toMatchObject({ code: 0, signal: null });
    const took = exit.at - sent;
    expect(took).toBeGreaterThanOrEqual(450);
    expect(took).toBeLessThan(3000);
    expect(child.logs().find((l) => l.msg === 'stopped')).toMatchObject({ level: 'warn', undelivered: 3, byEndpoint: { dead: 3 } });
    const output = [...child.stdout, ...child.stderr].join('\n');
    expect(output).not.toContain(SECRET_HEADER);
    expect(output).not.toContain(TOKEN);
  });
});

describe('registry-notifier serve: every way it stops says what it leaves', () => {
  /** A serve whose one endpoint has 3 events it cannot deliver (its receiver is gone, the breaker waits an hour). */
  async function stuck(grace: string): Promise<{ child: Child; admin: string }> {
    const dead = await TestReceiver.start();
    await dead.close();
    const args = await serveArgs([endpointDoc('dead', { url: dead.url, threshold: 1, backoff: '1h' })], ['--shutdown-grace', grace]);
    const child = run(args, { REGISTRY_NOTIFIER_INGEST_TOKEN: TOKEN });
    const serving = await child.waitForLog((l) => l.msg === 'serving');
    expect((await post(String(serving.ingest), makeEvents(3, 'ev'))).status).toBe(202);
    const admin = String(serving.admin);
    await until(async () => ((await (await fetch(`${admin}/endpoints`)).json()) as { errors: number }[]).some((e) => e.errors > 0), 'the first attempt to fail', 5000);
    return { child, admin };
  }

  it('a second SIGTERM during the drain stops at once, logs what was left per endpoint, exits 143', async () => {
    const { child } = await stuck('1h');
    const sent = performance.now();
    child.process.kill('SIGTERM');
    await child.waitForLog((l) => l.msg === 'shutting down: draining queues');
    child.process.kill('SIGTERM');
    const exit = await exitOf(child);
    expect(exit).toMatchObject({ code: 143, signal: null });
    expect(exit.at - sent, 'not the hour of grace').toBeLessThan(5000);
    expect(child.logs().find((l) => l.msg === 'second signal: stopping without draining')).toMatchObject({ level: 'warn', signal: 'SIGTERM', pending: { dead: 3 } });
    expect(child.logs().find((l) => l.msg === 'stopped')).toMatchObject({ level: 'warn', undelivered: 3, byEndpoint: { dead: 3 }, lost: true });
  });

  it('SIGHUP stops like SIGTERM: drains within the grace, logs what was left, exits 0', async () => {
    const { child } = await stuck('300ms');
    child.process.kill('SIGHUP');
    const exit = await exitOf(child);
    expect(exit).toMatchObject({ code: 0, signal: null });
    expect(child.logs().find((l) => l.msg === 'signal received')).toMatchObject({ signal: 'SIGHUP' });
    expect(child.logs().find((l) => l.msg === 'stopped')).toMatchObject({ level: 'warn', undelivered: 3, byEndpoint: { dead: 3 } });
  });

  it('SIGINT then SIGHUP: the second signal of any kind cuts the drain short (exit 129)', async () => {
    const { child } = await stuck('1h');
    child.process.kill('SIGINT');
    await child.waitForLog((l) => l.msg === 'shutting down: draining queues');
    child.process.kill('SIGHUP');
    expect(await exitOf(child)).toMatchObject({ code: 129, signal: null });
    expect(child.logs().find((l) => l.msg === 'stopped')).toMatchObject({ undelivered: 3, byEndpoint: { dead: 3 } });
  });
});

describe('registry-notifier demo', () => {
  it('--rounds 1 shows the receiver getting the push, pull, mount and delete, and exits 0', async () => {
    const child = run(['demo', '--rounds', '1']);
    const exit = await exitOf(child, 20_000);
    const out = child.stdout.join('\n');
    expect(exit.code, out + child.stderr.join('\n')).toBe(0);
    expect(out).toMatch(/^ {2}receiver <- push +demo\/app@sha256:/m); // the layer
    expect(out).toMatch(/^ {2}receiver <- push +demo\/app:v1@sha256:/m);
    expect(out).toMatch(/^ {2}receiver <- pull +demo\/app:v1@sha256:/m);
    expect(out).toMatch(/^ {2}receiver <- mount +demo\/copy@sha256:.*\(from demo\/app\)/m);
    expect(out).toMatch(/^ {2}receiver <- delete +demo\/copy:v1/m);
    expect(out).not.toMatch(/receiver <- .*other\/app/); // filtered out by the endpoint
    expect(out).toMatch(/stopped; 0 events undelivered/);
  });
});
