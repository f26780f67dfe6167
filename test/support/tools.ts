// What some tests need that `npm ci` does not provide (helm or helmtpl, kubectl, a third-party CRD, the shared
// contract), and the one rule for its absence: outside CI the tests that need it are skipped, said in one loud line
// on stderr; under CI (CI set, as .ci/run does) they run and fail, naming the fix, so CI never passes by skipping.
// A variable that names a file that does not exist is a mistake, never a reason to skip: those tests fail.
import { accessSync, constants, existsSync, statSync } from 'node:fs';
import { delimiter, isAbsolute, join, resolve } from 'node:path';

/** Whether this run is CI (the variable CI is set and not empty), where no test skips for something missing. */
export function inCI(): boolean {
  return Boolean(process.env.CI);
}

/** Something tests need from outside the repository: where it was found, or why not and how to provide it. */
export interface Requirement {
  /** What it is, as the messages name it: `kubectl`, `the ServiceMonitor CRD`. */
  readonly what: string;
  /** Absolute path of the tool or file; undefined when it is not available. */
  readonly path: string | undefined;
  /** How to provide it, one sentence. */
  readonly fix: string;
  /** Set when it was named but is unusable (e.g. a variable pointing at a missing file): the tests fail, never skip. */
  readonly problem?: string;
}

const warned = new Set<string>();

/**
 * Whether the tests that need `requirement` are skipped: only when it is absent outside CI, which is said once per
 * process in one loud line naming `tests` and the fix. Never skips under CI or for a misconfiguration.
 */
export function skipWithout(requirement: Requirement, tests: string): boolean {
  if (requirement.path !== undefined || requirement.problem !== undefined || inCI()) return false;
  const key = `${requirement.what}\u0000${tests}`;
  if (!warned.has(key)) {
    warned.add(key);
    process.stderr.write(`*** SKIPPING ${tests}: ${requirement.what} is not available; ${requirement.fix} (under CI these tests fail instead) ***\n`);
  }
  return true;
}

/** The path of `requirement`; throws, naming the fix, when it is not available (as under CI, where nothing skips). */
export function need(requirement: Requirement): string {
  if (requirement.problem !== undefined) throw new Error(`${requirement.what}: ${requirement.problem}; ${requirement.fix}`);
  if (requirement.path === undefined) {
    throw new Error(`${requirement.what} is not available${inCI() ? ' and CI must not skip' : ''}; ${requirement.fix}`);
  }
  return requirement.path;
}

/** The first executable file called `name` in a directory of PATH, or undefined. */
export function onPath(name: string): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    if (dir === '') continue;
    const candidate = join(dir, name);
    try {
      if (!statSync(candidate).isFile()) continue;
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not here
    }
  }
  return undefined;
}

/**
 * A requirement named by the environment variable `variable` (a path, relative to the working directory or
 * absolute): absent when the variable is unset or empty, a `problem` when it names nothing that exists; `fix`
 * should say how to set the variable.
 */
export function fileFromEnv(variable: string, what: string, fix: string): Requirement {
  const value = process.env[variable];
  if (value === undefined || value === '') return { what, path: undefined, fix };
  const path = isAbsolute(value) ? value : resolve(value);
  if (!existsSync(path)) return { what, path: undefined, fix, problem: `${variable}=${value} does not exist` };
  return { what, path, fix };
}
