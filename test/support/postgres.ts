// A real PostgreSQL server for tests: a fresh cluster in a temp dir, on 127.0.0.1 and a free port, started and
// stopped by the test file that uses it; the binaries and running them as `postgres` are postgres-binaries.ts's.
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync, rmSync } from 'node:fs';
import { appendFile, chmod, chown, mkdtemp, open, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { HINT, PostgresHarnessError, postgresBinaries, serverCommand, serverEnv, serverOwner, SUPERUSER, tool } from './postgres-binaries.ts';
import { GiveUp, until } from './wait.ts';
import { freePort } from './free-port.ts';

export { PostgresHarnessError, postgresBinaries };

/** Options of `startPostgres`; all optional. */
export interface PostgresOptions {
  /** Directory holding initdb, postgres and pg_ctl; defaults to postgresBinaries(). */
  bin?: string;
  /**
   * `fsync` (and `full_page_writes`) on, as in production: realistic commit latency for benchmarks. Default true.
   * Off, a commit still reaches the operating system before it returns (`synchronous_commit` stays on), so it
   * survives the server being killed; only an operating-system crash could lose it, which no test does.
   */
  fsync?: boolean;
  /** Extra postgresql.conf settings, written as given (`{ max_connections: '20' }`). */
  settings?: Readonly<Record<string, string>>;
  /** Deadline for the server to accept connections, at each start; default 30 s. */
  startTimeoutMs?: number;
  /** Keep the temp dir (data, postgres.log) after stop(), for debugging. */
  keepDir?: boolean;
}

// The role and database the product connects as: not a superuser, owner of its database (as in production).
const USER = 'notifier';
const DATABASE = 'notifier';
// What the log says when the port was taken between picking it and the server binding it.
const PORT_TAKEN = /could not bind IPv4 address|Address already in use|could not create any TCP\/IP sockets/;
// What the log says when a killed server's children still hold its shared memory: they exit within moments.
const STILL_IN_USE = /pre-existing shared memory block .* is still in use|lock file .* already exists/;

const live = new Set<ChildProcess>();
const dirs = new Set<string>();
process.once('exit', () => { // a worker exiting without stop() must not leak a server or its data
  // SIGQUIT is PostgreSQL's immediate shutdown: the postmaster stops its children, then exits. Nothing async runs
  // here, so wait for that by reading /proc (an exited child stays a zombie: nobody reaps it before we exit), then
  // remove the data, which a postmaster still shutting down would write into.
  const pids = [...live].flatMap((child) => (child.kill('SIGQUIT') && child.pid !== undefined ? [child.pid] : []));
  const deadline = Date.now() + 10_000;
  while (pids.some(runningPid) && Date.now() < deadline) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 20);
  dirs.forEach((dir) => rmSync(dir, { recursive: true, force: true, maxRetries: 3 }));
});

/** Whether process `pid` exists and is not a zombie (Linux /proc). */
function runningPid(pid: number): boolean {
  try {
    return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}

/** A `postgres://user:password@127.0.0.1:port/db` URL, the parts percent-encoded. */
function urlOf(user: string, password: string, port: number, database: string): string {
  return `postgres://${encodeURIComponent(user)}:${encodeURIComponent(password)}@127.0.0.1:${port}/${encodeURIComponent(database)}`;
}

/** Runs `sql` on a connection of its own to `url` and returns the rows; the connection is closed either way. */
export async function queryOnce<R extends pg.QueryResultRow = pg.QueryResultRow>(url: string, sql: string, params: unknown[] = []): Promise<R[]> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 5_000 });
  client.on('error', () => {}); // a server that goes away mid-test is what some tests do; the query rejects
  try {
    await client.connect();
    return (await client.query<R>(sql, params)).rows;
  } finally {
    await client.end().catch(() => {});
  }
}

/** Whether `child` is still running. */
function running(child: ChildProcess | undefined): boolean {
  return child !== undefined && child.exitCode === null && child.signalCode === null;
}

/** Signals after which the postmaster exits on its own at once: kill() waits for those. */
const STOPPING = new Set<NodeJS.Signals>(['SIGKILL', 'SIGQUIT', 'SIGINT']);

/**
 * A running PostgreSQL server owned by one test file. `url` connects as `notifier` (password authentication, not
 * a superuser, owner of database `notifier`); `adminUrl` as the superuser, for what a test does to the server
 * (ALTER SYSTEM, pg_terminate_backend, fresh databases). Only 127.0.0.1 listens; the Unix socket is in `dir`.
 * `stop()` is idempotent; a worker that exits without it still stops the server (and, killed outright, setpriv's
 * parent-death signal does).
 */
