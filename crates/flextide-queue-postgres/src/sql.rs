//! The SQL of every operation, built once per backend with the configured
//! table names. Queue names, receipts and payloads are always bound
//! parameters; only the validated schema prefix is spliced in.

use std::sync::Arc;

/// Milliseconds since the epoch on the database clock. `clock_timestamp()`
/// rather than `now()`: inside a long transaction `now()` stands still.
const NOW_MS: &str = "(extract(epoch FROM clock_timestamp()) * 1000)::bigint";

/// Columns the claim and peek return, in this order.
pub(crate) const MESSAGE_COLUMNS: &str =
    "seq, id, payload, headers, priority, ordering_key, enqueued_at, dedup_id, attempts";

/// Prepared statement texts.
#[derive(Debug)]
pub(crate) struct Statements {
    pub(crate) push: Arc<str>,
    pub(crate) push_batch: Arc<str>,
    pub(crate) push_unique: Arc<str>,
    pub(crate) dedup_sweep: Arc<str>,
    pub(crate) claim: Arc<str>,
    pub(crate) sweep: Arc<str>,
    pub(crate) delete: Arc<str>,
    pub(crate) delete_batch: Arc<str>,
    pub(crate) nack: Arc<str>,
    pub(crate) release: Arc<str>,
    pub(crate) extend: Arc<str>,
    pub(crate) dead_letter: Arc<str>,
    pub(crate) dead_letters: Arc<str>,
    pub(crate) replay: Arc<str>,
    pub(crate) purge_dead_letters: Arc<str>,
    /// The dead-letter table's name, schema prefix included, for the
    /// statement `flextide_queue_sql::delete_dead_letters` builds.
    pub(crate) dead_letter_table: Arc<str>,
    pub(crate) peek: Arc<str>,
    pub(crate) purge: Arc<str>,
    pub(crate) stats: Arc<str>,
    pub(crate) drop_queue: Arc<str>,
}

