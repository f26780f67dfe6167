import { describe, expect, it } from 'vitest';
import type { Event } from '../../src/notifications/event.ts';
import { compileFilter, NO_FILTER, type FilterRules } from '../../src/notifications/filter.ts';
import { fixtureEvent } from '../support/events.ts';

const MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
const event = (action: string, repository: string, tag?: string, mediaType = MANIFEST): Event => ({
  id: `${action}-${repository}-${tag ?? ''}`,
  action,
  target: { mediaType, repository, ...(tag !== undefined && { tag }) },
});
const rules = (r: Partial<FilterRules>): FilterRules => ({ ...NO_FILTER, ...r });

describe('compileFilter', () => {
  it.each<[string, Partial<FilterRules>, Event, boolean]>([
    ['no rules pass everything', {}, event('pull', 'a/b'), true],
    ['ignored media type', { ignoredMediaTypes: ['application/octet-stream'] }, event('push', 'a', undefined, 'application/octet-stream'), false],
    ['other media type', { ignoredMediaTypes: ['application/octet-stream'] }, event('push', 'a'), true],
    ['3.x delete with empty media type', { ignoredMediaTypes: ['application/octet-stream'] }, event('delete', 'a', undefined, ''), true],
    ['ignored action on its own (Distribution <= 3.0 bug not copied)', { ignoredActions: ['pull'] }, event('pull', 'a'), false],
    ['action not ignored', { ignoredActions: ['pull'] }, event('push', 'a'), true],
    ['* stays within a segment', { repositories: { include: ['team/*'], exclude: [] } }, event('push', 'team/app'), true],
    ['* does not cross a segment', { repositories: { include: ['team/*'], exclude: [] } }, event('push', 'team/sub/app'), false],
    ['** crosses segments', { repositories: { include: ['team/**'], exclude: [] } }, event('push', 'team/sub/app'), true],
    ['include misses', { repositories: { include: ['team/*'], exclude: [] } }, event('push', 'other/app'), false],
    ['exclude wins over include', { repositories: { include: ['team/**'], exclude: ['team/secret/**'] } }, event('push', 'team/secret/x'), false],
    ['exclude alone', { repositories: { include: [], exclude: ['tmp/*'] } }, event('push', 'tmp/x'), false],
    ['exclude alone lets others through', { repositories: { include: [], exclude: ['tmp/*'] } }, event('push', 'app/x'), true],
    ['tag include', { tags: { include: ['v*'], exclude: [] } }, event('push', 'a', 'v1.2'), true],
    ['tag include misses', { tags: { include: ['v*'], exclude: [] } }, event('push', 'a', 'latest'), false],
    ['no tag never matches a tag include', { tags: { include: ['*'], exclude: [] } }, event('push', 'a'), false],
    ['empty tag counts as no tag', { tags: { include: ['*'], exclude: [] } }, event('delete', 'a', ''), false],
    ['no tag passes a tag exclude', { tags: { include: [], exclude: ['*-rc*'] } }, event('push', 'a'), true],
    ['tag exclude', { tags: { include: [], exclude: ['*-rc*'] } }, event('push', 'a', '1.0-rc1'), false],
    ['all rules together', { ignoredActions: ['pull'], repositories: { include: ['prod/**'], exclude: [] }, tags: { include: ['v*'], exclude: [] } }, event('push', 'prod/web', 'v2'), true],
  ])('%s', (_name, r, e, expected) => {
    expect(compileFilter(rules(r))(e)).toBe(expected);
  });

  it.each<[string, Partial<FilterRules>, Event, boolean]>([
    ['a grant lets its repositories through', { grant: ['team-a/*'] }, event('push', 'team-a/app'), true],
    ['a grant\'s * stays within a segment', { grant: ['team-a/*'] }, event('push', 'team-a/sub/app'), false],
    ['a grant\'s ** crosses segments', { grant: ['shared/**'] }, event('push', 'shared/base/alpine'), true],
    ['any of several grant globs', { grant: ['team-a/*', 'shared/**'] }, event('push', 'shared/x'), true],
    ['outside the grant', { grant: ['team-a/*', 'shared/**'] }, event('push', 'team-b/app'), false],
    ['an empty grant lets nothing through', { grant: [] }, event('push', 'team-a/app'), false],
    ['an event without a repository never matches a grant', { grant: ['**'] }, { id: 'x', action: 'push', target: { mediaType: MANIFEST } }, false],
    ['the filter narrows within the grant', { grant: ['team-a/*'], repositories: { include: ['team-a/web'], exclude: [] } }, event('push', 'team-a/api'), false],
    ['filter and grant both pass', { grant: ['team-a/*'], repositories: { include: ['team-a/web'], exclude: [] } }, event('push', 'team-a/web'), true],
    // An endpoint's own include cannot widen what its namespace is granted.
    ['a filter include outside the grant gets nothing', { grant: ['team-a/*'], repositories: { include: ['team-b/**'], exclude: [] } }, event('push', 'team-b/app'), false],
    ['a grant applies to every action and tag', { grant: ['team-a/*'], tags: { include: ['v*'], exclude: [] } }, event('pull', 'team-b/app', 'v1'), false],
  ])('grant: %s', (_name, r, e, expected) => {
    expect(compileFilter(rules(r))(e)).toBe(expected);
  });

  it('filters the real fixtures as Distribution would', () => {
    const match = compileFilter(rules({ ignoredMediaTypes: ['application/octet-stream'], ignoredActions: ['pull'] }));
    expect(match(fixtureEvent('push-manifest-tagged.json'))).toBe(true);
    expect(match(fixtureEvent('push-blob.json'))).toBe(false);
    expect(match(fixtureEvent('pull-manifest-tagged.json'))).toBe(false);
    expect(match(fixtureEvent('delete-manifest.json'))).toBe(true);
    expect(match(fixtureEvent('v3/delete-tag.json'))).toBe(true);
  });
});
