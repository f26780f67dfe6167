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

// utime, stime, cutime, cstime: fields 14-17 of /proc/<pid>/stat, counted after the command's closing parenthesis.
function statTicks(pid: number): number[] | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ').slice(11, 15).map(Number);
  } catch {
    return undefined; // gone
  }
}

/** CPU seconds process `pid` has used so far, user and system (Linux `/proc`); 0 once it has exited. */
export function processCpu(pid: number): number {
  const [utime = 0, stime = 0] = statTicks(pid) ?? [];
  return (utime + stime) / 100;
}

/**
 * CPU seconds used so far by process `pid` and every descendant, those that exited and were waited for included
 * (a PostgreSQL server: its postmaster, backends, WAL writer and the autovacuum workers that came and went).
 */
export function processTreeCpu(pid: number): number {
  const parent = new Map<number, number>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      parent.set(Number(entry), Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]));
    } catch {
      // exited meanwhile
    }
  }
  const inTree = (p: number): boolean => {
    for (let at: number | undefined = p; at !== undefined && at > 1; at = parent.get(at)) if (at === pid) return true;
    return false;
  };
  let ticks = 0;
  for (const p of parent.keys()) {
    if (!inTree(p)) continue;
    const [utime = 0, stime = 0, cutime = 0, cstime = 0] = statTicks(p) ?? [];
    ticks += utime + stime + cutime + cstime;
  }
  return ticks / 100;
}
