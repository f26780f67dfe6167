import { redactUrl } from '../notifications/http-sink.ts';

/**
 * `--database-url` as it may be shown in logs and messages: no user-info (user and password), every query value
 * masked (`sslmode=***`: a `password=` parameter is masked like the rest), `(unparseable URL)` for anything
 * that does not parse. The same rule as every other URL the program shows (`redactUrl`).
 */
export function redactDatabaseUrl(url: string): string {
  return redactUrl(url);
}
