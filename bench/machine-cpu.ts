// CPU time from /proc, for the benchmarks to print beside their figures: the whole machine's (how busy it was, and
// how much time the hypervisor gave to other guests, steal, while a case ran) and single processes'.
import { readdirSync, readFileSync } from 'node:fs';

/** CPU seconds so far, summed over every core: busy (not idle nor waiting for I/O), stolen, and in all. */
export interface MachineCpu {
  busy: number;
  steal: number;
  total: number;
}

/** Reads the machine's CPU counters now (Linux `/proc/stat`, USER_HZ 100). */
export function machineCpu(): MachineCpu {
  const [, ...ticks] = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/);
  const n = ticks.map(Number);
  // user nice system idle iowait irq softirq steal (guest time is counted in user already)
  const total = n.slice(0, 8).reduce((a, b) => a + b, 0);
  return { busy: (total - n[3]! - n[4]!) / 100, steal: (n[7] ?? 0) / 100, total: total / 100 };
}

/**
 * The shares of the machine's CPU time between two readings that were busy and stolen. A virtual machine whose
 * host is loaded loses time to steal, and its own work also runs slower then: figures of a case with more than a
 * few percent stolen measure the host's neighbours as much as the product.
 */
export function machineShares(from: MachineCpu, to: MachineCpu): { busy: number; steal: number } {
  const total = to.total - from.total;
  return total > 0 ? { busy: (to.busy - from.busy) / total, steal: (to.steal - from.steal) / total } : { busy: 0, steal: 0 };
}

/** What the benches read of a process's `/proc/<pid>/stat`: its parent, and its CPU clock ticks (USER_HZ 100). */
interface ProcessStat {
  ppid: number;
  /** utime + stime: the process's own. */
  own: number;
  /** cutime + cstime: its children's that exited and were waited for. */
  reaped: number;
}

// Fields 4 and 14-17 of /proc/<pid>/stat (ppid; utime, stime, cutime, cstime), counted after the command's closing
// parenthesis (the command itself may hold spaces).
function processStat(pid: number | string): ProcessStat | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ').map(Number);
    return { ppid: fields[1]!, own: fields[11]! + fields[12]!, reaped: fields[13]! + fields[14]! };
  } catch {
    return undefined; // gone
  }
}

/** CPU seconds process `pid` has used so far, user and system (Linux `/proc`); 0 once it has exited. */
export function processCpu(pid: number): number {
  return (processStat(pid)?.own ?? 0) / 100;
}

/**
 * CPU seconds used so far by process `pid` and every descendant, those that exited and were waited for included
 * (a PostgreSQL server: its postmaster, backends, WAL writer and the autovacuum workers that came and went).
 */
export function processTreeCpu(pid: number): number {
  const stats = new Map<number, ProcessStat>();
  for (const entry of readdirSync('/proc')) {
    const stat = /^\d+$/.test(entry) ? processStat(entry) : undefined;
    if (stat) stats.set(Number(entry), stat);
  }
  const inTree = (p: number): boolean => {
    for (let at: number | undefined = p; at !== undefined && at > 1; at = stats.get(at)?.ppid) if (at === pid) return true;
    return false;
  };
  let ticks = 0;
  for (const [p, { own, reaped }] of stats) if (inTree(p)) ticks += own + reaped;
  return ticks / 100;
}

/**
 * How often the main thread of process `pid` has blocked so far (its voluntary context switches, `/proc/<pid>/status`):
 * for a Node.js process, about how many times its event loop went to sleep and was woken; 0 once it has exited.
 */
export function processWakeups(pid: number): number {
  try {
    return Number(/voluntary_ctxt_switches:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0);
  } catch {
    return 0; // gone
  }
}
