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
    name: 'queue, leases, dead letters, recent ids and counters',
    sql: `
-- Replicas alive now: each renews its row with its leases; fair shares are counted from the live ones.
CREATE TABLE replicas (
  id         text PRIMARY KEY,
  seen_until timestamptz NOT NULL
);
-- One row per endpoint: its delivery lease, locked by claims and by the owner's outcomes.
CREATE TABLE endpoints (
  name        text PRIMARY KEY,
  done        bigint NOT NULL DEFAULT 0,   -- deliveries removed (delivered or dead-lettered): pending = next_pos - 1 - done
  owner       text,                        -- the replica holding the delivery lease
  epoch       bigint NOT NULL DEFAULT 0,   -- fencing token, +1 on every claim
  lease_until timestamptz
);
-- Where each endpoint's queue takes its next position; a row of its own, so the ingest locking it never waits for
-- the owner recording outcomes under the lease row, nor the other way round.
CREATE TABLE queues (
  name     text PRIMARY KEY REFERENCES endpoints (name) ON DELETE CASCADE,
  next_pos bigint NOT NULL DEFAULT 1       -- taken under this row's lock, so positions follow commit order
);
-- Every accepted event once, whatever number of endpoints owes it; deleted when none does.
CREATE TABLE events (
  seq         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  id          text   NOT NULL,
  json        text   NOT NULL,
  accepted_at bigint NOT NULL              -- ms since the epoch
);
-- What each endpoint owes, in its order.
CREATE TABLE deliveries (
  endpoint text   NOT NULL REFERENCES endpoints (name) ON DELETE CASCADE,
  pos      bigint NOT NULL,
  seq      bigint NOT NULL,
  PRIMARY KEY (endpoint, pos)
);
CREATE INDEX deliveries_by_seq ON deliveries (seq);
CREATE TABLE dead_letters (
  endpoint text   NOT NULL REFERENCES endpoints (name) ON DELETE CASCADE,
  seq      bigint NOT NULL,
  reason   text   NOT NULL,
  at       bigint NOT NULL,
  PRIMARY KEY (endpoint, seq)
);
CREATE INDEX dead_letters_by_seq ON dead_letters (seq);
-- Ids accepted recently on any replica: a resend reaching another replica is not queued twice.
CREATE TABLE recent_ids (
  id text PRIMARY KEY,
  at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX recent_ids_by_at ON recent_ids (at);
-- Delivery counters summed over every replica (what status and /endpoints show); the owner's word for the
-- failures in a row.
CREATE TABLE endpoint_stats (
  endpoint             text PRIMARY KEY REFERENCES endpoints (name) ON DELETE CASCADE,
  delivered            bigint NOT NULL DEFAULT 0,
  failures             bigint NOT NULL DEFAULT 0,
  errors               bigint NOT NULL DEFAULT 0,
  dead_lettered        bigint NOT NULL DEFAULT 0,
  coalesced            bigint NOT NULL DEFAULT 0,   -- events coalesced by the replicas that accepted them
  responses            jsonb  NOT NULL DEFAULT '{}',   -- status code -> count
  last_success         bigint,                         -- ms since the epoch
  last_failure         bigint,
  last_error           text,
  consecutive_failures integer NOT NULL DEFAULT 0
);

-- One ingest request, all or nothing: drops ids seen before (returned), stores each other event once, takes
-- positions for each endpoint under its row lock (rows locked in name order: no deadlock between requests),
-- and wakes the owners. p_endpoints[k] owes event p_events[k] (1-based), in order.
CREATE FUNCTION rn_accept(p_ids text[], p_jsons text[], p_at bigint[], p_endpoints text[], p_events int[])
RETURNS text[] LANGUAGE plpgsql AS $fn$
DECLARE
  dup   text[];
  seqs  bigint[] := '{}';
  s     bigint;
  k     int;
  e     text;
  n     bigint;
  first bigint;
BEGIN
  WITH mine AS (
    INSERT INTO recent_ids (id) SELECT DISTINCT i FROM unnest(p_ids) AS t(i) ON CONFLICT DO NOTHING RETURNING id
  )
  SELECT coalesce(array_agg(DISTINCT i), '{}') INTO dup FROM unnest(p_ids) AS t(i) WHERE i NOT IN (SELECT id FROM mine);
  FOR k IN 1 .. coalesce(array_length(p_ids, 1), 0) LOOP
    IF NOT (p_ids[k] = ANY (dup)) THEN
      INSERT INTO events (id, json, accepted_at) VALUES (p_ids[k], p_jsons[k], p_at[k]) RETURNING seq INTO s;
      seqs[k] := s;
    END IF;
  END LOOP;
  INSERT INTO endpoints (name) SELECT DISTINCT x FROM unnest(p_endpoints) AS t(x) ON CONFLICT DO NOTHING;
  INSERT INTO queues (name) SELECT DISTINCT x FROM unnest(p_endpoints) AS t(x) ON CONFLICT DO NOTHING;
  PERFORM 1 FROM queues WHERE name = ANY (p_endpoints) ORDER BY name FOR UPDATE;
  FOR e IN SELECT DISTINCT x FROM unnest(p_endpoints) AS t(x) ORDER BY x LOOP
    SELECT count(*) INTO n FROM unnest(p_endpoints, p_events) AS t(x, ev) WHERE x = e AND seqs[ev] IS NOT NULL;
    CONTINUE WHEN n = 0;
    UPDATE queues SET next_pos = next_pos + n WHERE name = e RETURNING next_pos - n INTO first;
    INSERT INTO deliveries (endpoint, pos, seq)
      SELECT e, first + row_number() OVER (ORDER BY o) - 1, seqs[ev]
      FROM unnest(p_endpoints, p_events) WITH ORDINALITY AS t(x, ev, o) WHERE x = e AND seqs[ev] IS NOT NULL;
    PERFORM pg_notify('registry_notifier_work', e);
  END LOOP;
  RETURN dup;
END
$fn$;

-- The fence: whether p_owner still holds the endpoint's lease at epoch p_epoch. A lease that ran out but was not
-- claimed since (the owner's round came late) still counts: every claim bumps the epoch, so nobody else sent
-- anything meanwhile and the owner's outcome is true. The row stays share-locked until the caller's transaction
-- ends, so a claim cannot slip in between this check and what the caller writes.
CREATE FUNCTION rn_holds(p_endpoint text, p_owner text, p_epoch bigint) RETURNS boolean LANGUAGE sql AS $fn$
  SELECT EXISTS (
    SELECT 1 FROM endpoints WHERE name = p_endpoint AND owner = p_owner AND epoch = p_epoch FOR SHARE
  )
$fn$;

-- Deletes the events no endpoint owes any more among p_seqs (a race between two acknowledgements may leave one;
-- rn_sweep collects those).
CREATE FUNCTION rn_collect(p_seqs bigint[]) RETURNS void LANGUAGE sql AS $fn$
  DELETE FROM events e WHERE e.seq = ANY (p_seqs)
    AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.seq = e.seq)
    AND NOT EXISTS (SELECT 1 FROM dead_letters x WHERE x.seq = e.seq)
$fn$;

-- Delivered: only the lease holder at p_epoch may say so (false otherwise: nothing is written).
CREATE FUNCTION rn_ack(p_endpoint text, p_owner text, p_epoch bigint, p_positions bigint[]) RETURNS boolean LANGUAGE plpgsql AS $fn$
DECLARE
  gone bigint[];
BEGIN
  IF NOT rn_holds(p_endpoint, p_owner, p_epoch) THEN RETURN false; END IF;
  WITH d AS (DELETE FROM deliveries WHERE endpoint = p_endpoint AND pos = ANY (p_positions) RETURNING seq)
  SELECT coalesce(array_agg(seq), '{}') INTO gone FROM d;
  UPDATE endpoints SET done = done + coalesce(array_length(gone, 1), 0) WHERE name = p_endpoint;
  PERFORM rn_collect(gone);
  RETURN true;
END
$fn$;

-- Out of retry budget: moved to the dead letters, fenced like rn_ack.
CREATE FUNCTION rn_dead_letter(p_endpoint text, p_owner text, p_epoch bigint, p_positions bigint[], p_reason text, p_at bigint)
RETURNS boolean LANGUAGE plpgsql AS $fn$
DECLARE
  moved int;
BEGIN
  IF NOT rn_holds(p_endpoint, p_owner, p_epoch) THEN RETURN false; END IF;
  WITH d AS (DELETE FROM deliveries WHERE endpoint = p_endpoint AND pos = ANY (p_positions) RETURNING seq),
       x AS (INSERT INTO dead_letters (endpoint, seq, reason, at) SELECT p_endpoint, seq, p_reason, p_at FROM d ON CONFLICT DO NOTHING RETURNING 1)
  SELECT count(*) INTO moved FROM d;
  UPDATE endpoints SET done = done + moved WHERE name = p_endpoint;
  RETURN true;
END
$fn$;

-- Replay: every dead letter back at the tail of the endpoint's queue, oldest first; any replica may ask.
CREATE FUNCTION rn_replay(p_endpoint text) RETURNS int LANGUAGE plpgsql AS $fn$
DECLARE
  n     int;
  first bigint;
BEGIN
  INSERT INTO queues (name) SELECT p_endpoint WHERE EXISTS (SELECT 1 FROM endpoints WHERE name = p_endpoint) ON CONFLICT DO NOTHING;
  PERFORM 1 FROM queues WHERE name = p_endpoint FOR UPDATE;
  SELECT count(*) INTO n FROM dead_letters WHERE endpoint = p_endpoint;
  IF n = 0 THEN RETURN 0; END IF;
  UPDATE queues SET next_pos = next_pos + n WHERE name = p_endpoint RETURNING next_pos - n INTO first;
  INSERT INTO deliveries (endpoint, pos, seq)
    SELECT p_endpoint, first + row_number() OVER (ORDER BY seq) - 1, seq FROM dead_letters WHERE endpoint = p_endpoint;
  DELETE FROM dead_letters WHERE endpoint = p_endpoint;
  PERFORM pg_notify('registry_notifier_work', p_endpoint);
  RETURN n;
END
$fn$;

-- One lease round of one replica: says it is alive, renews what it holds, releases beyond its fair share (the
-- ones it likes least, so a joining replica gets work within a round or two) and claims unowned or expired endpoints up to it, among the ones it serves (p_names).
-- Returns what it holds afterwards, with each lease's epoch.
CREATE FUNCTION rn_leases(p_replica text, p_names text[], p_lease_ms bigint)
RETURNS TABLE (endpoint text, epoch bigint) LANGUAGE plpgsql AS $fn$
DECLARE
  lease interval := make_interval(secs => p_lease_ms / 1000.0);
  live  bigint;
  share bigint;
  held  bigint;
BEGIN
  INSERT INTO replicas (id, seen_until) VALUES (p_replica, now() + lease)
    ON CONFLICT (id) DO UPDATE SET seen_until = EXCLUDED.seen_until;
  INSERT INTO endpoints (name) SELECT DISTINCT x FROM unnest(p_names) AS t(x) ON CONFLICT DO NOTHING;
  UPDATE endpoints SET lease_until = now() + lease WHERE owner = p_replica AND name = ANY (p_names);
  UPDATE endpoints SET owner = NULL, lease_until = NULL WHERE owner = p_replica AND NOT (name = ANY (p_names));
  SELECT count(*) INTO live FROM replicas WHERE seen_until > now();
  share := ceil(coalesce(array_length(p_names, 1), 0)::numeric / greatest(live, 1));
  SELECT count(*) INTO held FROM endpoints WHERE owner = p_replica;
  IF held > share THEN
    UPDATE endpoints SET owner = NULL, lease_until = NULL
      WHERE name IN (SELECT name FROM endpoints WHERE owner = p_replica ORDER BY md5(name || p_replica) DESC LIMIT held - share);
  ELSIF held < share THEN
    UPDATE endpoints SET owner = p_replica, epoch = endpoints.epoch + 1, lease_until = now() + lease
      WHERE name IN (
        SELECT name FROM endpoints
        WHERE name = ANY (p_names) AND (owner IS NULL OR lease_until IS NULL OR lease_until < now())
        ORDER BY md5(name || p_replica) LIMIT share - held FOR UPDATE SKIP LOCKED
      );
  END IF;
  RETURN QUERY SELECT e.name, e.epoch FROM endpoints e WHERE e.owner = p_replica;
END
$fn$;

-- Adds one replica's counters since its last report (a JSON array of {endpoint, delivered, failures, errors,
-- deadLettered, coalesced, responses: {code: n}, lastSuccess, lastFailure, lastError, consecutive?}); the latest times win,
-- and the failures in a row are the owner's (absent from others' reports).
CREATE FUNCTION rn_add_stats(p_reports jsonb) RETURNS void LANGUAGE plpgsql AS $fn$
DECLARE
  r jsonb;
BEGIN
  FOR r IN SELECT * FROM jsonb_array_elements(p_reports) LOOP
    INSERT INTO endpoint_stats (endpoint) SELECT r->>'endpoint' WHERE EXISTS (SELECT 1 FROM endpoints WHERE name = r->>'endpoint')
      ON CONFLICT DO NOTHING;
    UPDATE endpoint_stats s SET
      delivered = s.delivered + (r->>'delivered')::bigint,
      failures = s.failures + (r->>'failures')::bigint,
      errors = s.errors + (r->>'errors')::bigint,
      dead_lettered = s.dead_lettered + (r->>'deadLettered')::bigint,
      coalesced = s.coalesced + (r->>'coalesced')::bigint,
      responses = (SELECT coalesce(jsonb_object_agg(k, v), '{}') FROM (
        SELECT k, sum(v::bigint) AS v FROM (
          SELECT key AS k, value AS v FROM jsonb_each_text(s.responses)
          UNION ALL SELECT key, value FROM jsonb_each_text(r->'responses')
        ) u GROUP BY k) t),
      last_success = greatest(s.last_success, (r->>'lastSuccess')::bigint),
      last_error = CASE WHEN (r->>'lastFailure')::bigint >= coalesce(s.last_failure, 0) THEN coalesce(r->>'lastError', s.last_error) ELSE s.last_error END,
      last_failure = greatest(s.last_failure, (r->>'lastFailure')::bigint),
      consecutive_failures = coalesce((r->>'consecutive')::int, s.consecutive_failures)
    WHERE s.endpoint = r->>'endpoint';
  END LOOP;
END
$fn$;

-- Housekeeping, by any replica now and then: forgets replicas gone for long, ids older than p_keep_ids_ms, and
-- events nothing owes (left by a race between two acknowledgements).
CREATE FUNCTION rn_sweep(p_keep_ids_ms bigint) RETURNS void LANGUAGE sql AS $fn$
  DELETE FROM replicas WHERE seen_until < now() - interval '1 hour';
  DELETE FROM recent_ids WHERE at < now() - make_interval(secs => p_keep_ids_ms / 1000.0);
  DELETE FROM events e WHERE NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.seq = e.seq)
    AND NOT EXISTS (SELECT 1 FROM dead_letters x WHERE x.seq = e.seq);
$fn$;
`,
  },
  {
    version: 2,
    name: 'outcomes of many endpoints in one transaction',
    sql: `
-- Outcomes of many endpoints in one transaction, in order: the k-th is endpoint p_endpoints[k] under epoch
-- p_epochs[k], of the next p_counts[k] positions of p_positions; delivered when p_reasons[k] is null, else moved to
-- the dead letters with that reason at p_at[k]. Each is fenced like rn_ack (false: not written, the lease is
-- another's). The endpoints' rows are locked in name order first, as rn_leases locks them: no deadlock.
CREATE FUNCTION rn_record(p_owner text, p_endpoints text[], p_epochs bigint[], p_counts int[], p_positions bigint[], p_reasons text[], p_at bigint[])
RETURNS boolean[] LANGUAGE plpgsql AS $fn$
DECLARE
  ok   boolean[] := '{}';
  gone bigint[] := '{}';
  seqs bigint[];
  o    int := 0;
  k    int;
BEGIN
  PERFORM 1 FROM endpoints WHERE name = ANY (p_endpoints) ORDER BY name FOR NO KEY UPDATE;
  FOR k IN 1 .. coalesce(array_length(p_endpoints, 1), 0) LOOP
    ok[k] := EXISTS (SELECT 1 FROM endpoints WHERE name = p_endpoints[k] AND owner = p_owner AND epoch = p_epochs[k]);
    IF ok[k] THEN
      IF p_reasons[k] IS NULL THEN
        WITH d AS (DELETE FROM deliveries WHERE endpoint = p_endpoints[k] AND pos = ANY (p_positions[o + 1 : o + p_counts[k]]) RETURNING seq)
        SELECT coalesce(array_agg(seq), '{}') INTO seqs FROM d;
        gone := gone || seqs;
      ELSE
        WITH d AS (DELETE FROM deliveries WHERE endpoint = p_endpoints[k] AND pos = ANY (p_positions[o + 1 : o + p_counts[k]]) RETURNING seq),
             x AS (INSERT INTO dead_letters (endpoint, seq, reason, at) SELECT p_endpoints[k], seq, p_reasons[k], p_at[k] FROM d ON CONFLICT DO NOTHING RETURNING 1)
        SELECT coalesce(array_agg(seq), '{}') INTO seqs FROM d;
      END IF;
      UPDATE endpoints SET done = done + coalesce(array_length(seqs, 1), 0) WHERE name = p_endpoints[k];
    END IF;
    o := o + p_counts[k];
  END LOOP;
  IF coalesce(array_length(gone, 1), 0) > 0 THEN PERFORM rn_collect(gone); END IF;
  RETURN ok;
END
$fn$;

-- rn_leases as in migration 1, but first locking the rows this replica owns in name order, the order rn_record
-- locks them in (renewing them in whatever order the scan gives could deadlock with an rn_record of many endpoints).
CREATE OR REPLACE FUNCTION rn_leases(p_replica text, p_names text[], p_lease_ms bigint)
RETURNS TABLE (endpoint text, epoch bigint) LANGUAGE plpgsql AS $fn$
DECLARE
  lease interval := make_interval(secs => p_lease_ms / 1000.0);
  live  bigint;
  share bigint;
  held  bigint;
BEGIN
  INSERT INTO replicas (id, seen_until) VALUES (p_replica, now() + lease)
    ON CONFLICT (id) DO UPDATE SET seen_until = EXCLUDED.seen_until;
  INSERT INTO endpoints (name) SELECT DISTINCT x FROM unnest(p_names) AS t(x) ON CONFLICT DO NOTHING;
  PERFORM 1 FROM endpoints WHERE owner = p_replica ORDER BY name FOR NO KEY UPDATE;
  UPDATE endpoints SET lease_until = now() + lease WHERE owner = p_replica AND name = ANY (p_names);
  UPDATE endpoints SET owner = NULL, lease_until = NULL WHERE owner = p_replica AND NOT (name = ANY (p_names));
  SELECT count(*) INTO live FROM replicas WHERE seen_until > now();
  share := ceil(coalesce(array_length(p_names, 1), 0)::numeric / greatest(live, 1));
  SELECT count(*) INTO held FROM endpoints WHERE owner = p_replica;
  IF held > share THEN
    UPDATE endpoints SET owner = NULL, lease_until = NULL
      WHERE name IN (SELECT name FROM endpoints WHERE owner = p_replica ORDER BY md5(name || p_replica) DESC LIMIT held - share);
  ELSIF held < share THEN
    UPDATE endpoints SET owner = p_replica, epoch = endpoints.epoch + 1, lease_until = now() + lease
      WHERE name IN (
        SELECT name FROM endpoints
        WHERE name = ANY (p_names) AND (owner IS NULL OR lease_until IS NULL OR lease_until < now())
        ORDER BY md5(name || p_replica) LIMIT share - held FOR UPDATE SKIP LOCKED
      );
  END IF;
  RETURN QUERY SELECT e.name, e.epoch FROM endpoints e WHERE e.owner = p_replica;
END
$fn$;
`,
  },
  {
    version: 3,
    name: 'ingest with statements cheap to start, outcomes planned once',
    sql: `
-- rn_accept as in migration 1, same arguments and answer, rewritten for cost: each statement of
-- a PL/pgSQL function is started anew at every call, and migration 1's loops ran four per endpoint (one event to
-- 64 endpoints: 11 ms; now 3 ms). One event, a registry's usual request, goes through plain single-row
-- statements (half the time of the general path's joins and aggregates); several events (requests committed
-- together) through set-wise ones. Queue rows are locked in name order as before: no deadlock between requests.
CREATE OR REPLACE FUNCTION rn_accept(p_ids text[], p_jsons text[], p_at bigint[], p_endpoints text[], p_events int[])
RETURNS text[] LANGUAGE plpgsql AS $fn$
DECLARE
  dup     text[];
  seqs    bigint[];
  names   text[];
  present bigint;
  s       bigint;
  p       bigint;
BEGIN
  IF cardinality(p_ids) = 1 THEN
    INSERT INTO recent_ids (id) VALUES (p_ids[1]) ON CONFLICT DO NOTHING;
    IF NOT FOUND THEN RETURN p_ids; END IF;
    INSERT INTO events (id, json, accepted_at) VALUES (p_ids[1], p_jsons[1], p_at[1]) RETURNING seq INTO s;
    IF cardinality(p_endpoints) = 0 THEN RETURN '{}'; END IF;
    IF cardinality(p_endpoints) = 1 THEN
      UPDATE queues SET next_pos = next_pos + 1 WHERE name = p_endpoints[1] RETURNING next_pos - 1 INTO p;
      IF NOT FOUND THEN
        INSERT INTO endpoints (name) VALUES (p_endpoints[1]) ON CONFLICT DO NOTHING;
        INSERT INTO queues (name) VALUES (p_endpoints[1]) ON CONFLICT DO NOTHING;
        UPDATE queues SET next_pos = next_pos + 1 WHERE name = p_endpoints[1] RETURNING next_pos - 1 INTO p;
      END IF;
      INSERT INTO deliveries (endpoint, pos, seq) VALUES (p_endpoints[1], p, s);
      PERFORM pg_notify('registry_notifier_work', p_endpoints[1]);
      RETURN '{}';
    END IF;
    -- One event owed by several endpoints (each once): one position each.
    IF (SELECT count(*) FROM queues WHERE name = ANY (p_endpoints)) < cardinality(p_endpoints) THEN
      INSERT INTO endpoints (name) SELECT unnest(p_endpoints) ON CONFLICT DO NOTHING;
      INSERT INTO queues (name) SELECT unnest(p_endpoints) ON CONFLICT DO NOTHING;
    END IF;
    PERFORM 1 FROM queues WHERE name = ANY (p_endpoints) ORDER BY name FOR UPDATE;
    WITH taken AS (UPDATE queues SET next_pos = next_pos + 1 WHERE name = ANY (p_endpoints) RETURNING name, next_pos - 1 AS pos)
    INSERT INTO deliveries (endpoint, pos, seq) SELECT name, pos, s FROM taken;
    PERFORM pg_notify('registry_notifier_work', x) FROM unnest(p_endpoints) AS t(x);
    RETURN '{}';
  END IF;
  -- Several events: seqs[k] is event k's seq, null when its id was seen before (then it is in dup).
  WITH mine AS (
    INSERT INTO recent_ids (id) SELECT DISTINCT i FROM unnest(p_ids) AS t(i) ON CONFLICT DO NOTHING RETURNING id
  ), stored AS ( -- one row per id, should an id come twice
    INSERT INTO events (id, json, accepted_at)
    SELECT DISTINCT ON (t.i) t.i, t.j, t.a FROM unnest(p_ids, p_jsons, p_at) WITH ORDINALITY AS t(i, j, a, k)
    WHERE t.i IN (SELECT id FROM mine) ORDER BY t.i, t.k
    RETURNING id, seq
  )
  SELECT array_agg(stored.seq ORDER BY t.k), coalesce(array_agg(DISTINCT t.i) FILTER (WHERE stored.seq IS NULL), '{}')
  INTO seqs, dup
  FROM unnest(p_ids) WITH ORDINALITY AS t(i, k) LEFT JOIN stored ON stored.id = t.i;
  SELECT o.names, (SELECT count(*) FROM queues WHERE name = ANY (o.names)) INTO names, present
  FROM (SELECT array_agg(DISTINCT x ORDER BY x) AS names FROM unnest(p_endpoints, p_events) AS t(x, ev) WHERE seqs[ev] IS NOT NULL) o;
  IF names IS NULL THEN RETURN dup; END IF;
  IF present < cardinality(names) THEN
    INSERT INTO endpoints (name) SELECT unnest(names) ON CONFLICT DO NOTHING;
    INSERT INTO queues (name) SELECT unnest(names) ON CONFLICT DO NOTHING;
  END IF;
  PERFORM 1 FROM queues WHERE name = ANY (names) ORDER BY name FOR UPDATE;
  -- Each endpoint's events take the next positions of its queue, in the order of p_endpoints.
  WITH owed AS (
    SELECT x, count(*) AS n FROM unnest(p_endpoints, p_events) AS t(x, ev) WHERE seqs[ev] IS NOT NULL GROUP BY x
  ), taken AS (
    -- name = ANY (names) lets the planner find the rows by key, never by reading every endpoint's queue row.
    UPDATE queues q SET next_pos = q.next_pos + owed.n FROM owed WHERE q.name = owed.x AND q.name = ANY (names)
    RETURNING q.name, q.next_pos - owed.n AS first
  )
  INSERT INTO deliveries (endpoint, pos, seq)
  SELECT t.x, taken.first + row_number() OVER (PARTITION BY t.x ORDER BY t.o) - 1, seqs[t.ev]
  FROM unnest(p_endpoints, p_events) WITH ORDINALITY AS t(x, ev, o) JOIN taken ON taken.name = t.x
  WHERE seqs[t.ev] IS NOT NULL;
  PERFORM pg_notify('registry_notifier_work', x) FROM unnest(names) AS t(x);
  RETURN dup;
END
$fn$;
-- rn_record as in migration 2, same arguments and answer, planned once per connection instead of at every call
-- (migration 2's statements took custom plans, and planning was half of a call's time). A generic plan must still
-- find an outcome's deliveries by the whole key, whatever the statistics say of a queue's length: the DELETE bounds
-- the positions by the outcome's first and last (each outcome's positions ascending, as the writer sends them).
CREATE OR REPLACE FUNCTION rn_record(p_owner text, p_endpoints text[], p_epochs bigint[], p_counts int[], p_positions bigint[], p_reasons text[], p_at bigint[])
RETURNS boolean[] LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan AS $fn$
DECLARE
  ok   boolean[] := '{}';
  gone bigint[] := '{}';
  seqs bigint[];
  o    int := 0;
  k    int;
  lo   bigint;
  hi   bigint;
BEGIN
  PERFORM 1 FROM endpoints WHERE name = ANY (p_endpoints) ORDER BY name FOR NO KEY UPDATE;
  FOR k IN 1 .. coalesce(array_length(p_endpoints, 1), 0) LOOP
    ok[k] := EXISTS (SELECT 1 FROM endpoints WHERE name = p_endpoints[k] AND owner = p_owner AND epoch = p_epochs[k]);
    IF ok[k] AND p_counts[k] > 0 THEN
      lo := p_positions[o + 1];
      hi := p_positions[o + p_counts[k]];
      IF p_reasons[k] IS NULL THEN
        WITH d AS (
          DELETE FROM deliveries WHERE endpoint = p_endpoints[k] AND pos BETWEEN lo AND hi AND pos = ANY (p_positions[o + 1 : o + p_counts[k]])
          RETURNING seq
        )
        SELECT coalesce(array_agg(seq), '{}') INTO seqs FROM d;
        gone := gone || seqs;
      ELSE
        WITH d AS (
          DELETE FROM deliveries WHERE endpoint = p_endpoints[k] AND pos BETWEEN lo AND hi AND pos = ANY (p_positions[o + 1 : o + p_counts[k]])
          RETURNING seq
        ), x AS (
          INSERT INTO dead_letters (endpoint, seq, reason, at) SELECT p_endpoints[k], seq, p_reasons[k], p_at[k] FROM d ON CONFLICT DO NOTHING RETURNING 1
        )
        SELECT coalesce(array_agg(seq), '{}') INTO seqs FROM d;
      END IF;
      UPDATE endpoints SET done = done + cardinality(seqs) WHERE name = p_endpoints[k];
    END IF;
    o := o + p_counts[k];
  END LOOP;
  IF cardinality(gone) > 0 THEN PERFORM rn_collect(gone); END IF;
  RETURN ok;
END
$fn$;
-- rn_collect as in migration 1, in PL/pgSQL: a SQL function's statement is planned at every call (half a
-- millisecond here, once per outcome-writer call); this one keeps its plan.
CREATE OR REPLACE FUNCTION rn_collect(p_seqs bigint[]) RETURNS void LANGUAGE plpgsql AS $fn$
BEGIN
  DELETE FROM events e WHERE e.seq = ANY (p_seqs)
    AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.seq = e.seq)
    AND NOT EXISTS (SELECT 1 FROM dead_letters x WHERE x.seq = e.seq);
END
$fn$;
`,
  },
  {
    version: 4,
    name: 'one notification for the endpoints of a transaction',
    sql: `
-- Wakes the owners of the endpoints p_names with as few notifications as fit: their names joined by spaces (a
-- name has none), cut where a payload would pass 7,000 bytes (PostgreSQL takes at most 8,000). Every replica
-- LISTENs and reads every notification, so migration 3's one per endpoint had each of N replicas read N for each
-- delivery it made, and an event for 64 endpoints cost every replica 64 (a few µs of CPU each in a Node.js client).
CREATE FUNCTION rn_wake(p_names text[]) RETURNS void LANGUAGE plpgsql AS $fn$
BEGIN
  IF cardinality(p_names) = 1 THEN
    PERFORM pg_notify('registry_notifier_work', p_names[1]);
    RETURN;
  END IF;
  PERFORM pg_notify('registry_notifier_work', string_agg(x, ' ' ORDER BY k))
  FROM (SELECT x, k, sum(octet_length(x) + 1) OVER (ORDER BY k) / 7000 AS part FROM unnest(p_names) WITH ORDINALITY AS t(x, k)) s
  GROUP BY part;
END
$fn$;
-- rn_accept as in migration 3, same arguments and answer; an event for several endpoints, or requests committed
-- together, wake the owners through rn_wake.
CREATE OR REPLACE FUNCTION rn_accept(p_ids text[], p_jsons text[], p_at bigint[], p_endpoints text[], p_events int[])
RETURNS text[] LANGUAGE plpgsql AS $fn$
DECLARE
  dup     text[];
  seqs    bigint[];
  names   text[];
  present bigint;
  s       bigint;
  p       bigint;
BEGIN
  IF cardinality(p_ids) = 1 THEN
    INSERT INTO recent_ids (id) VALUES (p_ids[1]) ON CONFLICT DO NOTHING;
    IF NOT FOUND THEN RETURN p_ids; END IF;
    INSERT INTO events (id, json, accepted_at) VALUES (p_ids[1], p_jsons[1], p_at[1]) RETURNING seq INTO s;
    IF cardinality(p_endpoints) = 0 THEN RETURN '{}'; END IF;
    IF cardinality(p_endpoints) = 1 THEN
      UPDATE queues SET next_pos = next_pos + 1 WHERE name = p_endpoints[1] RETURNING next_pos - 1 INTO p;
      IF NOT FOUND THEN
        INSERT INTO endpoints (name) VALUES (p_endpoints[1]) ON CONFLICT DO NOTHING;
        INSERT INTO queues (name) VALUES (p_endpoints[1]) ON CONFLICT DO NOTHING;
        UPDATE queues SET next_pos = next_pos + 1 WHERE name = p_endpoints[1] RETURNING next_pos - 1 INTO p;
      END IF;
      INSERT INTO deliveries (endpoint, pos, seq) VALUES (p_endpoints[1], p, s);
      PERFORM pg_notify('registry_notifier_work', p_endpoints[1]);
      RETURN '{}';
    END IF;
    -- One event owed by several endpoints (each once): one position each.
    IF (SELECT count(*) FROM queues WHERE name = ANY (p_endpoints)) < cardinality(p_endpoints) THEN
      INSERT INTO endpoints (name) SELECT unnest(p_endpoints) ON CONFLICT DO NOTHING;
      INSERT INTO queues (name) SELECT unnest(p_endpoints) ON CONFLICT DO NOTHING;
    END IF;
    PERFORM 1 FROM queues WHERE name = ANY (p_endpoints) ORDER BY name FOR UPDATE;
    WITH taken AS (UPDATE queues SET next_pos = next_pos + 1 WHERE name = ANY (p_endpoints) RETURNING name, next_pos - 1 AS pos)
    INSERT INTO deliveries (endpoint, pos, seq) SELECT name, pos, s FROM taken;
    PERFORM rn_wake(p_endpoints);
    RETURN '{}';
  END IF;
  -- Several events: seqs[k] is event k's seq, null when its id was seen before (then it is in dup).
  WITH mine AS (
    INSERT INTO recent_ids (id) SELECT DISTINCT i FROM unnest(p_ids) AS t(i) ON CONFLICT DO NOTHING RETURNING id
  ), stored AS ( -- one row per id, should an id come twice
    INSERT INTO events (id, json, accepted_at)
    SELECT DISTINCT ON (t.i) t.i, t.j, t.a FROM unnest(p_ids, p_jsons, p_at) WITH ORDINALITY AS t(i, j, a, k)
    WHERE t.i IN (SELECT id FROM mine) ORDER BY t.i, t.k
    RETURNING id, seq
  )
  SELECT array_agg(stored.seq ORDER BY t.k), coalesce(array_agg(DISTINCT t.i) FILTER (WHERE stored.seq IS NULL), '{}')
  INTO seqs, dup
  FROM unnest(p_ids) WITH ORDINALITY AS t(i, k) LEFT JOIN stored ON stored.id = t.i;
  SELECT o.names, (SELECT count(*) FROM queues WHERE name = ANY (o.names)) INTO names, present
  FROM (SELECT array_agg(DISTINCT x ORDER BY x) AS names FROM unnest(p_endpoints, p_events) AS t(x, ev) WHERE seqs[ev] IS NOT NULL) o;
  IF names IS NULL THEN RETURN dup; END IF;
  IF present < cardinality(names) THEN
    INSERT INTO endpoints (name) SELECT unnest(names) ON CONFLICT DO NOTHING;
    INSERT INTO queues (name) SELECT unnest(names) ON CONFLICT DO NOTHING;
  END IF;
  PERFORM 1 FROM queues WHERE name = ANY (names) ORDER BY name FOR UPDATE;
  -- Each endpoint's events take the next positions of its queue, in the order of p_endpoints.
  WITH owed AS (
    SELECT x, count(*) AS n FROM unnest(p_endpoints, p_events) AS t(x, ev) WHERE seqs[ev] IS NOT NULL GROUP BY x
  ), taken AS (
    -- name = ANY (names) lets the planner find the rows by key, never by reading every endpoint's queue row.
    UPDATE queues q SET next_pos = q.next_pos + owed.n FROM owed WHERE q.name = owed.x AND q.name = ANY (names)
    RETURNING q.name, q.next_pos - owed.n AS first
  )
  INSERT INTO deliveries (endpoint, pos, seq)
  SELECT t.x, taken.first + row_number() OVER (PARTITION BY t.x ORDER BY t.o) - 1, seqs[t.ev]
  FROM unnest(p_endpoints, p_events) WITH ORDINALITY AS t(x, ev, o) JOIN taken ON taken.name = t.x
  WHERE seqs[t.ev] IS NOT NULL;
  PERFORM rn_wake(names);
  RETURN dup;
END
$fn$;
`,
  },
  {
    version: 5,
    name: 'a replica over its share hands endpoints over once idle',
    sql: `
-- rn_leases as in migration 2, except that a replica over its fair share no longer releases the extra endpoints
-- itself: it keeps (and renews) them, and they come back marked surplus (the same ones migration 2 released: the
-- ones it likes least). The replica stops starting attempts on them and hands each over with rn_release once its
-- attempt in flight has ended and its outcomes are written: released at once, another replica could claim the
-- endpoint and send while that attempt still ran (two requests in flight for one endpoint, on every scale-up).
-- The answer gains a column, so the function is made anew; a replica of an earlier version reads the first two.
DROP FUNCTION rn_leases(text, text[], bigint);
CREATE FUNCTION rn_leases(p_replica text, p_names text[], p_lease_ms bigint)
RETURNS TABLE (endpoint text, epoch bigint, surplus boolean) LANGUAGE plpgsql AS $fn$
DECLARE
  lease interval := make_interval(secs => p_lease_ms / 1000.0);
  live  bigint;
  share bigint;
  held  bigint;
BEGIN
  INSERT INTO replicas (id, seen_until) VALUES (p_replica, now() + lease)
    ON CONFLICT (id) DO UPDATE SET seen_until = EXCLUDED.seen_until;
  INSERT INTO endpoints (name) SELECT DISTINCT x FROM unnest(p_names) AS t(x) ON CONFLICT DO NOTHING;
  PERFORM 1 FROM endpoints WHERE owner = p_replica ORDER BY name FOR NO KEY UPDATE;
  UPDATE endpoints SET lease_until = now() + lease WHERE owner = p_replica AND name = ANY (p_names);
  UPDATE endpoints SET owner = NULL, lease_until = NULL WHERE owner = p_replica AND NOT (name = ANY (p_names));
  SELECT count(*) INTO live FROM replicas WHERE seen_until > now();
  share := ceil(coalesce(array_length(p_names, 1), 0)::numeric / greatest(live, 1));
  SELECT count(*) INTO held FROM endpoints WHERE owner = p_replica;
  IF held < share THEN
    UPDATE endpoints SET owner = p_replica, epoch = endpoints.epoch + 1, lease_until = now() + lease
      WHERE name IN (
        SELECT name FROM endpoints
        WHERE name = ANY (p_names) AND (owner IS NULL OR lease_until IS NULL OR lease_until < now())
        ORDER BY md5(name || p_replica) LIMIT share - held FOR UPDATE SKIP LOCKED
      );
  END IF;
  RETURN QUERY
    SELECT e.name, e.epoch, e.name IN (
      SELECT x.name FROM endpoints x WHERE x.owner = p_replica ORDER BY md5(x.name || p_replica) DESC LIMIT greatest(held - share, 0)
    )
    FROM endpoints e WHERE e.owner = p_replica;
END
$fn$;

-- Hands an endpoint over: releases p_replica's lease of epoch p_epoch (false when it is not held so any more) and
-- tells the other replicas, which claim it at once rather than at their next round.
CREATE FUNCTION rn_release(p_replica text, p_name text, p_epoch bigint) RETURNS boolean LANGUAGE plpgsql AS $fn$
BEGIN
  UPDATE endpoints SET owner = NULL, lease_until = NULL WHERE name = p_name AND owner = p_replica AND epoch = p_epoch;
  IF NOT FOUND THEN RETURN false; END IF;
  PERFORM pg_notify('registry_notifier_released', p_replica);
  RETURN true;
END
$fn$;
`,
  },
  {
    version: 6,
    name: 'dead letters bounded per endpoint',
    sql: `
-- Each endpoint keeps its newest p_keep dead letters (the journal keeps 100,000): an endpoint that refuses every
-- event, with a retry budget, grew its dead letters (and the events they hold) without end. Deletes at most
-- p_batch of the oldest beyond the bound per call, so a call stays well inside the statement timeout whatever has
-- piled up, and forgets their events; returns how many it deleted (the caller calls again while that is p_batch).
-- Endpoints over the bound are found through the primary key's index.
CREATE FUNCTION rn_trim_dead_letters(p_keep int, p_batch int) RETURNS int LANGUAGE plpgsql AS $fn$
DECLARE
  over  text;
  seqs  bigint[];
  total int := 0;
BEGIN
  FOR over IN SELECT endpoint FROM dead_letters GROUP BY endpoint HAVING count(*) > p_keep LOOP
    EXIT WHEN total >= p_batch;
    WITH d AS (
      DELETE FROM dead_letters WHERE endpoint = over AND seq IN (
        SELECT seq FROM dead_letters WHERE endpoint = over
          AND seq < (SELECT seq FROM dead_letters WHERE endpoint = over ORDER BY seq DESC OFFSET p_keep - 1 LIMIT 1)
        ORDER BY seq LIMIT p_batch - total)
      RETURNING seq
    )
    SELECT coalesce(array_agg(seq), '{}') INTO seqs FROM d;
    total := total + cardinality(seqs);
    IF cardinality(seqs) > 0 THEN PERFORM rn_collect(seqs); END IF;
  END LOOP;
  RETURN total;
END
$fn$;
`,
  },
];
