// The PostgreSQL server binaries for the tests, and running them as the `postgres` user when the tests run as root
// (initdb and postgres refuse root). Found in /usr/lib/postgresql/<version>/bin (Debian's `postgresql`;
// hack/install-postgres.sh installs it), else `pg_config --bindir`.
import { execFile, execFileSync } from 'node:child_process';
import { accessSync, constants, existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';

/** A failure of the harness; `code` is ERR_POSTGRES_BINARIES, ERR_POSTGRES_START or ERR_POSTGRES_STOPPED. */
export class PostgresHarnessError extends Error {
  readonly code: string;
  constructor(code: string, message: string) {
    super(message);
    this.code = code;
    this.name = 'PostgresHarnessError';
  }
}

/** What to run to get the binaries. */
export const HINT = 'install it with: bash hack/install-postgres.sh (Debian: apt-get install postgresql)';
/** The operating-system user that runs the server when we are root, and the cluster's superuser. */
export const SUPERUSER = 'postgres';
const BINARIES = ['initdb', 'postgres', 'pg_ctl'] as const;
let warned = false;

/** Newest-first `/usr/lib/postgresql/<version>/bin` directories, then `pg_config --bindir`. */
function candidates(): string[] {
  const root = '/usr/lib/postgresql';
  const versions = existsSync(root) ? readdirSync(root).filter((v) => /^\d+(\.\d+)?$/.test(v)).sort((a, b) => Number(b) - Number(a)) : [];
  const found = versions.map((v) => join(root, v, 'bin'));
  try {
    found.push(execFileSync('pg_config', ['--bindir'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim());
  } catch {
    // no pg_config on PATH
  }
  return found;
}

function executable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/**
 * The directory holding initdb, postgres and pg_ctl (running as root also needs a `postgres` user and setpriv);
 * when there is none: throws under CI, else prints one loud line (once) and returns undefined, so suites skip.
 */
export function postgresBinaries(): string | undefined {
  const bin = candidates().find((dir) => BINARIES.every((name) => executable(join(dir, name))));
  const problem = bin === undefined ? `no PostgreSQL server binaries (${BINARIES.join(', ')}) in /usr/lib/postgresql/*/bin or pg_config --bindir`
    : isRoot() && runAs() === undefined ? 'running as root needs a "postgres" user and setpriv (util-linux) to run the server' : undefined;
  if (problem === undefined) return bin;
  if (process.env.CI) throw new PostgresHarnessError('ERR_POSTGRES_BINARIES', `${problem}, and CI must not skip; ${HINT}`);
  if (!warned) process.stderr.write(`*** SKIPPING real PostgreSQL tests: ${problem}; ${HINT} ***\n`);
  warned = true;
  return undefined;
}

function isRoot(): boolean {
  return process.getuid?.() === 0;
}

let setpriv: boolean | undefined;
/** Whether util-linux's setpriv is on PATH (asked once). */
function hasSetpriv(): boolean {
  try {
    setpriv ??= (execFileSync('setpriv', ['--version'], { stdio: 'ignore' }), true);
  } catch {
    setpriv = false;
  }
  return setpriv;
}

let owner: { uid: number; gid: number } | undefined | null = null;
/** The uid and gid of the `postgres` user, when it exists and setpriv can switch to it (asked once). */
function runAs(): { uid: number; gid: number } | undefined {
  if (owner !== null) return owner;
  try {
    const id = (flag: string): number => Number(execFileSync('id', [flag, SUPERUSER], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim());
    owner = hasSetpriv() ? { uid: id('-u'), gid: id('-g') } : undefined;
  } catch {
    owner = undefined;
  }
  return owner;
}

/** Who must own the cluster's files: the `postgres` user when we are root, else nobody in particular (undefined). */
export function serverOwner(): { uid: number; gid: number } | undefined {
  return isRoot() ? runAs() : undefined;
}

/**
 * `[file, args]` that runs `bin/name args` as the `postgres` user when we are root, else as ourselves; with
 * `deathSignal`, through setpriv's parent-death signal (where setpriv exists), so that a test worker killed
 * outright takes the process along.
 */
export function serverCommand(bin: string, name: string, args: string[], deathSignal?: NodeJS.Signals): [string, string[]] {
  const program = join(bin, name);
  const user = isRoot() ? [`--reuid=${SUPERUSER}`, `--regid=${SUPERUSER}`, '--init-groups'] : [];
  const death = deathSignal !== undefined && hasSetpriv() ? ['--pdeathsig', deathSignal] : [];
  if (user.length === 0 && death.length === 0) return [program, args];
  return ['setpriv', [...user, ...death, '--', program, ...args]];
}

/** Runs a PostgreSQL tool to completion (as serverCommand says); rejects with its output when it fails. */
export function tool(bin: string, name: string, args: string[], timeoutMs = 60_000): Promise<string> {
  const [file, argv] = serverCommand(bin, name, args);
  return new Promise((resolve, reject) => {
    execFile(file, argv, { timeout: timeoutMs, killSignal: 'SIGKILL', env: serverEnv() }, (err, stdout, stderr) => {
      if (!err) return resolve(stdout);
      reject(new PostgresHarnessError('ERR_POSTGRES_START', `${name} ${args.join(' ')} failed (${err.killed ? 'timed out' : `exit ${String(err.code)}`}):\n${stdout}${stderr}`.trim()));
    });
  });
}

/** Our environment without PG* variables (PGDATA, PGPORT... would change what the tools do), in the C locale. */
export function serverEnv(): NodeJS.ProcessEnv {
  return { ...Object.fromEntries(Object.entries(process.env).filter(([key]) => !key.startsWith('PG'))), LC_ALL: 'C' };
}
