/**
 * The client side of the admin port's state-changing calls (`replay`, `resume`): one authenticated
 * `POST /endpoints/<action>?endpoint=NAME` to a running server, and the refusal printed on stderr.
 */
import { request } from 'undici';
import { localBaseUrl, type AdminCommand } from './config.ts';

/**
 * Asks the server at `command.metricsListen` to run the command's action on its endpoint; resolves with the 200
 * answer's JSON body, or undefined once a refusal or an unreachable server was printed on stderr (exit 1).
 */
export async function askServer(command: AdminCommand): Promise<Record<string, unknown> | undefined> {
  const base = localBaseUrl(command.metricsListen.host, command.metricsListen.port);
  const url = `${base}/endpoints/${command.command}?endpoint=${encodeURIComponent(command.endpoint)}`;
  try {
    const response = await request(url, {
      method: 'POST',
      headers: command.ingestToken ? { authorization: `Bearer ${command.ingestToken}` } : {},
      headersTimeout: 10_000,
      bodyTimeout: 10_000,
    });
    const body = (await response.body.json().catch(() => ({}))) as Record<string, unknown> & { error?: { message?: string } };
    if (response.statusCode === 200) return body;
    process.stderr.write(`registry-notifier: ${command.command} refused (${response.statusCode}): ${body.error?.message ?? 'no reason given'}\n`);
  } catch (error) {
    process.stderr.write(`registry-notifier: cannot reach ${base}: ${(error as Error).message}\n`);
  }
  return undefined;
}
