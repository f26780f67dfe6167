/**
 * Summarises a V8 .cpuprofile (from `npm run bench:profile`, which writes to /tmp/registry-notifier-prof):
 * self time per function and per area (engine src/, undici, node internals, bench, GC, idle), and inclusive
 * time of the engine's own functions.
 *
 *   node bench/profile-summary.ts [file.cpuprofile|-] [top=30] [inclusive-regex=/src/]
 *   (no file or `-`: the newest profile in /tmp/registry-notifier-prof; the regex picks which frames get an
 *   inclusive-time line, matched against `file:line function`, e.g. 'abort|AbortSignal|src/')
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';

/** One node of a V8 CPU profile's call tree. */
export interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number; columnNumber: number };
  children?: number[];
}

/** A V8 CPU profile as written by `--cpu-prof`. */
export interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

const PROFILE_DIR = '/tmp/registry-notifier-prof';

/** The area a call frame belongs to, for the per-area summary. */
export function area(url: string, name: string): string {
  if (name === '(garbage collector)') return 'GC';
  if (name === '(idle)') return 'idle';
  if (name === '(program)') return '(program: native, not attributed)';
  if (url.includes('/src/notifications/')) return 'engine src/notifications';
  if (url.includes('/src/')) return 'engine src/ other';
  if (url.includes('/node_modules/undici/')) return 'undici';
  if (url.includes('/bench/')) return 'bench (producer, checks)';
  if (url.startsWith('node:')) return 'node internals (node:*)';
  if (url === '') return 'native / builtins';
  return 'other';
}

/** A short, stable name for a frame: `file:line function`. */
export function frameKey(frame: ProfileNode['callFrame']): string {
  const file = frame.url.replace(/^.*\/(src|bench|node_modules)\//, '$1/').replace(/^file:\/\//, '');
  return `${file || '(native)'}:${frame.lineNumber + 1} ${frame.functionName || '(anonymous)'}`;
}

function newestProfile(): string {
  const files = readdirSync(PROFILE_DIR)
    .filter((f) => f.endsWith('.cpuprofile'))
    .map((f) => join(PROFILE_DIR, f));
  files.sort((a, b) => statSync(b).mtimeMs - statSync(a).mtimeMs);
  if (!files[0]) throw new Error(`no .cpuprofile in ${PROFILE_DIR}`);
  return files[0];
}

function main(): void {
  const file = process.argv[2] && process.argv[2] !== '-' ? process.argv[2] : newestProfile();
  const top = Number(process.argv[3] ?? 30);
  const inclusiveOf = new RegExp(process.argv[4] ?? '^src/');
  const profile = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);

  const selfUs = new Map<number, number>();
  profile.samples.forEach((id, i) => selfUs.set(id, (selfUs.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0)));
  const total = profile.endTime - profile.startTime;

  const selfByFrame = new Map<string, number>();
  const selfByArea = new Map<string, number>();
  const inclusive = new Map<string, number>();
  let anyMatching = 0;
  for (const [id, us] of selfUs) {
    const node = byId.get(id)!;
    const key = frameKey(node.callFrame);
    selfByFrame.set(key, (selfByFrame.get(key) ?? 0) + us);
    const a = area(node.callFrame.url, node.callFrame.functionName);
    selfByArea.set(a, (selfByArea.get(a) ?? 0) + us);
    // Inclusive: charge every distinct selected frame on the stack once.
    const seen = new Set<string>();
    for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
      const k = frameKey(byId.get(cur)!.callFrame);
      if (!inclusiveOf.test(k) || seen.has(k)) continue;
      seen.add(k);
      inclusive.set(k, (inclusive.get(k) ?? 0) + us);
    }
    if (seen.size > 0) anyMatching += us;
  }

  const ms = (us: number): string => (us / 1000).toFixed(0).padStart(7);
  const share = (us: number): string => `${((us / total) * 100).toFixed(1)}%`.padStart(6);
  console.log(`${file}\nwall ${(total / 1e6).toFixed(2)} s\n\nself time by area (ms, share of wall):`);
  for (const [a, us] of [...selfByArea].sort((x, y) => y[1] - x[1])) console.log(`${ms(us)} ${share(us)}  ${a}`);
  console.log(`\ntop ${top} functions by self time:`);
  for (const [k, us] of [...selfByFrame].sort((x, y) => y[1] - x[1]).slice(0, top)) console.log(`${ms(us)} ${share(us)}  ${k}`);
  console.log(`\nfunctions matching ${inclusiveOf} by inclusive time (samples with any of them on the stack: ${ms(anyMatching).trim()} ms, ${share(anyMatching).trim()}):`);
  for (const [k, us] of [...inclusive].sort((x, y) => y[1] - x[1]).slice(0, top)) console.log(`${ms(us)} ${share(us)}  ${k}`);
}

if (import.meta.main) main();
