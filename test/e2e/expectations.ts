// An independent oracle for the documented filter semantics (api.md section 1), plus small readers for the e2e suite.
// Deliberately NOT src/notifications/filter.ts (nor picomatch): the test must not share the code it checks.
import type { ReceivedEvent } from '../support/receiver.ts';

/** The filter fields of a NotificationEndpoint spec, as written in YAML. */
export interface FilterSpec {
  ignoredMediaTypes?: string[];
  ignore?: { mediaTypes?: string[]; actions?: string[] };
  filter?: {
    repositories?: { include?: string[]; exclude?: string[] };
    tags?: { include?: string[]; exclude?: string[] };
  };
}

/** A glob as api.md defines it: `*` within one path segment, `**` across segments, `?` one character; anchored. */
export function globToRegExp(glob: string): RegExp {
  let source = '';
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i]!;
    if (c === '*' && glob[i + 1] === '*') {
      // `a/**` also matches `a` itself, and `**/` may match nothing.
      if (glob[i + 2] === '/') {
        source += '(?:.*/)?';
        i += 2;
      } else {
        if (source.endsWith('/')) source = `${source.slice(0, -1)}(?:/.*)?`;
        else source += '.*';
        i += 1;
      }
    } else if (c === '*') source += '[^/]*';
    else if (c === '?') source += '[^/]';
    else source += c.replace(/[.+^${}()|[\]\\]/g, '\\$&');
  }
  return new RegExp(`^${source}$`);
}

function globsAllow(rules: { include?: string[]; exclude?: string[] } | undefined, value: string | undefined): boolean {
  const include = rules?.include ?? [];
  const exclude = rules?.exclude ?? [];
  if (value === undefined) return include.length === 0; // "an event without a tag never matches a non-empty include"
  if (exclude.some((g) => globToRegExp(g).test(value))) return false; // "exclude wins"
  return include.length === 0 || include.some((g) => globToRegExp(g).test(value));
}

/** Whether an endpoint with `spec` takes `event`, by api.md section 1 alone. */
export function allows(spec: FilterSpec, event: ReceivedEvent): boolean {
  const mediaTypes = [...(spec.ignoredMediaTypes ?? []), ...(spec.ignore?.mediaTypes ?? [])];
  if (event.target.mediaType !== undefined && mediaTypes.includes(event.target.mediaType)) return false;
  if ((spec.ignore?.actions ?? []).includes(event.action)) return false;
  if (!globsAllow(spec.filter?.repositories, event.target.repository)) return false;
  const tag = typeof event.target.tag === 'string' && event.target.tag !== '' ? event.target.tag : undefined;
  return globsAllow(spec.filter?.tags, tag);
}

/** One line per event: `action repository[:tag] [@digest-prefix] [mediaType] [from X]`, for reports and diffs. */
export function summarize(event: ReceivedEvent): string {
  const t = event.target;
  const kind = t.mediaType === undefined ? 'no-mediaType' : t.mediaType.replace(/^application\//, '');
  return [
    `${event.action} ${t.repository}${t.tag ? `:${t.tag}` : ''}`,
    t.digest ? `@${t.digest.slice(7, 19)}` : '',
    kind,
    t.fromRepository ? `from ${t.fromRepository}` : '',
  ].filter(Boolean).join(' ');
}

/** Parses Prometheus text exposition into samples `{name, labels, value}` (no escapes beyond `\"` needed here). */
export function parseMetrics(text: string): { name: string; labels: Record<string, string>; value: number }[] {
  const out: { name: string; labels: Record<string, string>; value: number }[] = [];
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)/.exec(line);
    if (!m) continue;
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]!] = l[2]!;
    out.push({ name: m[1]!, labels, value: Number(m[3]) });
  }
  return out;
}

/** The value of the one sample of `name` whose labels include `labels`; undefined when there is none. */
export function metric(text: string, name: string, labels: Record<string, string>): number | undefined {
  return parseMetrics(text).find((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))?.value;
}
