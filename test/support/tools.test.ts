// The rule for tests that need something from outside npm: skipped with one loud line outside CI, run and failing
// under CI, never skipped for a variable that names a missing file.
import { chmod, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeAll, afterAll, describe, expect, it, vi } from 'vitest';
import { fileFromEnv, inCI, need, onPath, skipWithout, type Requirement } from './tools.ts';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'rn-tools-'));
});
afterAll(() => rm(dir, { recursive: true, force: true }));
afterEach(() => {
  vi.unstubAllEnvs();
  vi.restoreAllMocks();
});

const absent: Requirement = { what: 'frobctl', path: undefined, fix: 'install frobctl' };

/** What skipWithout printed on stderr during `fn`. */
function stderrOf(fn: () => void): string[] {
  const lines: string[] = [];
  vi.spyOn(process.stderr, 'write').mockImplementation((chunk: string | Uint8Array) => {
    lines.push(String(chunk));
    return true;
  });
  fn();
  vi.restoreAllMocks();
  return lines;
}

describe('test/support/tools', () => {
  it('outside CI an absent requirement skips, said once in one loud line naming the tests and the fix', () => {
    vi.stubEnv('CI', '');
    expect(inCI()).toBe(false);
    let skips: boolean[] = [];
    const lines = stderrOf(() => {
      skips = [skipWithout(absent, 'the frob tests'), skipWithout(absent, 'the frob tests')];
    });
    expect(skips).toEqual([true, true]);
    expect(lines).toEqual(['*** SKIPPING the frob tests: frobctl is not available; install frobctl (under CI these tests fail instead) ***\n']);
    expect(() => need(absent)).toThrow('frobctl is not available; install frobctl');
  });

  it('under CI nothing skips, and need() fails naming the fix', () => {
    vi.stubEnv('CI', 'true');
    expect(inCI()).toBe(true);
    expect(stderrOf(() => expect(skipWithout(absent, 'the frob tests under CI')).toBe(false))).toEqual([]);
    expect(() => need(absent)).toThrow('frobctl is not available and CI must not skip; install frobctl');
  });

  it('a variable naming a missing file is a failure, not a skip; an unset one is an absence; a set one a path', async () => {
    vi.stubEnv('CI', '');
    vi.stubEnv('RN_TOOLS_TEST_FILE', join(dir, 'missing.yaml'));
    const missing = fileFromEnv('RN_TOOLS_TEST_FILE', 'the frob CRD', 'point RN_TOOLS_TEST_FILE at the CRD');
    expect(missing).toMatchObject({ path: undefined, problem: `RN_TOOLS_TEST_FILE=${join(dir, 'missing.yaml')} does not exist` });
    expect(skipWithout(missing, 'the frob CRD tests')).toBe(false);
    expect(() => need(missing)).toThrow(`the frob CRD: RN_TOOLS_TEST_FILE=${join(dir, 'missing.yaml')} does not exist; point RN_TOOLS_TEST_FILE at the CRD`);
    vi.stubEnv('RN_TOOLS_TEST_FILE', '');
    expect(fileFromEnv('RN_TOOLS_TEST_FILE', 'the frob CRD', 'x')).toEqual({ what: 'the frob CRD', path: undefined, fix: 'x' });
    await writeFile(join(dir, 'crd.yaml'), 'kind: CustomResourceDefinition\n');
    vi.stubEnv('RN_TOOLS_TEST_FILE', join(dir, 'crd.yaml'));
    const found = fileFromEnv('RN_TOOLS_TEST_FILE', 'the frob CRD', 'x');
    expect(need(found)).toBe(join(dir, 'crd.yaml'));
    expect(skipWithout(found, 'the frob CRD tests')).toBe(false);
  });

  it('onPath() finds the first executable file of that name, passing over plain files and directories', async () => {
    const [a, b, c] = ['a', 'b', 'c'].map((d) => join(dir, 'path', d));
    for (const d of [a!, b!, c!]) await mkdir(d, { recursive: true });
    await writeFile(join(a!, 'frobctl'), 'not executable');
    await mkdir(join(b!, 'frobctl'));
    await writeFile(join(c!, 'frobctl'), '#!/bin/sh\n');
    await chmod(join(c!, 'frobctl'), 0o755);
    vi.stubEnv('PATH', [a, b, c].join(':'));
    expect(onPath('frobctl')).toBe(join(c!, 'frobctl'));
    expect(onPath('no-such-tool-anywhere')).toBeUndefined();
  });
});
