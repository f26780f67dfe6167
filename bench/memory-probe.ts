// Loaded into a benchmarked `serve` child with `--import` (never by the product): on the message 'measure' from its
// parent it runs two full garbage collections (the child runs with --expose-gc) and answers with
// process.memoryUsage(), so the parent reads live heap, not garbage the collector has not reached yet. The answer
// also says what the resident memory is made of: V8's heap spaces (committed and used) and the process's mappings
// (/proc/self/smaps: malloc's main heap, other anonymous memory, files).
import { readFileSync } from 'node:fs';
import { getHeapSpaceStatistics, getHeapStatistics } from 'node:v8';

/** Resident KiB of the process's mappings by kind, from /proc/self/smaps (Linux only; empty elsewhere). */
function mappings(): Record<string, number> {
  let text: string;
  try {
    text = readFileSync('/proc/self/smaps', 'utf8');
  } catch {
    return {};
  }
  const kinds: Record<string, number> = { brkHeap: 0, anon: 0, file: 0, other: 0 };
  let kind = 'other';
  let size = 0;
  for (const line of text.split('\n')) {
    const header = /^([0-9a-f]+)-([0-9a-f]+) \S+ \S+ \S+ \S+\s*(.*)$/.exec(line);
    if (header) {
      const name = header[3]!;
      size = (parseInt(header[2]!, 16) - parseInt(header[1]!, 16)) / 1024;
      kind = name === '' ? 'anon' : name === '[heap]' ? 'brkHeap' : name.startsWith('/') ? 'file' : 'other';
      continue;
    }
    if (line.startsWith('Rss:')) {
      const rss = Number(/\d+/.exec(line)![0]);
      kinds[kind]! += rss;
      // Anonymous resident memory by the size of its mapping (V8 pages, malloc arenas and mmapped chunks differ).
      if (kind === 'anon') {
        const bucket = size <= 256 ? 'anon<=256K' : size <= 1024 ? 'anon<=1M' : size <= 8192 ? 'anon<=8M' : size <= 65536 ? 'anon<=64M' : 'anon>64M';
        kinds[bucket] = (kinds[bucket] ?? 0) + rss;
      }
    }
  }
  return kinds;
}

process.channel?.unref(); // the channel must not keep the child alive once `serve` has stopped
process.on('message', (message) => {
  if (message !== 'measure') return;
  const gc = (globalThis as { gc?: (options?: object) => void }).gc;
  // BENCH_LAST_RESORT=1: first a memory-reducing collection (what V8 does before an out-of-memory error), to see
  // what RSS V8 would give back if asked; the product never runs one.
  if (process.env.BENCH_LAST_RESORT === '1') gc?.({ type: 'major', execution: 'sync', flavor: 'last-resort' });
  gc?.();
  gc?.();
  const spaces = Object.fromEntries(getHeapSpaceStatistics().map((s) => [s.space_name, { size: s.space_size, used: s.space_used_size, physical: s.physical_space_size }]));
  process.send?.({ ...process.memoryUsage(), cpu: process.cpuUsage(), collected: gc !== undefined, heapLimit: getHeapStatistics().heap_size_limit, spaces, mappings: mappings() });
});
