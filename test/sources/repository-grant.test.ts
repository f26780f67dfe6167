import { describe, expect, it } from 'vitest';
import { compileFilter, NO_FILTER } from '../../src/notifications/filter.ts';
import { readyStateForError } from '../../src/sources/ready-state.ts';
import {
  grantNarrowed, NoRepositoryGrantError, parseRepositoryGrant, repositoryGrant, REPOSITORIES_ANNOTATION, sameGrant,
} from '../../src/sources/repository-grant.ts';
import { makeEvents } from '../support/events.ts';

describe('parseRepositoryGrant', () => {
  it.each<[string | undefined, string[]]>([
    [undefined, []],
    ['', []],
    [' , ,', []],
    ['team-a/*', ['team-a/*']],
    ['team-a/*,shared/**', ['team-a/*', 'shared/**']],
    ['  team-a/* ,\tshared/**  ,', ['team-a/*', 'shared/**']],
    ['team-a/*,team-a/*', ['team-a/*']],
  ])('%j → %j', (value, globs) => {
    expect(parseRepositoryGrant(value)).toEqual(globs);
  });
});

describe('repositoryGrant', () => {
  it('reads the annotation of the namespace', () => {
    expect(repositoryGrant('team-a', { [REPOSITORIES_ANNOTATION]: 'team-a/*, shared/**', other: 'x' })).toEqual(['team-a/*', 'shared/**']);
  });

  it('no annotation, or one without a glob, is NoRepositoryGrant with a message naming the annotation and how to grant', () => {
    for (const annotations of [undefined, {}, { other: 'team-a/*' }] as (Record<string, string> | undefined)[]) {
      const error = (() => { try { repositoryGrant('team-a', annotations); } catch (e) { return e; } })();
      expect(error).toBeInstanceOf(NoRepositoryGrantError);
      expect((error as Error).message).toBe(
        "Namespace team-a has no registry-notifier.io/repositories annotation; with --tenancy namespace its endpoints receive only the repositories it grants, so this one receives nothing. A cluster administrator grants them with: kubectl annotate namespace team-a registry-notifier.io/repositories='team-a/**'",
      );
      expect(readyStateForError(error)).toEqual({ ready: false, reason: 'NoRepositoryGrant', message: (error as Error).message });
    }
    for (const value of ['', ' , ']) {
      expect(() => repositoryGrant('team-b', { [REPOSITORIES_ANNOTATION]: value })).toThrow("Namespace team-b's registry-notifier.io/repositories annotation names no repository glob;");
    }
  });

  it('what a grant lets through follows the glob rules of filter (`*` one segment, `**` across)', () => {
    const matches = compileFilter({ ...NO_FILTER, grant: repositoryGrant('team-a', { [REPOSITORIES_ANNOTATION]: 'team-a/*,shared/**' }) });
    const at = (repository: string): boolean => matches(makeEvents(1, repository, { repository })[0]!);
    expect(['team-a/app', 'shared/base', 'shared/base/alpine'].filter(at)).toEqual(['team-a/app', 'shared/base', 'shared/base/alpine']);
    expect(['team-a/sub/app', 'team-b/app', 'team-a', 'other/shared/x'].filter(at)).toEqual([]);
  });
});

describe('comparing grants', () => {
  it('narrowed when any glob, as written, is taken away (or there was no grant)', () => {
    expect(grantNarrowed(['a/*'], ['a/*', 'b/*'])).toBe(false);
    expect(grantNarrowed(['a/*', 'b/*'], ['b/*', 'a/*'])).toBe(false);
    expect(grantNarrowed(['a/*', 'b/*'], ['a/*'])).toBe(true);
    expect(grantNarrowed(['a/*'], ['a/**'])).toBe(true); // not compared by meaning: the safe side
    expect(grantNarrowed(undefined, ['a/*'])).toBe(true);
  });

  it('the same globs in any order are the same grant', () => {
    expect(sameGrant(['a/*', 'b/*'], ['b/*', 'a/*'])).toBe(true);
    expect(sameGrant(['a/*'], ['a/*', 'b/*'])).toBe(false);
    expect(sameGrant(undefined, undefined)).toBe(true);
    expect(sameGrant(undefined, ['a/*'])).toBe(false);
  });
});
