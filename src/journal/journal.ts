import { existsSync, mkdirSync, renameSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { DatabaseSync, type StatementSync } from 'node:sqlite';
import type { Logger } from 'pino';
import { NotifierError } from '../notifications/errors.ts';
import type { Committed, EndpointStore, QueueBackend, Route } from '../notifications/queue-store.ts';
import type { QueuedEvent } from '../notifications/sink.ts';

/** Settings of `Journal.open`; the defaults are the product's. */
export interface JournalOptions {
  /** How long opening waits for a lock someone else holds before failing (default 5 s). */
  busyTimeoutMs?: number;
  /** Dead letters kept per endpoint, the oldest deleted beyond it (default 100,000). */
  maxDeadLetters?: number;
  /** How often the write-ahead log is synced to disk when something was committed (default 1 s; 0 = never). */
  syncIntervalMs?: number;
}

// With synchronous=NORMAL SQLite syncs the WAL only at checkpoints; a passive checkpoint every second (when
// anything was committed) bounds what an OS crash or power loss can take to about the last second.
const SYNC_INTERVAL_MS = 1000;

/** The journal's file inside `--queue-dir`. */
export const JOURNAL_FILE = 'journal.db';

// Dead letters kept per endpoint; beyond it the oldest are deleted (a receiver that refuses everything
// forever must not fill the disk).
const MAX_DEAD_LETTERS = 100_000;
// Trimming to that cap walks the endpoint's dead letters (~10 ms at 100,000), so it runs at the first dead letter
// after a start and then once per 1% of the cap: the cap is exceeded by at most that much, briefly.
const TRIM_SHARE = 0.01;
// How long opening waits for a lock someone else holds (a backup, an sqlite3 shell) before giving up.
const BUSY_TIMEOUT_MS = 5000;
// SQLite's primary result codes (the low byte of node:sqlite's `errcode`) that say "this is not a readable
// database": only those move the file aside. Anything else (locked, permissions, disk full) fails the start.
const SQLITE_BUSY = 5;
const SQLITE_LOCKED = 6;
const SQLITE_CORRUPT = 11;
const SQLITE_NOTADB = 26;

const SCHEMA = `
CREATE TABLE IF NOT EXISTS events (seq INTEGER PRIMARY KEY, id TEXT NOT NULL, json TEXT NOT NULL, accepted_at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS pending (endpoint TEXT NOT NULL, seq INTEGER NOT NULL, PRIMARY KEY (endpoint, seq)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS pending_by_seq ON pending (seq);
CREATE TABLE IF NOT EXISTS dead_letters (endpoint TEXT NOT NULL, seq INTEGER NOT NULL, reason TEXT NOT NULL, at INTEGER NOT NULL, PRIMARY KEY (endpoint, seq)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS dead_letters_by_seq ON dead_letters (seq);
`;

interface Row {
  seq: number;
  id: string;
  json: string;
  accepted_at: number;
}

/**
 * The durable queue (`--queue-dir`), on SQLite (node:sqlite) in WAL mode: every accepted event is written once,
 * with one pending row per endpoint that takes it, in the ingest request's single transaction, before the
 * ingest answers 2xx. Delivery deletes the endpoint's row; an event no endpoint needs any more (pending or
 * dead-lettered) is deleted with it, so the file holds only what is still owed. `synchronous=NORMAL`: a commit
 * survives the process being killed at any point (SQLite's WAL is appended before the commit returns); an
 * operating-system crash or power loss can lose the last commits since the WAL was last synced. SQLite syncs
 * it at each checkpoint, that is every ~1000 pages written: about a second under heavy load, but when it is
 * quiet only the kernel's own writeback (typically within 30 s) bounds the loss, and nothing guarantees it. SQLite discards an incomplete or corrupt last transaction
 * of the WAL by its checksums; a database it cannot read at all (not a database, or failing its integrity
 * check) is moved aside and a new one started, so a damaged disk never stops the service. A journal that is
 * merely unavailable (locked by another process, not writable) is not damaged: opening it fails instead, so
 * nothing owed is set aside. One process holds the journal at a time (SQLite's exclusive locking mode): a
 * second `serve` on the same `--queue-dir` would deliver the same events twice and out of order.
 * Numbers (`seq`) are handed out by the process and never twice while it runs, even when the transaction
 * that handed them out rolled back.
 * What delivery records (acknowledgements, dead letters) never fails into delivery: when it cannot be written
 * (a full disk) it is kept in memory and written with the next record or within a second, logged once when it
 * starts failing and once when it works again; a restart before then sends those events again (at least once).
 */
export class Journal implements QueueBackend {
  #db: DatabaseSync;
  #logger: Logger;
  #closed = false;
  #unrecorded: (() => void)[] = [];
  #recordFailing = false;
  #nextSeq: number;
  #maxDeadLetters: number;
  #deadSinceTrim = new Map<string, number>();
  #insertEvent: StatementSync;
  #insertPending: StatementSync;
  #deletePending: StatementSync;
  #collect: StatementSync;
  #committed = false;
  #syncFailing = false;
  #syncTimer: NodeJS.Timeout | undefined;

  private constructor(db: DatabaseSync, logger: Logger, options: JournalOptions) {
    this.#db = db;
    this.#logger = logger;
    const every = options.syncIntervalMs ?? SYNC_INTERVAL_MS;
    if (every > 0) {
      this.#syncTimer = setInterval(() => {
        this.#flush();
        this.#sync();
      }, every);
      this.#syncTimer.unref();
    }
    this.#maxDeadLetters = options.maxDeadLetters ?? MAX_DEAD_LETTERS;
    this.#insertEvent = db.prepare('INSERT INTO events (seq, id, json, accepted_at) VALUES (?, ?, ?, ?)');
    this.#nextSeq = (db.prepare('SELECT coalesce(max(seq), 0) + 1 AS next FROM events').get() as { next: number }).next;
    this.#insertPending = db.prepare('INSERT OR IGNORE INTO pending (endpoint, seq) VALUES (?, ?)');
    this.#deletePending = db.prepare('DELETE FROM pending WHERE endpoint = ? AND seq = ?');
    this.#collect = db.prepare(
      'DELETE FROM events WHERE seq = ? AND NOT EXISTS (SELECT 1 FROM pending WHERE seq = ?) AND NOT EXISTS (SELECT 1 FROM dead_letters WHERE seq = ?)',
    );
  }

  /**
   * Opens (or creates) the journal in `dir`; never fails because of what a crash left behind. Throws when the
   * journal is held by another process (after waiting `busyTimeoutMs`, default 5 s) or cannot be opened.
   */
  static open(dir: string, logger: Logger, options: JournalOptions = {}): Journal {
    mkdirSync(dir, { recursive: true });
    const path = join(dir, JOURNAL_FILE);
    const wal = `${path}-wal`;
    // Measured before opening (which replays the log), said only once the journal is ours: a second process
    // refused because the journal is in use has nothing to recover.
    const walBytes = existsSync(wal) ? statSync(wal).size : 0;
    const busyTimeoutMs = options.busyTimeoutMs ?? BUSY_TIMEOUT_MS;
    try {
      const journal = withDatabase(openDatabase(path, busyTimeoutMs), (db) => new Journal(db, logger, options));
      if (walBytes > 0) {
        logger.warn({ path, walBytes }, 'journal: the last run did not stop cleanly; its write-ahead log was recovered (an incomplete or corrupt last transaction is discarded)');
      }
      return journal;
    } catch (error) {
      if (!unreadable(error)) throw unavailable(path, error);
      const aside = `${path}.corrupt-${new Date().toISOString().replace(/[:.]/g, '-')}`;
      for (const suffix of ['', '-wal', '-shm']) if (existsSync(path + suffix)) renameSync(path + suffix, aside + suffix);
      logger.error({ err: error, movedTo: aside }, 'journal: unreadable; moved aside and starting a new one');
      return withDatabase(openDatabase(path, busyTimeoutMs), (db) => new Journal(db, logger, options));
    }
  }

  /**
   * Stores a request's events once each, with a pending row per route, in one transaction: all of it is
   * committed or, if anything fails, none of it (`JournalWriteError`). Returns the routes with their events
   * numbered; an event shared by several routes is one stored event, and one object, in all of them.
   */
  commit(routes: readonly Route[]): Committed {
    return this.#transaction(() => {
      const stored = new Map<QueuedEvent, QueuedEvent>();
      const numbered = routes.map(({ endpoint, events }) => ({
        endpoint,
        events: events.map((event) => {
          let numbered = stored.get(event);
          if (numbered === undefined) {
            numbered = event.seq !== undefined ? event : { ...event, seq: this.#nextSeq++ }; // taken even if the commit fails
            if (event.seq === undefined) this.#insertEvent.run(numbered.seq!, event.id, event.json, event.acceptedAt);
            stored.set(event, numbered);
          }
          this.#insertPending.run(endpoint, numbered.seq!);
          return numbered;
        }),
      }));
      return { routes: numbered, duplicates: [] };
    });
  }

  /** The store of one endpoint; `pending()` reads what it owes (what `attach` queues). */
  storeFor(endpoint: string): EndpointStore & { pending(): QueuedEvent[] } {
    const pending = (): QueuedEvent[] =>
      this.#rows('SELECT e.seq, e.id, e.json, e.accepted_at FROM pending p JOIN events e ON e.seq = p.seq WHERE p.endpoint = ? ORDER BY p.seq', endpoint);
    return {
      // What was owed when the process last stopped goes out first, in its order.
      attach: (window) => window.push(pending()),
      pending,
      ack: (events) => this.#record(() => this.#release(endpoint, events)),
      deadLetter: (events, reason) => {
        const at = Date.now();
        this.#record(() => this.#deadLetter(endpoint, events, reason, at));
      },
      takeDeadLetters: () => {
        if (!this.#flush()) throw new JournalWriteError('earlier deliveries and dead letters cannot be recorded yet');
        return this.#transaction(() => this.#takeDeadLetters(endpoint));
      },
      drop: () => this.#record(() => void this.#drop(endpoint)),
    };
  }

  /** Endpoints the journal holds anything for. */
  endpoints(): string[] {
    const rows = this.#db.prepare('SELECT endpoint FROM pending UNION SELECT endpoint FROM dead_letters').all() as { endpoint: string }[];
    return rows.map((row) => row.endpoint);
  }

  /**
   * Drops what is kept (pending events and dead letters) for every endpoint `gone` says no longer exists;
   * returns the pending events dropped per endpoint.
   */
  forget(gone: (endpoint: string) => boolean): Map<string, number> {
    const dropped = new Map<string, number>();
    for (const endpoint of this.endpoints()) {
      if (!gone(endpoint)) continue;
      dropped.set(endpoint, this.#transaction(() => this.#drop(endpoint)));
    }
    return dropped;
  }

  /** Counts for tests and logs: events stored, pending rows, dead letters. */
  counts(): { events: number; pending: number; deadLetters: number } {
    const count = (table: string): number => (this.#db.prepare(`SELECT count(*) AS n FROM ${table}`).get() as { n: number }).n;
    return { events: count('events'), pending: count('pending'), deadLetters: count('dead_letters') };
  }

  /** Records deliveries not yet written if it can, checkpoints and closes the database; idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#flush();
    this.#closed = true;
    clearInterval(this.#syncTimer);
    if (this.#unrecorded.length > 0) {
      this.#logger.warn({ unrecorded: this.#unrecorded.length }, 'journal: closing with deliveries not recorded; those events are sent again at the next start');
    }
    try {
      this.#db.exec('PRAGMA wal_checkpoint(TRUNCATE)');
    } catch (error) {
      this.#logger.warn({ err: error }, 'journal: checkpoint on close failed');
    }
    this.#db.close();
  }

  /** A passive checkpoint: syncs the WAL to disk (and copies what it can into the database) if anything was committed. */
  #sync(): void {
    if (!this.#committed || this.#closed) return;
    this.#committed = false;
    try {
      this.#db.exec('PRAGMA wal_checkpoint(PASSIVE)');
      if (this.#syncFailing) this.#logger.info('journal: periodic sync works again');
      this.#syncFailing = false;
    } catch (error) {
      if (!this.#syncFailing) this.#logger.warn({ err: error }, 'journal: periodic sync failed; retried every second');
      this.#syncFailing = true;
    }
  }

  /** Runs `fn` in one transaction: committed whole, or rolled back whole with `JournalWriteError`. */
  #transaction<T>(fn: () => T): T {
    try {
      this.#db.exec('BEGIN IMMEDIATE');
    } catch (error) {
      throw new JournalWriteError('cannot start a transaction', error);
    }
    try {
      const result = fn();
      this.#db.exec('COMMIT');
      this.#committed = true;
      return result;
    } catch (error) {
      // SQLite rolls the whole transaction back by itself after some errors (I/O, disk full); else we do.
      if (this.#db.isTransaction) this.#db.exec('ROLLBACK');
      throw error instanceof JournalWriteError ? error : new JournalWriteError('write failed', error);
    }
  }

  /** Writes a delivery's record now, behind any that could not be written yet, in order. */
  #record(step: () => void): void {
    this.#unrecorded.push(step);
    this.#flush();
  }

  /** Writes the records kept in memory; whether nothing is left unwritten. Never throws. */
  #flush(): boolean {
    if (this.#unrecorded.length === 0) return true;
    if (this.#closed) return false;
    const steps = this.#unrecorded;
    try {
      this.#transaction(() => {
        for (const step of steps) step();
      });
    } catch (error) {
      if (!this.#recordFailing) {
        this.#recordFailing = true;
        this.#logger.error({ err: error, unrecorded: steps.length }, 'journal: cannot record deliveries; kept in memory and retried every second (a restart before then sends those events again)');
      }
      return false;
    }
    this.#unrecorded = [];
    if (this.#recordFailing) {
      this.#recordFailing = false;
      this.#logger.info({ recorded: steps.length }, 'journal: recording deliveries again');
    }
    return true;
  }

  #release(endpoint: string, events: readonly QueuedEvent[]): void {
    for (const { seq } of events) {
      if (seq === undefined) continue;
      this.#deletePending.run(endpoint, seq);
      this.#collect.run(seq, seq, seq);
    }
  }

  #deadLetter(endpoint: string, events: readonly QueuedEvent[], reason: string, now: number): void {
    const insert = this.#db.prepare('INSERT OR REPLACE INTO dead_letters (endpoint, seq, reason, at) VALUES (?, ?, ?, ?)');
    for (const { seq } of events) {
      if (seq === undefined) continue;
      insert.run(endpoint, seq, reason.slice(0, 1024), now);
      this.#deletePending.run(endpoint, seq);
    }
    const since = (this.#deadSinceTrim.get(endpoint) ?? Number.POSITIVE_INFINITY) + events.length;
    const trimEvery = Math.max(1, Math.floor(this.#maxDeadLetters * TRIM_SHARE));
    this.#deadSinceTrim.set(endpoint, since >= trimEvery ? 0 : since);
    if (since < trimEvery) return;
    const over = this.#db.prepare('SELECT seq FROM dead_letters WHERE endpoint = ? ORDER BY seq DESC LIMIT -1 OFFSET ?').all(endpoint, this.#maxDeadLetters) as { seq: number }[];
    const remove = this.#db.prepare('DELETE FROM dead_letters WHERE endpoint = ? AND seq = ?');
    for (const { seq } of over) {
      remove.run(endpoint, seq);
      this.#collect.run(seq, seq, seq);
    }
  }

  #takeDeadLetters(endpoint: string): QueuedEvent[] {
    const events = this.#rows('SELECT e.seq, e.id, e.json, e.accepted_at FROM dead_letters d JOIN events e ON e.seq = d.seq WHERE d.endpoint = ? ORDER BY d.seq', endpoint);
    for (const { seq } of events) this.#insertPending.run(endpoint, seq!);
    this.#db.prepare('DELETE FROM dead_letters WHERE endpoint = ?').run(endpoint);
    return events;
  }

  #drop(endpoint: string): number {
    const pending = this.#db.prepare('SELECT seq FROM pending WHERE endpoint = ?').all(endpoint) as { seq: number }[];
    const dead = this.#db.prepare('SELECT seq FROM dead_letters WHERE endpoint = ?').all(endpoint) as { seq: number }[];
    this.#db.prepare('DELETE FROM pending WHERE endpoint = ?').run(endpoint);
    this.#db.prepare('DELETE FROM dead_letters WHERE endpoint = ?').run(endpoint);
    for (const { seq } of [...pending, ...dead]) this.#collect.run(seq, seq, seq);
    return pending.length;
  }

  #rows(sql: string, endpoint: string): QueuedEvent[] {
    return (this.#db.prepare(sql).all(endpoint) as unknown as Row[]).map((row) => ({
      id: row.id,
      json: row.json,
      acceptedAt: row.accepted_at,
      seq: row.seq,
    }));
  }
}

