/**
 * `registry-notifier replay --endpoint NAME`: asks a running server (its admin address) to move the endpoint's
 * dead letters back into its queue, and prints how many.
 */
import { request } from 'undici';
import { localBaseUrl, type Command } from './config.ts';

/** Runs the replay command; resolves with the exit code (0 done, 1 the server refused or could not be reached). */
export async function replay(command: Extract<Command, { command: 'replay' }>): Promise<number> {
  const base = localBaseUrl(command.metricsListen.host, command.metricsListen.port);
  const url = `${base}/endpoints/replay?endpoint=${encodeURIComponent(command.endpoint)}`;
  try {
    const response = await request(url, {
      method: 'POST',
      headers: command.ingestToken ? { authorization: `Bearer ${command.ingestToken}` } : {},
      headersTimeout: 10_000,
      bodyTimeout: 10_000,
    });
    const body = (await response.body.json().catch(() => ({}))) as { replayed?: number; error?: { message?: string } };
    if (response.statusCode === 200) {
      process.stdout.write(`replayed ${body.replayed ?? 0} dead letters of ${command.endpoint}\n`);
      return 0;
    }
    process.stderr.write(`registry-notifier: replay refused (${response.statusCode}): ${body.error?.message ?? 'no reason given'}\n`);
  } catch (error) {
    process.stderr.write(`registry-notifier: cannot reach ${base}: ${(error as Error).message}\n`);
  }
  return 1;
}
