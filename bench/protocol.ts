// Messages between the benchmark's processes (types only): the orchestrator (fanout.ts), the engine processes
// it forks one per measurement (engine-run.ts) and the loopback receiver (receiver.ts).
import type { FromReceiver } from './receiver.ts';

/** The receiver's report that every expected event of a case arrived. */
export type ReceiverDone = Extract<FromReceiver, { type: 'done' }>;

/** One measurement: an EndpointSet case, raw undici (no engine), or pending-event memory. */
export type Job =
  | { mode: 'case'; k: number; batch: number; n: number; port: number; chunk: number; highWater: number; warmup: number; profile?: string }
  | { mode: 'raw'; batch: number; n: number; port: number; warmup: number; profile?: string }
  | { mode: 'memory'; k: number; events: number; chunk: number; fixture: string };

/** What one engine process runs, in order (argv[2] as JSON): one job per process, or all of them in quick mode. */
export interface RunSpec {
  jobs: Job[];
}

/** Orchestrator -> engine process: start the measured part; the receiver's report (null on timeout). */
export type ToRunner = { type: 'go' } | { type: 'received'; report: ReceiverDone | null };

/** What an engine process measured for a throughput run. */
export interface ThroughputResult {
  /** Epoch ms (timeOrigin + performance.now()) of the first write. */
  t0: number;
  /** CPU seconds used by the engine process from the first write until the receiver's report arrived. */
  cpuS: number;
  written: number;
  /** Events the engine counted as delivered (2xx), all endpoints. */
  delivered: number;
  /** Failed attempts (non-2xx or no answer), all endpoints. */
  failures: number;
  /** RSS when the measured part began (after warm-up), bytes. */
  rssBefore: number;
  /** process.resourceUsage().maxRSS of this engine process at the end, bytes. */
  maxRss: number;
  /** Where the CPU profile of the measured part was written, if asked. */
  profile?: string;
}

/** What an engine process measured for pending-event memory. */
export interface MemoryResult {
  endpoints: number;
  events: number;
  pending: number;
  heapDelta: number;
  rssDelta: number;
  discarded: number;
  writeSeconds: number;
  /** Bytes of one event's JSON. */
  jsonBytes: number;
  /** The captured fixture the events were cloned from. */
  fixture: string;
}

/** Engine process -> orchestrator. */
export type FromRunner =
  | { type: 'warm' }
  | { type: 'throughput'; result: ThroughputResult }
  | { type: 'memory'; result: MemoryResult }
  | { type: 'error'; message: string };
