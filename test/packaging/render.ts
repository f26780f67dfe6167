// Renders the chart as `helm template` does: with real Helm (3.10 or later) when `helm` is on PATH, else with
// helmtpl, a `helm template` stand-in for machines where Helm cannot be installed, named by HELMTPL (a built
// binary: `bash hack/helmtpl.sh SOURCE_DIR` builds one; CI's .ci/run and hack/test.sh do when helmtpl's source is
// at hand). With neither, the tests that render skip with one loud line, or fail under CI (test/support/tools.ts).
import { execFile } from 'node:child_process';
import { cp, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { parse, parseAllDocuments } from 'yaml';
import { fileFromEnv, need, onPath, type Requirement } from '../support/tools.ts';

const run = promisify(execFile);

/** The repository's root directory. */
export const REPO = join(import.meta.dirname, '../..');
/** The Helm chart's directory. */
export const CHART = join(REPO, 'charts/registry-notifier');
// The Kubernetes version the chart is rendered for, as helmtpl's fixed .Capabilities says (helm is told the same).
const KUBE_VERSION = 'v1.30.0';

/** A Kubernetes object as plain JSON. */
export interface Manifest {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string>; annotations?: Record<string, string> };
  [field: string]: unknown;
}

/** Options of `render`; the release is "rn" in namespace "default" unless given. */
export interface RenderOptions {
  release?: string;
  namespace?: string;
  valuesFiles?: string[];
  /** `a.b=c` pairs, each value read as YAML (`[a, b]` is a list, `3` a number, `''` null), as helmtpl's `-set` does. */
  set?: Record<string, string | number | boolean>;
  /** Extra templates (file name → text) added to a copy of the chart, e.g. to render NOTES.txt or call a helper. */
  extraTemplates?: Record<string, string>;
}

/** A successful render: the raw text (CRDs first, as `helm template --include-crds` prints it) and its objects. */
export interface Rendered {
  text: string;
  objects: Manifest[];
}

const helm = onPath('helm');
const helmtpl = fileFromEnv('HELMTPL', 'helm (or helmtpl)', 'put helm 3.10+ on PATH, or set HELMTPL to a helmtpl binary: `export HELMTPL=$(bash hack/helmtpl.sh SOURCE_DIR)` (hack/test.sh and .ci/run do it when the shared folder is beside the clone)');

/** What renders the chart here: `helm` on PATH, else the helmtpl binary named by HELMTPL; see skipWithout/need. */
export const CHART_RENDERER: Requirement = helm !== undefined
  ? { what: 'helm', path: helm, fix: 'helm is on PATH' }
  : helmtpl.path !== undefined ? { ...helmtpl, what: 'helmtpl' } : helmtpl;

/** The command line that renders `chart` with `options`, for helm or for helmtpl. */
function commandLine(chart: string, options: RenderOptions): string[] {
  const release = options.release ?? 'rn';
  const namespace = options.namespace ?? 'default';
  const sets = Object.entries(options.set ?? {});
  if (helm === undefined) {
    const args = ['-name', release, '-namespace', namespace];
    for (const file of options.valuesFiles ?? []) args.push('-f', file);
    for (const [key, value] of sets) args.push('-set', `${key}=${String(value)}`);
    return [...args, chart];
  }
  // --set-json gives each value exactly the type helmtpl's YAML reading gives it (helm's --set has its own list syntax).
  const args = ['template', release, chart, '--namespace', namespace, '--include-crds', '--kube-version', KUBE_VERSION];
  for (const file of options.valuesFiles ?? []) args.push('--values', file);
  for (const [key, value] of sets) args.push('--set-json', `${key}=${JSON.stringify(parse(String(value)) ?? null)}`);
  return args;
}

/** Outcome of a render that may fail: `ok` with the output, or the error text the renderer printed. */
export type RenderResult = { ok: true; rendered: Rendered } | { ok: false; error: string };

/** Renders the chart; never throws for a template failure (returns its message). */
export async function tryRender(options: RenderOptions = {}): Promise<RenderResult> {
  const tool = need(CHART_RENDERER);
  let chart = CHART;
  let scratch: string | undefined;
  if (options.extraTemplates) {
    scratch = await mkdtemp(join(tmpdir(), 'chart-'));
    chart = join(scratch, 'registry-notifier');
    await cp(CHART, chart, { recursive: true });
    for (const [name, text] of Object.entries(options.extraTemplates)) await writeFile(join(chart, 'templates', name), text);
  }
  try {
    const { stdout } = await run(tool, commandLine(chart, options), { maxBuffer: 32 * 1024 * 1024 });
    return { ok: true, rendered: { text: stdout, objects: parseManifests(stdout) } };
  } catch (error) {
    const { stderr, message } = error as { stderr?: string; message: string };
    return { ok: false, error: (stderr || message).trim() };
  } finally {
    if (scratch) await rm(scratch, { recursive: true, force: true });
  }
}

/** Renders the chart; throws with the renderer's message if the render fails. */
export async function render(options: RenderOptions = {}): Promise<Rendered> {
  const result = await tryRender(options);
  if (!result.ok) throw new Error(`render failed: ${result.error}`);
  return result.rendered;
}

/** The objects of a multi-document YAML stream, as plain JSON; empty documents are skipped; YAML errors throw. */
export function parseManifests(text: string): Manifest[] {
  const objects: Manifest[] = [];
  for (const doc of parseAllDocuments(text)) {
    if (doc.errors.length > 0) throw new Error(`invalid YAML: ${doc.errors.map((e) => e.message).join('; ')}`);
    const value = doc.toJS() as Manifest | null;
    if (value) objects.push(value);
  }
  return objects;
}

/** The one object of `kind` (and `name`, if given); throws when there is none or several. */
export function only(objects: Manifest[], kind: string, name?: string): Manifest {
  const found = objects.filter((o) => o.kind === kind && (name === undefined || o.metadata.name === name));
  if (found.length !== 1) throw new Error(`expected exactly one ${kind}${name ? ` ${name}` : ''}, found ${found.length}: ${objects.map((o) => `${o.kind}/${o.metadata.name}`).join(', ')}`);
  return found[0]!;
}
