// Tenancy by namespace (api.md §9): which repositories a Namespace's annotation grants the endpoints in it. Pure
// parsing and comparison; the controller reads the annotation and the engine applies the grant as part of each
// endpoint's filter (`FilterRules.grant`), where events are routed.
import { REPOSITORIES_ANNOTATION } from '../api/notification-endpoint.ts';
import { NotifierError } from '../notifications/errors.ts';

/** The Namespace annotation a grant is read from (declared with the resource, in api/notification-endpoint.ts). */
export { REPOSITORIES_ANNOTATION } from '../api/notification-endpoint.ts';

/**
 * The endpoint's Namespace grants no repository (no annotation, or one without a glob): Ready=False, reason
 * NoRepositoryGrant; the endpoint does not run. Not retried: a change of the annotation reconciles it again.
 */
export class NoRepositoryGrantError extends NotifierError {
  /** The Namespace that lacks the grant. */
  readonly namespace: string;

  constructor(namespace: string, annotation: string | undefined) {
    const what = annotation === undefined
      ? `Namespace ${namespace} has no ${REPOSITORIES_ANNOTATION} annotation`
      : `Namespace ${namespace}'s ${REPOSITORIES_ANNOTATION} annotation names no repository glob`;
    super('ERR_NO_REPOSITORY_GRANT', `${what}; with --tenancy namespace its endpoints receive only the repositories it grants, so this one receives nothing. A cluster administrator grants them with: kubectl annotate namespace ${namespace} ${REPOSITORIES_ANNOTATION}='${namespace}/**'`);
    this.namespace = namespace;
  }
}

/** The globs an annotation value names: comma-separated, each trimmed, empty entries dropped, each once, in order. */
export function parseRepositoryGrant(value: string | undefined): string[] {
  return [...new Set((value ?? '').split(',').map((glob) => glob.trim()).filter((glob) => glob !== ''))];
}

/** The grant of `namespace` from its annotations; throws `NoRepositoryGrantError` when they grant nothing. */
export function repositoryGrant(namespace: string, annotations: Readonly<Record<string, string>> | undefined): readonly string[] {
  const value = annotations?.[REPOSITORIES_ANNOTATION];
  const globs = parseRepositoryGrant(value);
  if (globs.length === 0) throw new NoRepositoryGrantError(namespace, value);
  return globs;
}

/**
 * Whether `after` takes away any glob of `before` (as written; globs are not compared by what they match, so
 * `team/*` → `team/**` counts too): events queued under `before` may then no longer be granted. No grant before
 * (`undefined`) counts as everything granted.
 */
export function grantNarrowed(before: readonly string[] | undefined, after: readonly string[]): boolean {
  return before === undefined || before.some((glob) => !after.includes(glob));
}

/** Whether two grants name the same globs (in any order). */
export function sameGrant(a: readonly string[] | undefined, b: readonly string[] | undefined): boolean {
  if (a === undefined || b === undefined) return a === b;
  return a.length === b.length && a.every((glob) => b.includes(glob));
}