export class TestPostgres {
  /** Temp dir (mode 0700): `data/`, `postgres.log`, the Unix socket. */
  readonly dir: string;
  /** The cluster's data directory. */
  readonly dataDir: string;
  /** Where the server's stderr goes, across restarts. */
  readonly logFile: string;
  /** The loopback TCP port, the same across restarts. */
  readonly port: number;
  /** `postgres://notifier:<password>@127.0.0.1:<port>/notifier`. */
  readonly url: string;
  /** The `notifier` role's password: tests assert it never shows in output. */
  readonly password: string;
  /** The superuser's URL, on database `notifier`. */
  readonly adminUrl: string;
  readonly #bin: string;
  readonly #opts: PostgresOptions;
  readonly #adminPassword: string;
  #child: ChildProcess | undefined;
  #exited: Promise<void> = Promise.resolve();
  #databases = 0;
  #stopping: Promise<void> | undefined;

  private constructor(bin: string, dir: string, port: number, passwords: { user: string; admin: string }, opts: PostgresOptions) {
    this.#bin = bin;
    this.#opts = opts;
    this.dir = dir;
    this.dataDir = join(dir, 'data');
    this.logFile = join(dir, 'postgres.log');
    this.port = port;
    this.password = passwords.user;
    this.#adminPassword = passwords.admin;
    this.url = urlOf(USER, passwords.user, port, DATABASE);
    this.adminUrl = urlOf(SUPERUSER, passwords.admin, port, DATABASE);
  }

