// bench/receiver.ts started as a process of its own (child_process.fork), for the benchmarks that need a webhook
// receiver whose CPU is neither the product's nor the load's: a registry and the webhooks it feeds are different
// programs.
import { fork, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import type { FromReceiver, ToReceiver } from './receiver.ts';

/** The receiver's report once the events it was told to expect all arrived. */
export type ReceiverReport = FromReceiver & { type: 'done' };

/** A running receiver: its process, its base URL, `expect` and `stop`. */
export interface ReceiverProcess {
  readonly child: ChildProcess;
  readonly url: string;
  /** Resets the receiver's counters; resolves once it is armed, with `done`: its report once `total` events arrived. */
  expect(total: number): Promise<{ done: Promise<ReceiverReport> }>;
  /** Tells the receiver to exit. */
  stop(): void;
}

/** Forks bench/receiver.ts and resolves once it listens on 127.0.0.1; each answer comes `delayMs` after its request (default at once). */
export async function startReceiver(options: { delayMs?: number } = {}): Promise<ReceiverProcess> {
  const args = options.delayMs ? ['--delay-ms', String(options.delayMs)] : [];
  const child = fork(join(import.meta.dirname, 'receiver.ts'), args, { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const messages: FromReceiver[] = [];
  const waiters: Array<() => void> = [];
  child.on('message', (m) => {
    messages.push(m as FromReceiver);
    waiters.splice(0).forEach((wake) => wake());
  });
  const next = async <T extends FromReceiver['type']>(type: T): Promise<FromReceiver & { type: T }> => {
    for (;;) {
      const index = messages.findIndex((m) => m.type === type);
      if (index >= 0) return messages.splice(index, 1)[0] as FromReceiver & { type: T };
      await new Promise<void>((resolve) => waiters.push(resolve));
    }
  };
  const ready = await next('ready');
  return {
    child,
    url: `http://127.0.0.1:${ready.port}`,
    expect: async (total) => {
      child.send({ type: 'expect', total } satisfies ToReceiver);
      await next('armed');
      return { done: next('done') };
    },
    stop: () => {
      if (child.connected) child.send({ type: 'stop' } satisfies ToReceiver);
    },
  };
}
