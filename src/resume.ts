/**
 * `registry-notifier resume --endpoint NAME`: asks a running server (its admin address) to let an endpoint that
 * `retry.disableAfter` stopped (Ready=False, AutoDisabled) send its kept queue again, and prints what it did.
 */
import { askServer } from './admin-request.ts';
import type { AdminCommand } from './config.ts';

/**
 * Runs the resume command; resolves with the exit code (0 done, also when the endpoint was not AutoDisabled and
 * nothing changed; 1 the server refused or could not be reached).
 */
export async function resume(command: AdminCommand<'resume'>): Promise<number> {
  const body = await askServer(command);
  if (!body) return 1;
  process.stdout.write(body.resumed === true
    ? `resumed ${command.endpoint}: it sends its queue again\n`
    : `${command.endpoint} was not AutoDisabled: nothing to resume\n`);
  return 0;
}
