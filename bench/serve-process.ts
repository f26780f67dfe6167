// The real product for the benchmarks: `node src/main.ts serve ...` as a child process.
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { createInterface } from 'node:readline';

const MAIN = join(import.meta.dirname, '../src/main.ts');

/**
 * Starts `serve ARGS` (logging at info level at least) and resolves with its ingest URL once it logged 'serving';
 * `BENCH_SERVE_FLAGS` adds Node.js flags (`--cpu-prof --cpu-prof-dir=/tmp/prof` to profile the product).
 */
export function startServe(args: readonly string[], timeoutMs = 180_000): Promise<{ child: ChildProcess; ingest: string }> {
  const flags = (process.env.BENCH_SERVE_FLAGS ?? '').split(' ').filter(Boolean);
  const child = spawn(process.execPath, [...flags, MAIN, 'serve', ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`serve did not start within ${timeoutMs / 1000} s`)), timeoutMs);
    createInterface(child.stdout!).on('line', (line) => {
      const entry = JSON.parse(line) as { msg?: string; ingest?: string };
      if (entry.msg === 'serving' && entry.ingest) {
        clearTimeout(timer);
        resolve({ child, ingest: entry.ingest });
      }
    });
    child.once('exit', (code) => reject(new Error(`serve exited with ${code}`)));
  });
}
