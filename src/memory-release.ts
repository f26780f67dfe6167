import type { Logger } from 'pino';
import { performance } from 'node:perf_hooks';
import { setFlagsFromString } from 'node:v8';
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

/**
 * V8's last-resort collection: through `gc` when the process was started with `--expose-gc`, else reached without
 * exposing it to the rest of the process (the flag is set for the one context that hands the function over, then
 * cleared); undefined where the runtime refuses.
 */
export function lastResortCollector(): Collect | undefined {
  const exposed = (globalThis as { gc?: (options: object) => void }).gc;
  if (typeof exposed === 'function') return () => exposed({ type: 'major', execution: 'sync', flavor: 'last-resort' });
  try {
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as ((options: object) => void) | undefined;
    return typeof gc === 'function' ? () => gc({ type: 'major', execution: 'sync', flavor: 'last-resort' }) : undefined;
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
 * quiet, it runs one compacting collection (tens of milliseconds on a heap of tens of MiB, when nothing waits) and
 * remembers where memory settled then. Memory that is live stays (the next release needs as much growth again).
 */
export class MemoryRelease {
  #logger: Logger;
  #intervalMs: number;
  #growth: number;
  #quiet: number;
  #minGap: number;
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
