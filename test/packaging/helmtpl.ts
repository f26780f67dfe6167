// Renders the chart with helmtpl, the `helm template` stand-in of ../shared/tools/helmtpl (Helm cannot be installed
// here). The binary is built once and cached outside the clone, keyed by the hash of its source, so later runs
// start at once and a changed helmtpl is rebuilt.
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { cp, mkdir, mkdtemp, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { promisify } from 'node:util';
import { parseAllDocuments } from 'yaml';

const run = promisify(execFile);

export const REPO = join(import.meta.dirname, '../..');
export const CHART = join(REPO, 'charts/registry-notifier');
const TOOL = process.env.HELMTPL_SRC ?? join(REPO, '../shared/tools/helmtpl');
// build.sh may first apt-get install Go; on a warm machine it takes about 10 s.
const BUILD_TIMEOUT_MS = 600_000;

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
  /** `-set a.b=c` pairs. */
  set?: Record<string, string | number | boolean>;
  /** Extra templates (file name → text) added to a copy of the chart, e.g. to render NOTES.txt or call a helper. */
  extraTemplates?: Record<string, string>;
}

/** A successful render: the raw text (CRDs first, as `helm template` prints it) and its objects. */
export interface Rendered {
  text: string;
  objects: Manifest[];
}

let binary: Promise<string> | undefined;

/** Path of the helmtpl binary: `$HELMTPL` if set, else built by build.sh into ~/.cache (once per source version). */
export function helmtpl(): Promise<string> {
  binary ??= (async () => {
    if (process.env.HELMTPL) return process.env.HELMTPL;
    const source = await readFile(join(TOOL, 'main.go'));
    const hash = createHash('sha256').update(source).update(await readFile(join(TOOL, 'build.sh'))).digest('hex').slice(0, 16);
    const dir = join(process.env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'registry-notifier');
    const path = join(dir, `helmtpl-${hash}`);
    if (existsSync(path)) return path;
    await mkdir(dir, { recursive: true });
    // One builder at a time (test files run in parallel workers, and build.sh may apt-get install): the others
    // wait for the binary. A lock older than the build's own timeout was left by a killed run.
    const lock = `${path}.lock`;
    const deadline = Date.now() + BUILD_TIMEOUT_MS;
    while (!(await mkdir(lock).then(() => true, () => false))) {
      if (existsSync(path)) return path;
      const age = Date.now() - (await stat(lock).then((s) => s.mtimeMs, () => Date.now()));
      if (age > BUILD_TIMEOUT_MS) await rm(lock, { recursive: true, force: true });
      else if (Date.now() > deadline) throw new Error(`timed out waiting for another process to build ${path} (lock ${lock})`);
      else await delay(250); // poll interval
    }
    try {
      if (existsSync(path)) return path;
      // Build to a private name and rename: nobody ever sees a half-written binary.
      const partial = `${path}.${process.pid}.partial`;
      try {
        await run('bash', [join(TOOL, 'build.sh'), partial], { timeout: BUILD_TIMEOUT_MS });
      } catch (error) {
        const { stderr = '', stdout = '' } = error as { stderr?: string; stdout?: string };
        throw new Error(`building helmtpl failed (${join(TOOL, 'build.sh')}; it installs golang-go and two Go libraries with apt-get, so it needs root):\n${stdout}${stderr}`, { cause: error });
      }
      await rename(partial, path);
      return path;
    } finally {
      await rm(lock, { recursive: true, force: true });
    }
  })();
  return binary;
}

/** Outcome of a render that may fail: `ok` with the output, or the error text helmtpl printed. */
export type RenderResult = { ok: true; rendered: Rendered } | { ok: false; error: string };

/** Renders the chart; never throws for a template failure (returns its message). */
export async function tryRender(options: RenderOptions = {}): Promise<RenderResult> {
  const tool = await helmtpl();
  let chart = CHART;
  let scratch: string | undefined;
  if (options.extraTemplates) {
    scratch = await mkdtemp(join(tmpdir(), 'chart-'));
    chart = join(scratch, 'registry-notifier');
    await cp(CHART, chart, { recursive: true });
    for (const [name, text] of Object.entries(options.extraTemplates)) await writeFile(join(chart, 'templates', name), text);
  }
  const args = ['-name', options.release ?? 'rn', '-namespace', options.namespace ?? 'default'];
  for (const file of options.valuesFiles ?? []) args.push('-f', file);
  for (const [key, value] of Object.entries(options.set ?? {})) args.push('-set', `${key}=${String(value)}`);
  try {
    const { stdout } = await run(tool, [...args, chart], { maxBuffer: 32 * 1024 * 1024 });
    return { ok: true, rendered: { text: stdout, objects: parseManifests(stdout) } };
  } catch (error) {
    const { stderr, message } = error as { stderr?: string; message: string };
    return { ok: false, error: (stderr || message).trim() };
  } finally {
    if (scratch) await rm(scratch, { recursive: true, force: true });
  }
}

/** Renders the chart; throws with helmtpl's message if the render fails. */
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
