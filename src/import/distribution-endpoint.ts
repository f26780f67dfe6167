// One entry of Distribution's `notifications.endpoints` as a NotificationEndpoint spec (api.md §1 and §10): field by
// field, with Distribution's meaning. Values are as gopkg.in/yaml.v2 reads them for Distribution (YAML 1.1; a bare
// integer duration is nanoseconds; a value of 0 or less means Distribution's default). Whatever cannot be carried is
// reported through `note` and left out; only a missing or refused URL leaves the whole endpoint out.
import type { EventAction, NotificationEndpointSpec } from '../api/notification-endpoint.ts';
import { isObject } from '../api/spec-schema.ts';
import { redactUrl } from '../notifications/http-sink.ts';
import { formatNanoseconds, GoDurationError, parseGoDuration, toOurNotation } from './go-duration.ts';
import { carriedHeaders, type CarriedHeader } from './header-values.ts';
import { scoped, yamlKind, type Note } from './note.ts';

/** An endpoint's spec without its headers, and the headers whose values go into its Secret. */
export interface ConvertedEndpoint {
  readonly spec: Omit<NotificationEndpointSpec, 'headers'>;
  readonly headers: readonly CarriedHeader[];
}

/** The fields of Distribution's endpoint configuration (configuration.Endpoint), in its YAML spelling. */
export const DISTRIBUTION_ENDPOINT_FIELDS: readonly string[] = ['name', 'disabled', 'url', 'headers', 'timeout', 'threshold', 'backoff', 'ignoredmediatypes', 'ignore'];
const ACTIONS: readonly EventAction[] = ['pull', 'push', 'mount', 'delete'];
const INT32_MAX = 2147483647;
const MAX_NS = 2n ** 63n - 1n;
// URL rules of our spec (api.md §1, notification-endpoint.ts checkUrl).
const MAX_URL = 2048;
// eslint-disable-next-line no-control-regex -- matching control characters is the point
const BLANK_OR_CONTROL = /[\s\x00-\x1f\x7f]/;

/**
 * Converts one endpoint entry; `scalarText(header, index)` gives a header value's text as written. Returns
 * undefined when the entry cannot become an endpoint (not a mapping, no usable URL), after reporting why.
 */
export function convertEndpoint(entry: unknown, note: Note, scalarText: (header: string, index: number | undefined) => string | undefined): ConvertedEndpoint | undefined {
  if (!isObject(entry)) {
    note('', `is ${yamlKind(entry)}, not an endpoint mapping; left out`);
    return undefined;
  }
  for (const field of Object.keys(entry)) {
    if (!DISTRIBUTION_ENDPOINT_FIELDS.includes(field)) note(field, 'is not a field of a Distribution endpoint (nor of a NotificationEndpoint); left out');
  }
  const target = endpointUrl(entry.url, note, carriedHeaders(entry.headers, note, scalarText));
  if (!target) return undefined;
  const spec: Omit<NotificationEndpointSpec, 'headers'> = { url: target.url };
  const timeout = duration(entry.timeout, scoped(note, 'timeout'), '1s');
  if (timeout !== undefined) spec.timeout = timeout;
  const threshold = thresholdOf(entry.threshold, scoped(note, 'threshold'));
  if (threshold !== undefined) spec.threshold = threshold;
  const backoff = duration(entry.backoff, scoped(note, 'backoff'), '1s');
  if (backoff !== undefined) spec.backoff = backoff;
  const ignoredMediaTypes = mediaTypes(entry.ignoredmediatypes, scoped(note, 'ignoredmediatypes'));
  if (ignoredMediaTypes.length > 0) spec.ignoredMediaTypes = ignoredMediaTypes;
  const ignore = ignoreOf(entry.ignore, scoped(note, 'ignore'), entry.ignoredmediatypes);
  if (ignore) spec.ignore = ignore;
  if (entry.disabled === true) spec.disabled = true;
  else if (entry.disabled !== undefined && entry.disabled !== null && entry.disabled !== false) note('disabled', `is ${yamlKind(entry.disabled)}, not true or false; left out (the endpoint sends)`);
  return { spec, headers: target.headers };
}

/** The URL as our spec takes it; user-info moves into an Authorization header, as Go's HTTP client sends it. */
function endpointUrl(given: unknown, note: Note, headers: CarriedHeader[]): { url: string; headers: CarriedHeader[] } | undefined {
  const leftOut = (why: string): undefined => void note('url', `${why}; the endpoint is left out`);
  if (typeof given !== 'string' || given === '') return leftOut('is missing or not a string');
  if (BLANK_OR_CONTROL.test(given)) return leftOut('holds spaces or control characters');
  const url = URL.parse(given);
  if (!url) return leftOut('is not a valid URL');
  if (url.protocol !== 'http:' && url.protocol !== 'https:') return leftOut(`uses ${url.protocol}// (registry-notifier sends to http:// and https:// only)`);
  if (url.hostname === '') return leftOut('names no host');
  let text = /^https?:\/\//.test(given) ? given : url.href; // `HTTPS://x` as `https://x/`, as our spec wants it
  if (url.username !== '' || url.password !== '') {
    let basic: string;
    try {
      basic = Buffer.from(`${decodeURIComponent(url.username)}:${decodeURIComponent(url.password)}`).toString('base64');
    } catch {
      return leftOut('has user-info that is not validly percent-encoded');
    }
    url.username = '';
    url.password = '';
    text = url.href;
    if (headers.some((header) => header.name.toLowerCase() === 'authorization')) {
      note('url', 'user-info removed: with an Authorization header configured, Go\'s HTTP client never sends it (nor does registry-notifier)');
    } else {
      headers = [...headers, { name: 'Authorization', value: `Basic ${basic}` }];
      note('url', 'user-info moved into the Secret as an Authorization header (Basic), as Go\'s HTTP client sends it');
    }
  }
  if ([...text].length > MAX_URL) return leftOut(`is longer than ${MAX_URL} characters`);
  if (url.search !== '') note('url', `has a query string, which stays in the NotificationEndpoint as written (${redactUrl(text)}); if it holds a token, move it into a header`);
  return { url: text, headers };
}

