import { readFileSync } from 'node:fs';

/** The package version, read once from package.json (one level above both src/ and dist/). */
export const VERSION: string = (
  JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }
).version;

/** The User-Agent every webhook POST carries (api.md §6). */
export const USER_AGENT = `registry-notifier/${VERSION}`;
