// Runs the real product, `node src/main.ts serve ...`, as a child process on loopback, for end-to-end tests.
import { type ChildProcess, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { GiveUp, until } from '../support/wait.ts';

/** Path of the command's entry point; Node 24 runs the TypeScript directly. */
export const MAIN_TS = fileURLToPath(new URL('../../src/main.ts', import.meta.url));

/** One parsed JSON log line of the child's stdout. */
export type LogLine = Record<string, unknown> & { msg?: string; level?: string };

const live = new Set<ChildProcess>();
process.once('exit', () => live.forEach((child) => child.kill('SIGKILL'))); // never leak a server

/**
 * A running `registry-notifier serve`: resolves once it logged `serving`, from which `ingestUrl` and `adminUrl`
 * are taken. Stdout is parsed as JSON lines (`logs`), stderr kept verbatim; both go into every error message.
 */
export class NotifierProcess {
  readonly logs: LogLine[] = [];
  stderr = '';
  ingestUrl = '';
  adminUrl = '';
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  private readonly child: ChildProcess;

  private constructor(child: ChildProcess) {
    this.child = child;
    this.exited = new Promise((resolve) => {
      child.once('exit', (code, signal) => resolve({ code, signal }));
      child.once('error', (err) => {
        this.stderr += `spawn error: ${err.message}\n`;
        resolve({ code: null, signal: null });
      });
    });
    void this.exited.then(() => live.delete(child));
  }

  /** Spawns `node src/main.ts serve ARGS` with a clean environment (no proxies, no REGISTRY_NOTIFIER_* twins). */
  static async start(args: readonly string[], timeoutMs = 15_000): Promise<NotifierProcess> {
    const env: NodeJS.ProcessEnv = {};
    for (const [key, value] of Object.entries(process.env)) {
      if (!/^(REGISTRY_NOTIFIER_|https?_proxy$|all_proxy$)/i.test(key)) env[key] = value;
    }
    env.NO_PROXY = env.no_proxy = '127.0.0.1,localhost';
    const child = spawn(process.execPath, [MAIN_TS, 'serve', ...args], { stdio: ['ignore', 'pipe', 'pipe'], env });
    live.add(child);
    const notifier = new NotifierProcess(child);
    let buffered = '';
    child.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
      buffered += chunk;
      const lines = buffered.split('\n');
      buffered = lines.pop() ?? '';
      for (const line of lines) {
        if (line.trim() === '') continue;
        try {
          notifier.logs.push(JSON.parse(line) as LogLine);
        } catch {
          notifier.logs.push({ msg: `(not JSON) ${line}` });
        }
      }
    });
    child.stderr!.setEncoding('utf8').on('data', (chunk: string) => (notifier.stderr += chunk));
    try {
      const serving = await notifier.waitForLog((l) => l.msg === 'serving', timeoutMs);
      notifier.ingestUrl = String(serving.ingest);
      notifier.adminUrl = String(serving.admin);
      return notifier;
    } catch (err) {
      await notifier.kill();
      throw err;
    }
  }

  /** The child's pid (for messages). */
  get pid(): number | undefined {
    return this.child.pid;
  }

  /** Resolves with the first log line matching `predicate` (polling); rejects at the deadline or on exit. */
  async waitForLog(predicate: (line: LogLine) => boolean, timeoutMs = 10_000): Promise<LogLine> {
    let exited = false;
    void this.exited.then(() => (exited = true));
    let found: LogLine | undefined;
    await until(async () => {
      found = this.logs.find(predicate);
      if (found) return true;
      if (exited) throw new GiveUp(`registry-notifier exited (${JSON.stringify(await this.exited)})\n${this.describe()}`);
      return false;
    }, () => `a matching log line from registry-notifier\n${this.describe()}`, timeoutMs);
    return found!;
  }

  /** GET `path` on the admin server; the body as text. */
  async admin(path: string): Promise<{ status: number; type: string; text: string }> {
    const res = await fetch(`${this.adminUrl}${path}`, { signal: AbortSignal.timeout(5_000) });
    return { status: res.status, type: res.headers.get('content-type') ?? '', text: await res.text() };
  }

  /** Sends `signal` and waits for the exit (SIGKILL after `timeoutMs`). */
  async stop(signal: NodeJS.Signals = 'SIGTERM', timeoutMs = 10_000): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    if (live.has(this.child)) this.child.kill(signal);
    const timer = setTimeout(() => this.child.kill('SIGKILL'), timeoutMs);
    try {
      return await this.exited;
    } finally {
      clearTimeout(timer);
    }
  }

  /** SIGKILL, for cleanup; idempotent. */
  async kill(): Promise<void> {
    if (live.has(this.child)) this.child.kill('SIGKILL');
    await this.exited;
  }

  /** The last log lines and stderr, for error messages. */
  describe(): string {
    const tail = this.logs.slice(-30).map((l) => `  ${JSON.stringify(l)}`).join('\n');
    return `stdout (last 30 lines):\n${tail || '  (none)'}\nstderr:\n${this.stderr.trim() || '  (none)'}`;
  }
}
