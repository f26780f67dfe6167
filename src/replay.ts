/**
 * `registry-notifier replay --endpoint NAME`: asks a running server (its admin address) to move the endpoint's
 * dead letters back into its queue, and prints how many.
 */
import { askServer } from './admin-request.ts';
import type { AdminCommand } from './config.ts';

/** Runs the replay command; resolves with the exit code (0 done, 1 the server refused or could not be reached). */
export async function replay(command: AdminCommand<'replay'>): Promise<number> {
  const body = await askServer(command);
  if (!body) return 1;
  process.stdout.write(`replayed ${Number(body.replayed ?? 0)} dead letters of ${command.endpoint}\n`);
  return 0;
}
