// The chart's alerts under promtool (Debian's prometheus package, `bash hack/install-promtool.sh`): the chart is
// rendered with test/alerts/values.yaml, the PrometheusRule's groups are written into a rules file in a temporary
// directory (never a hand-kept copy), `promtool check rules` must accept it, and every promtool unit test in
// test/alerts/promtool/ runs against it there and must pass. Each alert must have a test that fires it and one that
// keeps it silent, and its runbook_url must point at a runbook heading of the README.
import { execFile } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { copyFile, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';
import { CHART_RENDERER, only, render, REPO } from '../packaging/render.ts';
import { need, onPath, skipWithout, type Requirement } from '../support/tools.ts';
import { githubAnchors, type RuleGroup } from './rules.ts';

const run = promisify(execFile);
const HERE = import.meta.dirname;
const TESTS = readdirSync(join(HERE, 'promtool')).filter((f) => f.endsWith('.yaml')).sort();

const PROMTOOL: Requirement = {
  what: 'promtool',
  path: onPath('promtool'),
  fix: 'run `bash hack/install-promtool.sh` (as root) to install Debian\'s prometheus package, which ships promtool',
};
const noRenderer = skipWithout(CHART_RENDERER, 'the alert tests (they render the chart)');
const noPromtool = noRenderer || skipWithout(PROMTOOL, 'the alert tests');

/** One promtool unit-test file, as far as these checks read it. */
interface PromtoolTests {
  rule_files: string[];
  tests: { name: string; alert_rule_test?: { alertname: string; exp_alerts?: unknown[] }[] }[];
}

/** The chart's rule groups as `helm template` renders them with test/alerts/values.yaml. */
async function renderedGroups(): Promise<RuleGroup[]> {
  const { objects } = await render({ release: 'registry-notifier', namespace: 'registry', valuesFiles: [join(HERE, 'values.yaml')] });
  return (only(objects, 'PrometheusRule').spec as { groups: RuleGroup[] }).groups;
}

/** Runs promtool; resolves to its exit code and output, whatever the code. Throws, naming the fix, without promtool. */
async function promtool(args: string[], cwd: string): Promise<{ code: number; output: string }> {
  const tool = need(PROMTOOL); // under CI nothing skips: a missing promtool fails each test that runs it
  try {
    const { stdout, stderr } = await run(tool, args, { cwd, timeout: 60_000 });
    return { code: 0, output: `${stdout}${stderr}` };
  } catch (error) {
    const { code, stdout, stderr } = error as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof code === 'number' ? code : -1, output: `${stdout ?? ''}${stderr ?? ''}` };
  }
}

describe.skipIf(noPromtool)('alerts: the rendered PrometheusRule under promtool', () => {
  let dir: string;
  let groups: RuleGroup[];

  beforeAll(async () => {
    groups = await renderedGroups();
    dir = await mkdtemp(join(tmpdir(), 'alerts-'));
    await writeFile(join(dir, 'rules.yaml'), stringify({ groups }));
    for (const file of TESTS) await copyFile(join(HERE, 'promtool', file), join(dir, file));
  });

  afterAll(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('promtool check rules accepts the rendered rules', async () => {
    const { code, output } = await promtool(['check', 'rules', 'rules.yaml'], dir);
    expect(output).toContain(`SUCCESS: ${groups.flatMap((g) => g.rules).length} rules found`);
    expect(code, output).toBe(0);
  });

  it.each(TESTS)('promtool test rules %s', async (file) => {
    const tests = parse(readFileSync(join(HERE, 'promtool', file), 'utf8')) as PromtoolTests;
    expect(tests.rule_files).toEqual(['rules.yaml']); // the rendered rules, nothing else
    const { code, output } = await promtool(['test', 'rules', file], dir);
    expect(code, output).toBe(0);
    expect(output).toContain('SUCCESS');
  });

  it('every alert has a test that fires it and one that keeps it silent, and only rendered alerts are tested', () => {
    const alerts = groups.flatMap((g) => g.rules).map((r) => r.alert).filter((a): a is string => a !== undefined);
    expect(alerts).toHaveLength(10);
    const fires = new Set<string>();
    const silent = new Set<string>();
    for (const file of TESTS) {
      const tests = parse(readFileSync(join(HERE, 'promtool', file), 'utf8')) as PromtoolTests;
      for (const check of tests.tests.flatMap((t) => t.alert_rule_test ?? [])) {
        expect(alerts, `${file} tests ${check.alertname}`).toContain(check.alertname);
        ((check.exp_alerts ?? []).length > 0 ? fires : silent).add(check.alertname);
      }
    }
    expect([...fires].sort()).toEqual([...alerts].sort());
    expect([...silent].sort()).toEqual([...alerts].sort());
  });
});

describe.skipIf(noRenderer)('alerts: labels, annotations and runbooks', () => {
  it('every alert has a severity, a summary, a description and a runbook_url at a heading of the README named after it', async () => {
    const anchors = githubAnchors(readFileSync(join(REPO, 'README.md'), 'utf8'));
    const rules = (await renderedGroups()).flatMap((g) => g.rules);
    for (const rule of rules) {
      const name = rule.alert!;
      expect(['critical', 'warning'], name).toContain(rule.labels?.severity);
      expect(rule.annotations?.summary, name).toMatch(/\S/);
      expect(rule.annotations?.description, name).toMatch(/\S/);
      const url = rule.annotations?.runbook_url ?? '';
      expect(url, name).toBe(`https://github.com/registry-notifier/registry-notifier/blob/main/README.md#${name.toLowerCase()}`);
      expect(anchors, `README.md has no heading for ${url}`).toContain(name.toLowerCase());
    }
  });
});
