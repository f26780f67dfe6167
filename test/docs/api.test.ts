// docs/api.md is the public contract (the README points at it): its numbered sections up to 11 are the shared contract
// word for word, and its last section lists what this repository adds. Where the shared file is at hand (.ci/run and
// hack/test.sh set REGISTRY_NOTIFIER_SHARED_API_MD when it is beside the clone), every shared section must be here
// unchanged; without it that comparison is skipped with one loud line (and fails under CI).
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { fileFromEnv, need, skipWithout } from '../support/tools.ts';

const ROOT = join(import.meta.dirname, '../..');
const API_MD = join(ROOT, 'docs/api.md');
const README = join(ROOT, 'README.md');
const ADDITIONS = 'Additions in this repository';
const SHARED = fileFromEnv(
  'REGISTRY_NOTIFIER_SHARED_API_MD',
  'the shared api.md',
  'set REGISTRY_NOTIFIER_SHARED_API_MD to the shared design/api.md (hack/test.sh and .ci/run do when the shared folder is beside the clone)',
);

/** A markdown file cut at its `## ` headings (none inside code fences): the text before the first under '', then each section under its heading line. */
function sections(text: string): Map<string, string> {
  const parts = new Map<string, string>();
  let heading = '';
  let lines: string[] = [];
  let fenced = false;
  for (const line of text.split('\n')) {
    if (line.startsWith('```')) fenced = !fenced;
    if (!fenced && line.startsWith('## ')) {
      parts.set(heading, lines.join('\n').trimEnd());
      heading = line;
      lines = [];
    }
    lines.push(line);
  }
  parts.set(heading, lines.join('\n').trimEnd());
  return parts;
}

const docs = sections(readFileSync(API_MD, 'utf8'));
const headings = [...docs.keys()].filter((h) => h !== '');
const additions = docs.get(headings.at(-1) ?? '') ?? '';

describe('docs/api.md', () => {
  it('numbers its sections 1, 2, … in order and ends with the additions of this repository', () => {
    expect(headings.map((h) => Number(/^## (\d+)\. /.exec(h)?.[1]))).toEqual(headings.map((_, i) => i + 1));
    expect(headings.at(-1)).toBe(`## ${headings.length}. ${ADDITIONS}`);
    expect(headings.filter((h) => h.endsWith(ADDITIONS))).toHaveLength(1);
  });

  it('lists in its last section what the README documents beyond the shared contract', () => {
    for (const item of [
      'POST /endpoints/replay?endpoint=NAME',
      'POST /endpoints/resume?endpoint=NAME',
      'registry-notifier resume --endpoint NAME',
      'registry_notifier_discarded_total{endpoint}',
      'REGISTRY_NOTIFIER_SECRET_<N>_<K>',
      'registry-notifier demo',
      'RequestTimeout',
      'registry-notifier/signing',
      'REGISTRY_NOTIFIER_TENANCY',
      'NoRepositoryGrant',
      'registry_notifier_auto_disabled{endpoint}',
      'ReplayRequested',
      '--endpoint-histograms true|false',
      'REGISTRY_NOTIFIER_ENDPOINT_HISTOGRAMS',
    ]) {
      expect(additions, item).toContain(item);
    }
  });

  it('names every metric the README names', () => {
    const readme = readFileSync(README, 'utf8');
    const text = [...docs.values()].join('\n');
    const section5 = docs.get(headings.find((h) => h.startsWith('## 5. ')) ?? '') ?? '';
    const names = [...new Set([...readme.matchAll(/\bregistry_notif\w+/g)].map((m) => m[0]))];
    expect(names.length).toBeGreaterThanOrEqual(10);
    // Section 5 writes ours without their prefix: "prefix `registry_notifier_`: `ingest_requests_total{code}`, …".
    const missing = names.filter((name) => !text.includes(name) && !section5.includes(`\`${name.replace(/^registry_notifier_/, '')}`));
    expect(missing).toEqual([]);
  });

  it('is what the README calls the contract, near its top', () => {
    const readme = readFileSync(README, 'utf8');
    const at = readme.indexOf('[docs/api.md](docs/api.md)');
    expect(at).toBeGreaterThan(0);
    expect(at).toBeLessThan(readme.indexOf('## Quick start'));
  });
});

describe.skipIf(skipWithout(SHARED, 'the check that docs/api.md keeps the shared api.md'))('docs/api.md against the shared api.md', () => {
  it('holds every shared section unchanged, and nothing else but its additions', () => {
    const shared = sections(readFileSync(need(SHARED), 'utf8'));
    expect(shared.size).toBeGreaterThan(1);
    for (const [heading, text] of shared) {
      expect.soft(docs.get(heading), `${heading || 'the text before section 1'} differs from the shared one`).toBe(text);
    }
    expect([...docs.keys()].filter((h) => !shared.has(h))).toEqual([headings.at(-1)]);
  });
});
