// The `headers` of a Distribution endpoint (Go's http.Header: a name and a list of values) as registry-notifier can
// carry them: one value per header name, held in a Secret. Our spec keeps one entry per name (a list-map keyed by
// name, in the CRD and in the standalone parser), so several values of one name are joined into one with ", ", the
// form RFC 9110 §5.3 makes equivalent to repeated header lines. What Go would send differently or what we cannot
// hold is reported, never with a value in the message.
import { isObject, SPEC_SCHEMA, type SchemaRule } from '../api/spec-schema.ts';
import type { Note } from './note.ts';

/** A header to carry: its name as first written, and the one value to send. */
export interface CarriedHeader { readonly name: string; readonly value: string }

// The header rules are read from our spec's schema (which mirrors the CRD), so they cannot drift from it.
const HEADERS = SPEC_SCHEMA.type === 'object' ? SPEC_SCHEMA.properties.headers : undefined;
const HEADER = HEADERS?.type === 'array' && HEADERS.items.type === 'object' ? HEADERS.items.properties : {};
const stringRule = (rule: SchemaRule | undefined): Extract<SchemaRule, { type: 'string' }> | undefined => (rule?.type === 'string' ? rule : undefined);
const NAME = stringRule(HEADER.name);
// A literal value's pattern, which a Secret's value must match too (sources/endpoint-config.ts): Latin-1, no line breaks.
const VALUE = stringRule(HEADER.value);
const MAX_HEADERS = HEADERS?.type === 'array' ? HEADERS.maxItems : 0;

// An RFC 7230 token of at most 256 characters, as our spec's header names.
const isToken = (name: string): boolean => NAME?.pattern?.test(name) === true && [...name].length <= (NAME.maxLength ?? 0);
// Where a header is in a note: `headers.Authorization`, or `headers["X Bad"]` for a name that is not a token.
const at = (name: string): string => (isToken(name) ? `headers.${name}` : `headers[${JSON.stringify(name.length > 64 ? `${name.slice(0, 64)}…` : name)}]`);

/** Whether registry-notifier sets this header itself, so a spec may not (api.md §1). */
export function isReservedHeader(name: string): boolean {
  const lower = name.toLowerCase();
  return lower === 'content-type' || lower === 'content-length' || lower === 'host' || lower.startsWith('webhook-');
}

// One value as Go writes it on the wire: line breaks as spaces, surrounding blanks trimmed (net/http's Header.Write).
function wireValue(value: string): string {
  return value.replace(/[\r\n]/g, ' ').replace(/^[ \t]+|[ \t]+$/g, '');
}

/**
 * Reads `headers` (a mapping of names to lists of values); `scalarText(name, index)` gives a value's text as
 * written (`0123`, `yes`), which is what Go reads into a string where YAML 1.1 would see a number or a boolean.
 * Names differing only in case are merged into the first (HTTP names are case-insensitive; our spec refuses both).
 */
export function carriedHeaders(
  headers: unknown,
  note: Note,
  scalarText: (name: string, index: number | undefined) => string | undefined,
): CarriedHeader[] {
  if (headers === undefined || headers === null) return [];
  if (!isObject(headers)) {
    note('headers', 'is not a mapping of header names to lists of values; no header carried over');
    return [];
  }
  const byName = new Map<string, { name: string; values: string[] }>();
  for (const [name, given] of Object.entries(headers)) {
    const where = at(name);
    if (!isToken(name)) {
      note(where, 'is not a valid header name (an RFC 7230 token of at most 256 characters); left out');
      continue;
    }
    if (isReservedHeader(name)) {
      note(where, 'is set by registry-notifier itself (Content-Type, Content-Length, Host and webhook-* cannot be configured); left out');
      continue;
    }
    const values = headerValues(given, where, note, (index) => scalarText(name, index));
    if (values.length === 0) continue;
    const same = byName.get(name.toLowerCase());
    if (same) {
      note(where, `merged into header ${same.name} (header names are case-insensitive)`);
      same.values.push(...values);
    } else {
      byName.set(name.toLowerCase(), { name, values });
    }
  }
  const carried = [...byName.values()].map(({ name, values }) => {
    if (values.length > 1) {
      note(at(name), `has ${values.length} values: sent as one header line, joined with ", " (RFC 9110 §5.3: the same as repeated lines for a list-valued header; a single-valued one such as Authorization gets them all in one line)`);
    }
    return { name, value: values.join(', ') };
  });
  for (const { name } of carried.slice(MAX_HEADERS)) note(at(name), `left out: an endpoint has at most ${MAX_HEADERS} headers`);
  return carried.slice(0, MAX_HEADERS);
}

function headerValues(given: unknown, path: string, note: Note, scalarText: (index: number | undefined) => string | undefined): string[] {
  let raw: { value: unknown; index: number | undefined }[];
  if (Array.isArray(given)) {
    raw = given.map((value, index) => ({ value, index }));
  } else if (given === null || given === undefined) {
    note(path, 'has no value, so Distribution sends no such header; left out');
    return [];
  } else if (isObject(given)) {
    note(path, 'is a mapping, not a list of values; left out');
    return [];
  } else {
    note(path, 'is a single value, not a list (Distribution refuses that: its values are always lists); carried as one value');
    raw = [{ value: given, index: undefined }];
  }
  const values: string[] = [];
  for (const { value, index } of raw) {
    const where = index === undefined ? path : `${path}[${index}]`;
    if (Array.isArray(value) || isObject(value)) {
      note(where, 'is not a single value; left out');
      continue;
    }
    const text = wireValue(value === null ? '' : typeof value === 'string' ? value : (scalarText(index) ?? String(value)));
    if (text === '') {
      note(where, 'is empty: a header value held in a Secret must not be empty; left out');
    } else if (VALUE?.pattern?.test(text) !== true) {
      note(where, 'holds characters a header value cannot carry here (control characters, or beyond Latin-1); left out');
    } else {
      values.push(text);
    }
  }
  return values;
}
