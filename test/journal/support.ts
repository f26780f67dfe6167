// Shared by the durability suites: endpoint files, `serve` flags for a child process, posting envelopes, reading
// the admin surface, running the `replay` command, and a cleanup list for processes and temporary directories.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { EVENTS_MEDIA_TYPE, type Event } from '../../src/notifications/event.ts';
import type { EndpointStatus } from '../../src/status/endpoint-status.ts';
import { MAIN_TS, type NotifierProcess } from '../e2e/notifier-process.ts';

/** Cleanup steps, run last-in first-out by `runCleanups` (register it in `afterEach`). */
export const cleanups: (() => unknown)[] = [];

export async function runCleanups(): Promise<void> {
  while (cleanups.length > 0) await Promise.resolve(cleanups.pop()!()).catch(() => {});
}

/** A fresh temporary directory, removed at cleanup. */
export function tempDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** Registers a child for cleanup (SIGKILL if still running) and returns it. */
export function owned<T extends NotifierProcess>(notifier: T): T {
  cleanups.push(() => notifier.kill());
  return notifier;
}

/** One `NotificationEndpoint` document for `--endpoints`. */
export function endpointDoc(name: string, spec: Record<string, unknown>): string {
  return `apiVersion: registry-notifier.io/v1alpha1\nkind: NotificationEndpoint\nmetadata:\n  name: ${name}\nspec: ${JSON.stringify(spec)}\n`;
}

/** Writes the endpoints file (`endpoints.yaml` in `dir`, replaced if present) and returns its path. */
export function writeEndpoints(dir: string, specs: Record<string, Record<string, unknown>>): string {
  const path = join(dir, 'endpoints.yaml');
  writeFileSync(path, Object.entries(specs).map(([name, spec]) => endpointDoc(name, spec)).join('---\n'));
  return path;
}

/** `serve` flags on loopback, ephemeral ports, loopback receivers allowed. */
export function serveArgs(options: { endpoints: string; queueDir?: string; tokenFile?: string; extra?: string[] }): string[] {
  return [
    '--listen', '127.0.0.1:0', '--metrics-listen', '127.0.0.1:0', '--endpoints', options.endpoints,
    '--allow-endpoint-cidrs', '127.0.0.0/8', '--log-level', 'info',
    ...(options.queueDir !== undefined ? ['--queue-dir', options.queueDir] : []),
    ...(options.tokenFile !== undefined ? ['--ingest-token-file', options.tokenFile] : []),
    ...(options.extra ?? []),
  ];
}

/** POSTs one envelope to the ingest; the status code (throws when the connection fails). */
export async function post(ingestUrl: string, events: readonly Event[], token?: string): Promise<number> {
  const res = await fetch(ingestUrl, {
    method: 'POST',
    headers: { 'content-type': EVENTS_MEDIA_TYPE, ...(token !== undefined && { authorization: `Bearer ${token}` }) },
    body: JSON.stringify({ events }),
    signal: AbortSignal.timeout(10_000),
  });
  await res.arrayBuffer();
  return res.status;
}

/** The admin server's view of one endpoint (`GET /endpoints`). */
export async function statusOf(notifier: NotifierProcess, name: string): Promise<EndpointStatus> {
  const { status, text } = await notifier.admin('/endpoints');
  if (status !== 200) throw new Error(`GET /endpoints answered ${status}: ${text}`);
  const found = (JSON.parse(text) as EndpointStatus[]).find((e) => e.name === name);
  if (!found) throw new Error(`no endpoint ${name} in ${text}`);
  return found;
}

/** The value of one metric series in the admin server's `/metrics` (undefined when absent). */
export async function metricValue(notifier: NotifierProcess, name: string, labels: Record<string, string>): Promise<number | undefined> {
  const { text } = await notifier.admin('/metrics');
  const wanted = Object.entries(labels).map(([k, v]) => `${k}="${v}"`);
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`)) continue;
    const inside = line.slice(name.length + 1, line.indexOf('}'));
    const parts = inside.split(',');
    if (wanted.every((w) => parts.includes(w))) return Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return undefined;
}

/** Runs `node src/main.ts ARGS` to completion: exit code, stdout, stderr (killed after `timeoutMs`). */
export function runCommand(args: readonly string[], timeoutMs = 15_000): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) if (!/^(REGISTRY_NOTIFIER_|https?_proxy$|all_proxy$)/i.test(key)) env[key] = value;
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [MAIN_TS, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

/** Counts of a journal file, read with its own connection (after the server stopped). */
export function journalCounts(path: string): { events: number; pending: number; deadLetters: number } {
  const db = new DatabaseSync(path, { readOnly: true });
  try {
    const count = (table: string): number => (db.prepare(`SELECT count(*) AS n FROM ${table}`).get() as { n: number }).n;
    return { events: count('events'), pending: count('pending'), deadLetters: count('dead_letters') };
  } finally {
    db.close();
  }
}

/** A small deterministic PRNG (mulberry32), so a failing run can be repeated. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