/** The journal could not write (a full disk, an I/O error): what was being written is not stored. */
export class JournalWriteError extends NotifierError {
  constructor(message: string, cause?: unknown) {
    super('ERR_JOURNAL_WRITE', `journal: ${message}`, { cause });
  }
}

/** The journal exists but cannot be used now (held by another process, not readable or writable). */
export class JournalUnavailableError extends NotifierError {
  constructor(message: string, cause?: unknown) {
    super('ERR_JOURNAL_UNAVAILABLE', message, { cause });
  }
}

/** The integrity check found damage: the file is moved aside and a new journal started. */
export class JournalDamagedError extends NotifierError {
  constructor(message: string) {
    super('ERR_JOURNAL_DAMAGED', message);
  }
}

/** Runs `fn` on a freshly opened database, closing it (and so releasing its lock) if `fn` throws. */
function withDatabase<T>(db: DatabaseSync, fn: (db: DatabaseSync) => T): T {
  try {
    return fn(db);
  } catch (error) {
    db.close();
    throw error;
  }
}

function openDatabase(path: string, busyTimeoutMs: number): DatabaseSync {
  const db = new DatabaseSync(path);
  try {
    // The busy timeout first: every later statement may meet someone else's lock.
    db.exec(`PRAGMA busy_timeout = ${Math.max(0, Math.trunc(busyTimeoutMs))}; PRAGMA locking_mode = EXCLUSIVE; PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;`);
    // Exclusive mode takes its lock on the first write and keeps it until close; take it now.
    db.exec('BEGIN IMMEDIATE; COMMIT;');
    db.exec(SCHEMA);
    const check = db.prepare('PRAGMA quick_check').get() as { quick_check?: string } | undefined;
    if (check?.quick_check !== 'ok') throw new JournalDamagedError(`quick_check: ${check?.quick_check ?? 'no answer'}`);
    return db;
  } catch (error) {
    db.close();
    throw error;
  }
}

/** Whether opening failed because the file is not a readable database (then it is moved aside). */
function unreadable(error: unknown): boolean {
  if (error instanceof JournalDamagedError) return true;
  const code = (error as { errcode?: unknown }).errcode;
  return typeof code === 'number' && [SQLITE_CORRUPT, SQLITE_NOTADB].includes(code & 0xff);
}

/** The error that ends the start when the journal exists but cannot be used now. */
function unavailable(path: string, error: unknown): JournalUnavailableError {
  const code = (error as { errcode?: unknown }).errcode;
  const why = error instanceof Error ? error.message : String(error);
  const locked = typeof code === 'number' && [SQLITE_BUSY, SQLITE_LOCKED].includes(code & 0xff);
  return new JournalUnavailableError(
    locked
      ? `journal ${path} is in use by another process (${why}); is another registry-notifier running with this --queue-dir?`
      : `journal ${path} cannot be opened (${why})`,
    error,
  );
}
