import picomatch from 'picomatch';
import type { Event } from './event.ts';

/** Include/exclude globs: `*` matches within one path segment, `**` across segments; exclude wins. */
export interface GlobRules {
  include: readonly string[];
  exclude: readonly string[];
}

/** Which events an endpoint receives. Empty lists filter nothing. */
export interface FilterRules {
  /** Distribution's `ignoredmediatypes` and `ignore.mediatypes`: drop events whose `target.mediaType` is listed. */
  ignoredMediaTypes: readonly string[];
  /** Distribution's `ignore.actions`: drop events whose `action` is listed (works on its own, unlike Distribution ≤ 3.0). */
  ignoredActions: readonly string[];
  repositories: GlobRules;
  /** An event without a tag never matches a non-empty include list. */
  tags: GlobRules;
  /**
   * The repositories the endpoint may receive at all, whatever the rules above say (tenancy: what its namespace
   * is granted). Absent: no grant applies. Present: an event's `target.repository` must match one of these globs
   * (same rules as `repositories`); an empty list, or an event without a repository, lets nothing through.
   */
  grant?: readonly string[];
}

/** A predicate: whether an endpoint takes the event. */
export type EventMatcher = (event: Event) => boolean;

/** Rules that let everything through. */
export const NO_FILTER: FilterRules = Object.freeze({
  ignoredMediaTypes: [],
  ignoredActions: [],
  repositories: { include: [], exclude: [] },
  tags: { include: [], exclude: [] },
});

/** Compiles the rules once into a predicate; globs are compiled with picomatch. The grant, when set, is ANDed with the rest. */
export function compileFilter(rules: FilterRules): EventMatcher {
  const mediaTypes = new Set(rules.ignoredMediaTypes);
  const actions = new Set(rules.ignoredActions);
  const repository = compileGlobs(rules.repositories);
  const tag = compileGlobs(rules.tags);
  const granted = compileGrant(rules.grant);
  return (event) => {
    const target = event.target;
    if (granted && !(typeof target.repository === 'string' && granted(target.repository))) return false;
    if (mediaTypes.size > 0 && typeof target.mediaType === 'string' && mediaTypes.has(target.mediaType)) return false;
    if (actions.has(event.action)) return false;
    if (!repository(typeof target.repository === 'string' ? target.repository : undefined)) return false;
    return tag(typeof target.tag === 'string' && target.tag !== '' ? target.tag : undefined);
  };
}

// No grant: undefined (nothing to check); an empty grant matches nothing.
function compileGrant(grant: readonly string[] | undefined): ((repository: string) => boolean) | undefined {
  if (grant === undefined) return undefined;
  if (grant.length === 0) return () => false;
  return picomatch([...grant], { dot: true });
}

function compileGlobs(rules: GlobRules): (value: string | undefined) => boolean {
  if (rules.include.length === 0 && rules.exclude.length === 0) return () => true;
  const include = rules.include.length > 0 ? picomatch([...rules.include], { dot: true }) : undefined;
  const exclude = rules.exclude.length > 0 ? picomatch([...rules.exclude], { dot: true }) : undefined;
  return (value) => {
    if (value === undefined) return include === undefined;
    if (exclude?.(value)) return false;
    return include === undefined || include(value);
  };
}