/** A Go duration (string, or bare integer nanoseconds) in our notation; undefined for Distribution's default. */
function duration(given: unknown, note: Note, fallback: string): string | undefined {
  if (given === undefined || given === null) return undefined;
  if (typeof given === 'number' && Number.isSafeInteger(given)) given = BigInt(given); // `5.0`: yaml.v2 takes it as 5
  const defaulted = `Distribution uses its default (${fallback}) for a duration of 0 or less; left out (the default here is the same)`;
  if (typeof given === 'bigint') {
    if (given <= 0n) return void note('', `is ${given}: ${defaulted}`);
    if (given > MAX_NS) return void note('', 'is a number too large for a Go duration (Distribution refuses the file); left out');
    const written = formatNanoseconds(given);
    note('', `is a bare number, which Distribution reads as ${given} nanoseconds: written as "${written}" (if seconds were meant, write "${given}s" in the registry's config too)`);
    return written;
  }
  if (typeof given !== 'string') return void note('', `is ${yamlKind(given)}, not a duration such as "1s" (nor a whole number of nanoseconds); left out`);
  try {
    if (parseGoDuration(given) <= 0n) return void note('', `is "${given}": ${defaulted}`);
    return toOurNotation(given);
  } catch (error) {
    if (!(error instanceof GoDurationError)) throw error;
    return void note('', `${error.message} (Distribution refuses the file); left out`);
  }
}

function thresholdOf(given: unknown, note: Note): number | undefined {
  if (given === undefined || given === null) return undefined;
  if (typeof given === 'number' && Number.isSafeInteger(given)) given = BigInt(given); // `5.0`: yaml.v2 takes it as 5
  if (typeof given !== 'bigint') return void note('', `is ${yamlKind(given)}, not a whole number (Distribution refuses the file); left out`);
  if (given <= 0n) return void note('', `is ${given}: Distribution uses its default (10) for 0 or less; left out (the default here is the same)`);
  if (given > BigInt(INT32_MAX)) {
    note('', `is ${given}, more than the ${INT32_MAX} allowed here; written as ${INT32_MAX} (either way the breaker never opens in practice)`);
    return INT32_MAX;
  }
  return Number(given);
}

/** A list of media types: non-empty strings of at most 256 characters, at most 64. */
function mediaTypes(given: unknown, note: Note): string[] {
  if (given === undefined || given === null) return [];
  if (!Array.isArray(given)) {
    note('', `is ${yamlKind(given)}, not a list; left out`);
    return [];
  }
  const kept: string[] = [];
  given.forEach((item: unknown, i) => {
    if (typeof item !== 'string') note(`[${i}]`, `is ${yamlKind(item)}, not a media type; left out`);
    else if (item === '') note(`[${i}]`, 'is empty, which cannot be listed here; left out');
    else if ([...item].length > 256) note(`[${i}]`, 'is longer than 256 characters; left out');
    else if (kept.length >= 64) note(`[${i}]`, 'is beyond the 64 media types a list holds here; left out');
    else kept.push(item);
  });
  return kept;
}

function ignoreOf(given: unknown, note: Note, ignoredmediatypes: unknown): NotificationEndpointSpec['ignore'] | undefined {
  if (given === undefined || given === null) return undefined;
  if (!isObject(given)) return void note('', `is ${yamlKind(given)}, not a mapping of mediatypes and actions; left out`);
  for (const field of Object.keys(given)) if (field !== 'mediatypes' && field !== 'actions') note(field, 'is not a field of Distribution\'s ignore (mediatypes, actions); left out');
  const types = mediaTypes(given.mediatypes, scoped(note, 'mediatypes'));
  const actions = actionsOf(given.actions, scoped(note, 'actions'));
  const listed = (list: unknown): boolean => Array.isArray(list) && list.length > 0;
  if (actions.length > 0 && !listed(given.mediatypes) && !listed(ignoredmediatypes)) {
    note('actions', `Distribution before 3.1.0 ignored an actions list without media types; here it applies: ${actions.join(', ')} events are not sent`);
  }
  const ignore: NonNullable<NotificationEndpointSpec['ignore']> = {};
  if (types.length > 0) ignore.mediaTypes = types;
  if (actions.length > 0) ignore.actions = actions;
  return types.length > 0 || actions.length > 0 ? ignore : undefined;
}

function actionsOf(given: unknown, note: Note): EventAction[] {
  if (given === undefined || given === null) return [];
  if (!Array.isArray(given)) {
    note('', `is ${yamlKind(given)}, not a list; left out`);
    return [];
  }
  const kept = new Set<EventAction>();
  given.forEach((item: unknown, i) => {
    const action = ACTIONS.find((known) => known === item);
    if (action) kept.add(action);
    else note(`[${i}]`, `is not an action Distribution sends (${ACTIONS.join(', ')}; case matters), so it ignored nothing; left out`);
  });
  return [...kept];
}
