/**
 * The schema of the PostgreSQL backend, as versioned migrations applied in order by `migrate` (migrate.ts). A
 * released migration is never edited: its checksum is recorded when it is applied and checked at every start.
 * Change the schema by appending a migration with the next version.
 */

/** One step of the schema: `sql` runs inside the migration transaction (several statements allowed). */
export interface Migration {
  readonly version: number;
  readonly name: string;
  readonly sql: string;
}

/** Every migration, oldest first; versions are 1, 2, 3… without gaps. */
export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: 'queue, dead letters and recent ids',
    sql: `
CREATE TABLE endpoints (
  name        text PRIMARY KEY,
  next_pos    bigint NOT NULL DEFAULT 1,      -- positions are taken under this row's lock: commit order per endpoint
  owner       text,                            -- replica holding the delivery lease
  epoch       bigint NOT NULL DEFAULT 0,       -- fencing token, +1 on every claim
  lease_until timestamptz
);
CREATE TABLE events (
  seq         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  id          text   NOT NULL,
  json        text   NOT NULL,
  accepted_at bigint NOT NULL                 -- ms since the epoch
);
CREATE TABLE deliveries (
  endpoint text   NOT NULL REFERENCES endpoints (name) ON DELETE CASCADE,
  pos      bigint NOT NULL,
  seq      bigint NOT NULL REFERENCES events (seq),
  PRIMARY KEY (endpoint, pos)
);
CREATE INDEX deliveries_by_seq ON deliveries (seq);
CREATE TABLE dead_letters (
  endpoint text   NOT NULL REFERENCES endpoints (name) ON DELETE CASCADE,
  seq      bigint NOT NULL REFERENCES events (seq),
  reason   text   NOT NULL,
  at       bigint NOT NULL,
  PRIMARY KEY (endpoint, seq)
);
CREATE INDEX dead_letters_by_seq ON dead_letters (seq);
CREATE TABLE recent_ids (
  id text PRIMARY KEY,
  at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX recent_ids_by_at ON recent_ids (at);
`,
  },
];
