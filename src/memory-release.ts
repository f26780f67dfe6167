import type { Logger } from 'pino';
import { performance } from 'node:perf_hooks';
import { getHeapStatistics, setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

/** A full collection that compacts the heap and gives V8's pooled pages back to the system (V8's last resort). */
export type Collect = () => void;

/** Settings of `MemoryRelease`; the defaults suit the product, tests replace the readings and the collector. */
export interface MemoryReleaseOptions {
  logger: Logger;
  /** How often the process is looked at. */
  intervalMs?: number;
  /** Resident memory grown this much beyond where it settled after the last release (or the first look). */
  growthBytes?: number;
  /** The event loop busy at most this share of the last interval: the process is between bursts. */
  quietUtilization?: number;
  /** Releases this far apart at least. */
  minGapMs?: number;
  /** No release while the live heap is larger than this: the collection's pause grows with it. */
  maxHeapBytes?: number;
  /** Live heap bytes now (default V8's used heap size). */
  heapUsed?: () => number;
  /** Resident bytes now (default `process.memoryUsage.rss`). */
  rss?: () => number;
  /** The event loop's busy share since the previous call (default `performance.eventLoopUtilization`). */
  utilization?: () => number;
  /** Default: `lastResortCollector()`; undefined turns the release off. */
  collect?: Collect | undefined;
  now?: () => number;
}

const INTERVAL_MS = 10_000;
const GROWTH_BYTES = 16 * 2 ** 20;
const QUIET_UTILIZATION = 0.2;
const MIN_GAP_MS = 60_000;
// The collection pauses the event loop about 2.5-5 ms per MiB of live heap (measured: 134-162 ms at 58 MiB, 1,000
// endpoints; 1.2-1.3 s at 240-250 MiB, 10,000): beyond this it is not worth an ingest request held that long, and a
// process that large is sized for its peak anyway (10,000 endpoints: 34 KiB per endpoint kept after a burst).
const MAX_HEAP_BYTES = 128 * 2 ** 20;

/**
 * V8's last-resort collection: through `gc` when the process was started with `--expose-gc`, else reached without
 * exposing it to the rest of the process (the flag is set for the one context that hands the function over, then
 * cleared); undefined where the runtime refuses.
 */
export function lastResortCollector(): Collect | undefined {
  const lastResort = (gc: unknown): Collect | undefined => (typeof gc === 'function' ? () => gc({ type: 'major', execution: 'sync', flavor: 'last-resort' }) : undefined);
  const exposed = (globalThis as { gc?: unknown }).gc;
  if (typeof exposed === 'function') return lastResort(exposed);
  try {
    setFlagsFromString('--expose-gc');
    return lastResort(runInNewContext('gc'));
  } catch {
    return undefined;
  } finally {
    setFlagsFromString('--no-expose-gc');
  }
}

/**
 * Gives back the memory a burst left behind, once the process is quiet again. After a fan-out to many endpoints
 * V8 keeps the pages the burst needed (its page pool, a fragmented old space): its memory reducer would give them
 * back, but only once it sees a low allocation rate, and its estimate keeps the burst's rate for as long as the
 * process allocates next to nothing, so an idle replica stays at its peak. Every `intervalMs` this looks at the
 * resident memory and the event loop; when memory grew `growthBytes` beyond where it settled and the loop was
 * quiet, it runs one compacting collection (about 150 ms on the 58 MiB heap of 1,000 endpoints; not at all above a
 * live heap of `maxHeapBytes`, where the pause would pass half a second) and remembers where memory settled then.
 * Memory that is live stays (the next release needs as much growth again).
 */
export class MemoryRelease {
  #logger: Logger;
  #intervalMs: number;
  #growth: number;
  #quiet: number;
  #minGap: number;
  #maxHeap: number;
  #heapUsed: () => number;
  #rss: () => number;
  #utilization: () => number;
  #collect: Collect | undefined;
  #now: () => number;
  #settled: number | undefined;
  #lastRelease = -Infinity;
  #timer: NodeJS.Timeout | undefined;

  constructor(options: MemoryReleaseOptions) {
    this.#logger = options.logger;
    this.#intervalMs = options.intervalMs ?? INTERVAL_MS;
    this.#growth = options.growthBytes ?? GROWTH_BYTES;
    this.#quiet = options.quietUtilization ?? QUIET_UTILIZATION;
    this.#minGap = options.minGapMs ?? MIN_GAP_MS;
    this.#maxHeap = options.maxHeapBytes ?? MAX_HEAP_BYTES;
    this.#heapUsed = options.heapUsed ?? (() => getHeapStatistics().used_heap_size);
    this.#rss = options.rss ?? (() => process.memoryUsage.rss());
    this.#utilization = options.utilization ?? loopUtilization();
    this.#collect = 'collect' in options ? options.collect : lastResortCollector();
    this.#now = options.now ?? (() => performance.now());
  }

  /** Looks every interval from now on (an unref'd timer: it never keeps the process alive); a no-op without a collector. */
  start(): void {
    if (!this.#collect || this.#timer) return;
    this.#timer = setInterval(() => this.check(), this.#intervalMs);
    this.#timer.unref();
  }

  /** Stops looking. */
  stop(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
  }

  /** One look: releases when memory grew enough and the loop was quiet; returns whether it did. */
  check(): boolean {
    const rss = this.#rss();
    const busy = this.#utilization();
    if (this.#settled === undefined || rss < this.#settled) this.#settled = rss;
    if (!this.#collect || rss - this.#settled < this.#growth || busy > this.#quiet || this.#now() - this.#lastRelease < this.#minGap) return false;
    if (this.#heapUsed() > this.#maxHeap) return false;
    const started = this.#now();
    this.#collect();
    this.#lastRelease = this.#now();
    this.#settled = this.#rss();
    this.#logger.debug({ rssBeforeMiB: mib(rss), rssAfterMiB: mib(this.#settled), pauseMs: Math.round(this.#lastRelease - started) }, 'memory: gave back what the last burst left behind');
    return true;
  }
}

/** The event loop's busy share between successive calls. */
function loopUtilization(): () => number {
  let previous = performance.eventLoopUtilization();
  return () => {
    const now = performance.eventLoopUtilization();
    const share = performance.eventLoopUtilization(now, previous).utilization;
    previous = now;
    return share;
  };
}

const mib = (bytes: number): number => Math.round(bytes / 2 ** 20);
