// The whole machine's CPU time from /proc/stat, for the benchmarks to print beside their figures: how busy the
// machine was, and how much time the hypervisor gave to other guests (steal) while a case ran.
import { readFileSync } from 'node:fs';

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