impl Statements {
    /// Builds the statements for tables under `prefix` (`"schema".` or empty).
    ///
    /// Unless `durable_settle`, the statements that only lease or settle
    /// messages commit asynchronously (`synchronous_commit = off` for that one
    /// statement's transaction, never for the session): a database crash can
    /// forget their last fraction of a second, which only means redeliveries.
    /// Pushes and replays always wait for the WAL flush.
    pub(crate) fn new(prefix: &str, durable_settle: bool) -> Self {
        let m = format!("{prefix}flextide_queue_messages");
        let d = format!("{prefix}flextide_queue_dead_letters");
        let dd = format!("{prefix}flextide_queue_dedup");
        let settle = if durable_settle {
            ""
        } else {
            ", set_config('synchronous_commit', 'off', true) AS sc"
        };
        let build = |sql: &str| -> Arc<str> {
            sql.replace("{m}", &m)
                .replace("{d}", &d)
                .replace("{dd}", &dd)
                .replace("{now}", NOW_MS)
                .replace("{cols}", MESSAGE_COLUMNS)
                .replace("{settle}", settle)
                .replace("{same_queue_3}", "(queue = $3) IS TRUE")
                .replace("{same_queue_m3}", "(m.queue = $3) IS TRUE")
                .replace("{delayed_7}", "CASE WHEN $7 > 0 THEN '' END")
                .replace("{delayed_u}", "CASE WHEN u.delay > 0 THEN '' END")
                .into()
        };
        // Statements that find a row by its seq also check the queue, but
        // written as `(queue = $3) IS TRUE`, which no index can serve: with
        // statistics taken before a queue filled up, the planner would
        // otherwise prefer scanning that queue's rows (estimated at one) on
        // the (queue, priority, seq) index over the primary key lookup.
        // Rows are always reached by `seq = ANY (ARRAY(…))`, a primary key
        // lookup whatever the statistics say: joined to a CTE instead, a
        // table whose statistics were taken empty (estimated at one row)
        // was walked whole on every claim, the primary key index serving
        // as a scan (sequential scans being off in the claim transaction).
        // Rows whose lease ended unsettled and that exhausted their
        // attempts, or were purged while leased: removed, and the former
        // moved to the dead letters. Reads only the head of lease_idx: the
        // expired leases (0004_claim_indexes.sql).
        // $1 queue, $2 max attempts, $3 reason.
        const SWEEP: &str = "
            swept AS (
                DELETE FROM {m} WHERE seq = ANY (ARRAY(
                    SELECT seq FROM {m}
                    WHERE queue = $1 AND token <> '' AND visible_at <= (SELECT now FROM t)
                      AND (attempts >= $2 OR purged)
                    FOR UPDATE SKIP LOCKED))
                RETURNING seq, queue, id, payload, headers, priority, ordering_key, enqueued_at, dedup_id, attempts, purged
            )";
        // What `{gone}` removed, other than purged rows, into the dead
        // letters with the reason $3: the sweep's rows, and in the claim
        // also the rows it found exhausted.
        const GONE_DEAD: &str = "
            swept_dead AS (
                INSERT INTO {d} (queue, id, payload, headers, priority, ordering_key, enqueued_at, dedup_id, attempts, reason, dead_lettered_at)
                SELECT queue, id, payload, headers, priority, ordering_key, enqueued_at, dedup_id, attempts, $3, (SELECT now FROM t)
                FROM {gone} WHERE NOT purged ORDER BY seq
            )";
        let gone_dead = |gone: &str| GONE_DEAD.replace("{gone}", gone);
        // Whether row `c` is the head (lowest seq) of its ordering key, the
        // only row of a key that may be delivered. $1 queue.
        const KEY_HEAD: &str = "(c.ordering_key IS NULL OR NOT EXISTS (
                            SELECT 1 FROM {m} h
                            WHERE h.queue = $1 AND h.ordering_key = c.ordering_key AND h.seq < c.seq
                              AND h.seq NOT IN (SELECT seq FROM swept)))";
        Statements {
            // A message pushed or nacked with a delay gets the token '' (no
            // receipt carries it): it waits in delay_idx by its due time, not
            // at the head of ready_idx, where every claim would read it.
            // $1 queue, $2 id, $3 payload, $4 headers, $5 priority, $6 key, $7 delay ms, $8 channel.
            push: build(
                "WITH t AS (SELECT {now} AS now),
                 ins AS (
                    INSERT INTO {m} (queue, id, payload, headers, priority, ordering_key, enqueued_at, visible_at, token)
                    SELECT $1, $2, $3, $4, $5, $6, t.now, t.now + $7, {delayed_7} FROM t
                 )
                 SELECT pg_notify($8, $1)",
            ),
            // One statement for the whole batch; ORDINALITY keeps push order in seq.
            push_batch: build(
                "WITH t AS (SELECT {now} AS now),
                 ins AS (
                    INSERT INTO {m} (queue, id, payload, headers, priority, ordering_key, enqueued_at, visible_at, token)
                    SELECT $1, u.id, u.payload, u.headers, u.priority, u.okey, t.now, t.now + u.delay, {delayed_u}
                    FROM t, UNNEST($2::text[], $3::bytea[], $4::text[], $5::int2[], $6::text[], $7::int8[])
                         WITH ORDINALITY AS u(id, payload, headers, priority, okey, delay, ord)
                    ORDER BY u.ord
                 )
                 SELECT pg_notify($8, $1)",
            ),
            // A push of messages some of which carry dedup ids (at most one
            // message per dedup id: the caller sorts repeats out). Each
            // dedup id is claimed (see flextide_queue_sql::dedup) in dedup
            // id order, so concurrent batches lock rows in one order; a
            // message is inserted when it has no dedup id or its claim was
            // won (duplicates = 0). ON CONFLICT waits for a concurrent
            // claim of the same id to commit and then updates the row it
            // left, so of many concurrent pushes exactly one wins.
            // $1 queue, $2..$7 as push_batch, $8 channel, $9 dedup ids
            // (NULL: none), $10 window ms. Returns each claim's dedup id,
            // message id and duplicates.
            push_unique: build(
                "WITH t AS (SELECT {now} AS now),
                 u AS (
                    SELECT * FROM UNNEST($2::text[], $3::bytea[], $4::text[], $5::int2[], $6::text[], $7::int8[], $9::text[])
                         WITH ORDINALITY AS u(id, payload, headers, priority, okey, delay, dedup, ord)
                 ),
                 claimed AS (
                    INSERT INTO {dd} AS c (queue, dedup_id, message_id, expires_at, duplicates)
                    SELECT $1, u.dedup, u.id, t.now + $10, 0 FROM u, t
                    WHERE u.dedup IS NOT NULL ORDER BY u.dedup
                    ON CONFLICT (queue, dedup_id) DO UPDATE SET
                        message_id = CASE WHEN c.expires_at <= EXCLUDED.expires_at - $10
                            THEN EXCLUDED.message_id ELSE c.message_id END,
                        duplicates = CASE WHEN c.expires_at <= EXCLUDED.expires_at - $10
                            THEN 0 ELSE c.duplicates + 1 END,
                        expires_at = CASE WHEN c.expires_at <= EXCLUDED.expires_at - $10
                            THEN EXCLUDED.expires_at ELSE c.expires_at END
                    RETURNING dedup_id, message_id, duplicates
                 ),
                 ins AS (
                    INSERT INTO {m} (queue, id, payload, headers, priority, ordering_key, enqueued_at, visible_at, token, dedup_id)
                    SELECT $1, u.id, u.payload, u.headers, u.priority, u.okey, t.now, t.now + u.delay, {delayed_u}, u.dedup
                    FROM u, t
                    WHERE u.dedup IS NULL
                       OR EXISTS (SELECT 1 FROM claimed WHERE claimed.dedup_id = u.dedup AND claimed.duplicates = 0)
                    ORDER BY u.ord
                    RETURNING 1
                 ),
                 woken AS (SELECT pg_notify($8, $1) FROM (SELECT 1 FROM ins LIMIT 1) x)
                 SELECT dedup_id, message_id, duplicates, (SELECT count(*) FROM woken) AS woken
                 FROM claimed",
            ),
            // Deletes up to $1 expired dedup rows of any queue.
            dedup_sweep: build(
                "WITH gone AS (
                    DELETE FROM {dd} WHERE ctid IN (
                        SELECT ctid FROM {dd} WHERE expires_at <= {now}
                        LIMIT $1 FOR UPDATE SKIP LOCKED)
                    RETURNING 1
                 )
                 SELECT count(*) FROM gone",
            ),
            // The hot path, one round trip. Sweep exhausted expired leases.
            // Take the head of each claim index, skipping rows other claimers
            // hold: `fresh` from ready_idx (ready now) in delivery order,
            // `expired` from lease_idx and `due` from delay_idx (leases and
            // delays that ended) in order of their end. Lease the first
            // `limit` of the three merged in delivery order, so a nacked,
            // delayed or expired message keeps its place; due delayed
            // messages not leased now move to ready_idx (token NULL), in
            // their place for the next claim. No index holds a live lease or
            // a message still delayed, and each part reads at most about
            // `limit` rows, so a claim's cost does not grow with what is in
            // flight, delayed, or came due at once. (When more than `limit`
            // leases or delays ended at once, those that ended first are
            // merged first; the rest follow within a claim or two.)
            // A row that exhausted its attempts (the queue's max_attempts was
            // lowered after its nack) goes to the dead letters instead of
            // being leased.
            // A row another producer inserted without an id gets its
            // stable foreign id on its first claim.
            // $1 queue, $2 max attempts, $3 reason, $4 limit, $5 lease ms, $6 token,
            // $7 foreign id prefix.
            claim: build(&format!(
                "WITH t AS MATERIALIZED (SELECT {{now}} AS now {{settle}}),
                 {SWEEP},
                 fresh AS (
                    SELECT c.seq, c.priority, c.attempts FROM {{m}} c
                    WHERE c.queue = $1 AND c.token IS NULL AND c.visible_at <= (SELECT now FROM t)
                      AND NOT c.purged AND {KEY_HEAD}
                    ORDER BY c.priority DESC, c.seq
                    LIMIT $4
                    FOR UPDATE OF c SKIP LOCKED
                 ),
                 expired AS (
                    SELECT c.seq, c.priority, c.attempts FROM {{m}} c
                    WHERE c.queue = $1 AND c.token <> '' AND c.visible_at <= (SELECT now FROM t)
                      AND c.attempts < $2 AND NOT c.purged AND {KEY_HEAD}
                    ORDER BY c.visible_at
                    LIMIT $4
                    FOR UPDATE OF c SKIP LOCKED
                 ),
                 due AS (
                    SELECT c.seq, c.priority, c.attempts, {KEY_HEAD} AS head FROM {{m}} c
                    WHERE c.queue = $1 AND c.token = '' AND c.visible_at <= (SELECT now FROM t)
                    ORDER BY c.visible_at
                    LIMIT $4
                    FOR UPDATE OF c SKIP LOCKED
                 ),
                 picked AS (
                    SELECT seq, attempts FROM (
                        SELECT seq, priority, attempts FROM fresh
                        UNION ALL SELECT seq, priority, attempts FROM expired
                        UNION ALL SELECT seq, priority, attempts FROM due WHERE head
                    ) u
                    ORDER BY priority DESC, seq
                    LIMIT $4
                 ),
                 promoted AS (
                    UPDATE {{m}} m SET token = NULL
                    WHERE m.seq = ANY (ARRAY(SELECT seq FROM due WHERE seq NOT IN (SELECT seq FROM picked)))
                 ),
                 exhausted AS (
                    DELETE FROM {{m}} m
                    WHERE m.seq = ANY (ARRAY(SELECT seq FROM picked WHERE attempts >= $2))
                    RETURNING m.seq, m.queue, m.id, m.payload, m.headers, m.priority, m.ordering_key, m.enqueued_at, m.dedup_id, m.attempts, m.purged
                 ),
                 {claim_dead}
                 UPDATE {{m}} m SET token = $6, attempts = m.attempts + 1, visible_at = (SELECT now FROM t) + $5,
                    id = COALESCE(NULLIF(m.id, ''), $7::text || m.seq::text)
                 WHERE m.seq = ANY (ARRAY(SELECT seq FROM picked WHERE attempts < $2))
                 RETURNING m.seq, m.id, m.payload, m.headers, m.priority, m.ordering_key, m.enqueued_at, m.dedup_id, m.attempts",
                claim_dead = gone_dead("(SELECT * FROM swept UNION ALL SELECT * FROM exhausted) g"),
            )),
            // $1 queue, $2 max attempts, $3 reason.
            sweep: build(&format!(
                "WITH t AS MATERIALIZED (SELECT {{now}} AS now {{settle}}),
                 {SWEEP},
                 {swept_dead}
                 SELECT count(*) FROM swept",
                swept_dead = gone_dead("swept"),
            )),
            // $1 seq, $2 token, $3 queue.
            delete: build(
                "WITH t AS MATERIALIZED (SELECT 1 AS one {settle})
                 DELETE FROM {m} USING t WHERE seq = $1 AND token = $2 AND {same_queue_3}",
            ),
            // $1 seqs, $2 tokens, $3 queue; returns the seqs and tokens deleted.
            // No join: primary key lookups (`seq = ANY ($1)`) and each row's
            // token checked against its own receipt's, whatever the
            // statistics say. Joined to UNNEST instead, a table whose
            // statistics were taken empty was scanned whole for every batch
            // (1.3 s each on a 100,000-message backlog), and a generic plan
            // rescanned the UNNEST for every row (57 ms for a batch of 448).
            delete_batch: build(
                "WITH t AS MATERIALIZED (SELECT 1 AS one {settle})
                 DELETE FROM {m} m USING t
                 WHERE m.seq = ANY ($1::int8[])
                   AND m.token = ANY (ARRAY(
                        SELECT ($2::text[])[i] FROM unnest(array_positions($1::int8[], m.seq)) AS i))
                   AND {same_queue_m3}
                 RETURNING m.seq, m.token",
            ),
            // Ends the lease; past max attempts the message moves to the
            // dead letters in the same statement instead.
            // $1 seq, $2 token, $3 queue, $4 max attempts, $5 reason, $6 delay ms, $7 channel.
            nack: build(
                "WITH t AS MATERIALIZED (SELECT {now} AS now {settle}),
                 gone AS (
                    DELETE FROM {m} WHERE seq = $1 AND token = $2 AND {same_queue_3} AND (attempts >= $4 OR purged)
                    RETURNING queue, id, payload, headers, priority, ordering_key, enqueued_at, dedup_id, attempts, purged
                 ),
                 dead AS (
                    INSERT INTO {d} (queue, id, payload, headers, priority, ordering_key, enqueued_at, dedup_id, attempts, reason, dead_lettered_at)
                    SELECT queue, id, payload, headers, priority, ordering_key, enqueued_at, dedup_id, attempts, $5, (SELECT now FROM t)
                    FROM gone WHERE NOT purged
                 ),
                 back AS (
                    UPDATE {m} SET token = CASE WHEN $6 > 0 THEN '' END, visible_at = (SELECT now FROM t) + $6
                    WHERE seq = $1 AND token = $2 AND {same_queue_3} AND attempts < $4 AND NOT purged
                    RETURNING seq
                 ),
                 woken AS (SELECT pg_notify($7, $3) FROM back WHERE $6 <= 0)
                 SELECT (SELECT count(*) FROM gone) + (SELECT count(*) FROM back) AS settled,
                        (SELECT count(*) FROM woken) AS woken",
            ),
            // Back at once, the attempt not counted: one delivery (`release`)
            // or the rows of one claim whose pop was gone before it got them.
            // A row purged while leased keeps its token and count: its lease
            // ends now, and the next sweep drops it.
            // $1 seqs, $2 token, $3 queue, $4 channel.
            release: build(
                "WITH t AS MATERIALIZED (SELECT {now} AS now {settle}),
                 back AS (
                    UPDATE {m} m SET visible_at = (SELECT now FROM t),
                        token = CASE WHEN m.purged THEN m.token END,
                        attempts = CASE WHEN m.purged THEN m.attempts ELSE GREATEST(m.attempts - 1, 0) END
                    WHERE m.seq = ANY ($1::int8[]) AND m.token = $2 AND {same_queue_m3}
                    RETURNING m.purged
                 ),
                 woken AS (SELECT pg_notify($4, $3) FROM (SELECT 1 FROM back WHERE NOT purged LIMIT 1) x)
                 SELECT (SELECT count(*) FROM back) AS settled, (SELECT count(*) FROM woken) AS woken",
            ),
            // $1 seq, $2 token, $3 queue, $4 ms from now.
            extend: build(
                "WITH t AS MATERIALIZED (SELECT {now} AS now {settle})
                 UPDATE {m} SET visible_at = t.now + $4 FROM t WHERE seq = $1 AND token = $2 AND {same_queue_3}",
            ),
            // $1 seq, $2 token, $3 queue, $4 reason.
            dead_letter: build(
                "WITH t AS MATERIALIZED (SELECT {now} AS now {settle}),
                 gone AS (
                    DELETE FROM {m} WHERE seq = $1 AND token = $2 AND {same_queue_3}
                    RETURNING queue, id, payload, headers, priority, ordering_key, enqueued_at, dedup_id, attempts
                 ),
                 dead AS (
                    INSERT INTO {d} (queue, id, payload, headers, priority, ordering_key, enqueued_at, dedup_id, attempts, reason, dead_lettered_at)
                    SELECT queue, id, payload, headers, priority, ordering_key, enqueued_at, dedup_id, attempts, $4, t.now
                    FROM gone, t
                    RETURNING 1
                 )
                 SELECT count(*) FROM dead",
            ),
            // $1 queue, $2 limit.
            dead_letters: build(
                "SELECT id, payload, headers, priority, ordering_key, enqueued_at, dedup_id, attempts, reason, dead_lettered_at
                 FROM {d} WHERE queue = $1 ORDER BY dl_seq LIMIT $2",
            ),
            // $1 queue, $2 ids (NULL: any), $3 limit (NULL: all), $4 channel.
            replay: build(
                "WITH t AS MATERIALIZED (SELECT {now} AS now),
                 gone AS (
                    DELETE FROM {d} WHERE dl_seq IN (
                        SELECT dl_seq FROM {d}
                        WHERE queue = $1 AND ($2::text[] IS NULL OR id = ANY($2::text[]))
                        ORDER BY dl_seq LIMIT $3
                        FOR UPDATE SKIP LOCKED)
                    RETURNING dl_seq, queue, id, payload, headers, priority, ordering_key, enqueued_at, dedup_id
                 ),
                 ins AS (
                    INSERT INTO {m} (queue, id, payload, headers, priority, ordering_key, enqueued_at, dedup_id, visible_at)
                    SELECT queue, id, payload, headers, priority, ordering_key, enqueued_at, dedup_id, (SELECT now FROM t)
                    FROM gone ORDER BY dl_seq
                    RETURNING 1
                 ),
                 woken AS (SELECT pg_notify($4, $1) FROM (SELECT 1 FROM ins LIMIT 1) x)
                 SELECT (SELECT count(*) FROM ins) AS moved, (SELECT count(*) FROM woken) AS woken",
            ),
            // $1 queue.
            purge_dead_letters: build("DELETE FROM {d} WHERE queue = $1"),
            dead_letter_table: d.as_str().into(),
            // What the three claim indexes hold that is ready, merged in
            // delivery order. Unlike the claim, reads all that came due.
            // $1 queue, $2 limit.
            peek: build(
                "WITH t AS MATERIALIZED (SELECT {now} AS now)
                 SELECT {cols} FROM (
                    (SELECT {cols} FROM {m}
                     WHERE queue = $1 AND token IS NULL AND visible_at <= (SELECT now FROM t) AND NOT purged
                     ORDER BY priority DESC, seq LIMIT $2)
                    UNION ALL
                    (SELECT {cols} FROM {m}
                     WHERE queue = $1 AND token <> '' AND visible_at <= (SELECT now FROM t) AND NOT purged
                     ORDER BY priority DESC, seq LIMIT $2)
                    UNION ALL
                    (SELECT {cols} FROM {m}
                     WHERE queue = $1 AND token = '' AND visible_at <= (SELECT now FROM t)
                     ORDER BY priority DESC, seq LIMIT $2)
                 ) u
                 ORDER BY priority DESC, seq LIMIT $2",
            ),
            // Removes what is not leased; leased rows are marked so that they
            // are removed, not redelivered, if their lease ends unsettled.
            // Each part names its claim index's predicate.
            // $1 queue.
            purge: build(
                "WITH t AS MATERIALIZED (SELECT {now} AS now),
                 waiting AS (
                    DELETE FROM {m} WHERE queue = $1 AND token IS NULL
                    RETURNING 1
                 ),
                 delayed AS (
                    DELETE FROM {m} WHERE queue = $1 AND token = ''
                    RETURNING 1
                 ),
                 expired AS (
                    DELETE FROM {m} WHERE queue = $1 AND token <> '' AND visible_at <= (SELECT now FROM t)
                    RETURNING 1
                 ),
                 marked AS (
                    UPDATE {m} SET purged = TRUE
                    WHERE queue = $1 AND token <> '' AND visible_at > (SELECT now FROM t)
                 )
                 SELECT (SELECT count(*) FROM waiting) + (SELECT count(*) FROM delayed) + (SELECT count(*) FROM expired)",
            ),
            // $1 queue. Exact counts: one scan of the queue's rows in each
            // claim index (ready_idx: ready, or delayed by a plain INSERT
            // with a future visible_at; lease_idx: in flight, or ready again
            // since the lease ended; delay_idx: delayed, or due).
            stats: build(
                "WITH t AS MATERIALIZED (SELECT {now} AS now),
                 waiting AS (
                    SELECT count(*) FILTER (WHERE m.visible_at <= t.now AND NOT m.purged) AS ready,
                           count(*) FILTER (WHERE m.visible_at > t.now) AS delayed,
                           min(m.enqueued_at) FILTER (WHERE m.visible_at <= t.now) AS oldest
                    FROM t, {m} m WHERE m.queue = $1 AND m.token IS NULL
                 ),
                 leased AS (
                    SELECT count(*) FILTER (WHERE m.visible_at <= t.now AND NOT m.purged) AS ready,
                           count(*) FILTER (WHERE m.visible_at > t.now) AS in_flight,
                           min(m.enqueued_at) AS oldest
                    FROM t, {m} m WHERE m.queue = $1 AND m.token <> ''
                 ),
                 later AS (
                    SELECT count(*) FILTER (WHERE m.visible_at <= t.now) AS ready,
                           count(*) FILTER (WHERE m.visible_at > t.now) AS delayed,
                           min(m.enqueued_at) FILTER (WHERE m.visible_at <= t.now) AS oldest
                    FROM t, {m} m WHERE m.queue = $1 AND m.token = ''
                 )
                 SELECT w.ready + l.ready + d.ready AS depth, l.in_flight, w.delayed + d.delayed AS delayed,
                    LEAST(w.oldest, l.oldest, d.oldest) AS oldest,
                    (SELECT count(*) FROM {d} WHERE queue = $1) AS dead,
                    t.now AS now
                 FROM t, waiting w, leased l, later d",
            ),
            // $1 queue. Counts messages and dead letters; the queue's dedup
            // ids go too.
            drop_queue: build(
                "WITH a AS (DELETE FROM {m} WHERE queue = $1 AND token IS NULL RETURNING 1),
                      l AS (DELETE FROM {m} WHERE queue = $1 AND token <> '' RETURNING 1),
                      e AS (DELETE FROM {m} WHERE queue = $1 AND token = '' RETURNING 1),
                      b AS (DELETE FROM {d} WHERE queue = $1 RETURNING 1),
                      c AS (DELETE FROM {dd} WHERE queue = $1)
                 SELECT (SELECT count(*) FROM a) + (SELECT count(*) FROM l) + (SELECT count(*) FROM e) + (SELECT count(*) FROM b)",
            ),
        }
    }
}