  /** Creates a cluster in a fresh temp dir, starts it on a free loopback port and resolves once it accepts connections. */
  static async start(opts: PostgresOptions = {}): Promise<TestPostgres> {
    const bin = opts.bin ?? postgresBinaries();
    if (bin === undefined) throw new PostgresHarnessError('ERR_POSTGRES_BINARIES', `no PostgreSQL server binaries; ${HINT}`);
    const dir = await mkdtemp(join(tmpdir(), 'pg-'));
    if (!opts.keepDir) dirs.add(dir);
    let server: TestPostgres | undefined;
    try {
      const passwords = await initCluster(bin, dir, opts);
      for (let attempt = 1; server === undefined; attempt++) {
        const candidate = new TestPostgres(bin, dir, await freePort(), passwords, opts);
        try {
          await candidate.#start();
          server = candidate;
        } catch (err) {
          // Another process took the port between our picking it and the server binding it: pick another one.
          if (attempt >= 3 || !PORT_TAKEN.test((err as Error).message)) throw err;
        }
      }
      // The product's role and database; utility statements take no parameters, and both values are ours.
      await queryOnce(server.#superuserOn('postgres'), `CREATE ROLE ${USER} LOGIN PASSWORD '${passwords.user}'`);
      await queryOnce(server.#superuserOn('postgres'), `CREATE DATABASE ${DATABASE} OWNER ${USER}`);
      return server;
    } catch (err) {
      if (server) await server.#shutdown();
      await removeDir(dir, opts.keepDir);
      throw err;
    }
  }

  /** The postmaster's process id while it runs. */
  get pid(): number | undefined {
    return running(this.#child) ? this.#child?.pid : undefined;
  }

  /** Whether the server process is running. */
  get running(): boolean {
    return running(this.#child);
  }

  /** Runs `sql` as the superuser on database `notifier` (a connection of its own) and returns the rows. */
  admin<R extends pg.QueryResultRow = pg.QueryResultRow>(sql: string, params: unknown[] = []): Promise<R[]> {
    return queryOnce<R>(this.adminUrl, sql, params);
  }

  /** Creates a fresh empty database owned by `notifier` and returns its URL (with the password). */
  async createDatabase(): Promise<string> {
    const name = `test_${++this.#databases}`;
    await queryOnce(this.#superuserOn('postgres'), `CREATE DATABASE ${name} OWNER ${USER}`);
    return urlOf(USER, this.password, this.port, name);
  }

  /**
   * Sends `signal` to the postmaster: SIGKILL is a crash (its children notice and exit), SIGQUIT an immediate and
   * SIGINT a fast shutdown, SIGHUP a reload; for the first three, resolves once it has exited (deadline 30 s).
   */
  async kill(signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    const child = this.#child;
    if (!child || !running(child)) throw new PostgresHarnessError('ERR_POSTGRES_STOPPED', 'the server is not running');
    child.kill(signal);
    if (STOPPING.has(signal)) await this.#waitExit(30_000);
  }

  /**
   * Stops the server (fast shutdown; nothing if it was killed) and starts it again on the same port and data,
   * resolving once it accepts connections: the "database restarted" drill. Clients see their connections end.
   */
  async restart(): Promise<void> {
    if (this.#stopping) throw new PostgresHarnessError('ERR_POSTGRES_STOPPED', 'the server was stopped for good');
    await this.#shutdown();
    // After a SIGKILL the old children may hold the shared memory for a moment: try again until they are gone.
    let failure: unknown;
    const up = await until(async () => {
      try {
        await this.#start();
        return true;
      } catch (err) {
        failure = err;
        if (!STILL_IN_USE.test((err as Error).message)) throw new GiveUp('another failure');
        return false;
      }
    }, 'the old server to release its shared memory', this.#opts.startTimeoutMs ?? 30_000).then(() => true, () => false);
    if (!up) throw failure;
  }

  /** `pg_ctl stop -m fast`, waits for the server to exit and removes the temp dir (unless keepDir); idempotent. */
  stop(): Promise<void> {
    this.#stopping ??= (async () => {
      await this.#shutdown();
      await removeDir(this.dir, this.#opts.keepDir);
    })();
    return this.#stopping;
  }

  /** Starts the postmaster and polls until it accepts connections; on failure stops it and throws with the log's new lines. */
  async #start(): Promise<void> {
    const from = (await stat(this.logFile).catch(() => undefined))?.size ?? 0;
    const log = await open(this.logFile, 'a');
    const [file, args] = serverCommand(this.#bin, 'postgres', ['-D', this.dataDir, '-p', String(this.port)], 'SIGQUIT');
    const child = spawn(file, args, { stdio: ['ignore', log.fd, log.fd], env: serverEnv() });
    await log.close(); // the child holds its own copy of the descriptor
    live.add(child);
    this.#child = child;
    this.#exited = new Promise((resolve) => child.once('exit', () => resolve()));
    void this.#exited.then(() => live.delete(child));
    const timeoutMs = this.#opts.startTimeoutMs ?? 30_000;
    const up = await until(async () => {
      if (!running(child)) throw new GiveUp('exited');
      return queryOnce(this.#superuserOn('postgres'), 'SELECT 1').then(() => true);
    }, 'postgres to accept connections', timeoutMs).then(() => true, () => false);
    if (up) return;
    const why = running(child) ? `not accepting connections within ${timeoutMs} ms` : `exited (code ${child.exitCode}, signal ${child.signalCode})`;
    await this.#shutdown();
    const tail = (await readFile(this.logFile).catch(() => Buffer.alloc(0))).subarray(from).toString().trimEnd().split('\n').slice(-40).join('\n');
    throw new PostgresHarnessError('ERR_POSTGRES_START', `postgres ${why}; its log:\n${tail}`);
  }

  /** The superuser's URL on `database` (`postgres` exists from the start, `notifier` once created). */
  #superuserOn(database: string): string {
    return urlOf(SUPERUSER, this.#adminPassword, this.port, database);
  }

  /** Fast shutdown through pg_ctl, else a signal; resolves once the postmaster has exited. */
  async #shutdown(): Promise<void> {
    const child = this.#child;
    if (!child || !running(child)) return;
    await tool(this.#bin, 'pg_ctl', ['stop', '-D', this.dataDir, '-m', 'fast', '-w', '-t', '30']).catch(() => child.kill('SIGINT'));
    await this.#waitExit(30_000);
  }

  /** Waits for the postmaster to exit; after `timeoutMs` kills it (SIGKILL) and waits for that. */
  async #waitExit(timeoutMs: number): Promise<void> {
    const timer = setTimeout(() => this.#child?.kill('SIGKILL'), timeoutMs);
    await this.#exited;
    clearTimeout(timer);
  }
}

/** initdb into `dir/data` with a superuser password, then our settings; returns the passwords. */
async function initCluster(bin: string, dir: string, opts: PostgresOptions): Promise<{ user: string; admin: string }> {
  await chmod(dir, 0o700);
  const owner = serverOwner();
  if (owner) await chown(dir, owner.uid, owner.gid);
  const passwords = { user: `pw-${randomBytes(12).toString('hex')}`, admin: `admin-${randomBytes(12).toString('hex')}` };
  const pwfile = join(dir, 'superuser-password');
  await writeFile(pwfile, `${passwords.admin}\n`, { mode: 0o600 });
  if (owner) await chown(pwfile, owner.uid, owner.gid);
  // --no-sync: initdb's own fsync of the new cluster costs seconds and protects nothing a test needs.
  await tool(bin, 'initdb', ['-D', join(dir, 'data'), '-U', SUPERUSER, `--pwfile=${pwfile}`, '--auth-local=trust',
    '--auth-host=scram-sha-256', '--encoding=UTF8', '--locale=C', '--no-sync', '--no-instructions']);
  await rm(pwfile);
  const fsync = opts.fsync ?? true ? 'on' : 'off';
  const settings: Record<string, string> = {
    listen_addresses: `'127.0.0.1'`,
    unix_socket_directories: `'${dir}'`,
    fsync,
    full_page_writes: fsync,
    max_connections: '60', // several pools of a few connections each; the default 100 costs memory on a shared machine
    shared_buffers: '32MB',
    logging_collector: 'off',
    ...opts.settings,
  };
  const lines = Object.entries(settings).map(([key, value]) => `${key} = ${value}`).join('\n');
  await appendFile(join(dir, 'data', 'postgresql.conf'), `\n# test/support/postgres.ts\n${lines}\n`);
  return passwords;
}

/** Starts a PostgreSQL server for a test file: `const db = await startPostgres()`, and `await db.stop()` after. */
export function startPostgres(opts: PostgresOptions = {}): Promise<TestPostgres> {
  return TestPostgres.start(opts);
}

async function removeDir(dir: string, keep = false): Promise<void> {
  if (keep) return;
  await rm(dir, { recursive: true, force: true, maxRetries: 3 });
  dirs.delete(dir);
}
