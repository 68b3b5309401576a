-- Flextide Queue, PostgreSQL schema version 4: the claim reads only rows it
-- can take.
--
-- Before, one index held every row of a queue in delivery order, and the
-- claim walked past each leased or delayed row (a heap visit each: 2,500 of
-- them per claim with a worker's batches in flight, and every message
-- waiting out a retry's backoff); the sweep of exhausted expired leases read
-- every row delivered at least once, so a backlog of nacked messages made
-- every claim read all of them (a sequential scan of the table: 156–179 ms
-- per claim of 500 with 300,000 retried rows of 1,000,000; 4–8 ms with
-- these indexes).
--
-- Now a row is in exactly one of three partial indexes:
--   ready_idx  token NULL: ready now, in delivery order;
--   lease_idx  a delivery's token: leased until visible_at, by visible_at,
--              so its head is the expired leases;
--   delay_idx  token '' (which no receipt carries): delayed until
--              visible_at, by visible_at, so its head is what came due.
-- A claim takes at most its limit from the head of each and merges them in
-- delivery order, so it never reads a live lease or a message still
-- delayed, and due delayed messages it does not take move to ready_idx.
-- Every statement that reads a queue's rows names one index's predicate
-- (`token IS NULL`, `token <> ''`, `token = ''`), so it can use it.
--
-- A row another producer inserts with a future visible_at and no token is
-- delivered on time, but sits in ready_idx and is read by every claim until
-- then: give it the token '' to keep it in delay_idx instead.
--
-- The indexes are built without CONCURRENTLY (the migration runs in one
-- transaction): writes to the table wait while it runs, 2.2–2.9 s here for
-- 1,000,000 rows of which 100,000 delayed (the UPDATE below 1.1–1.6 s, the
-- three indexes 1.0–1.2 s). Processes of the previous version go on working
-- after it, but their claims no longer find an index in delivery order:
-- upgrade them before migrating a table with a large backlog.
--
-- Every statement is idempotent.

-- Messages delayed before this version (pushed with a delay, or nacked with
-- one) move to delay_idx.
UPDATE flextide_queue_messages SET token = ''
WHERE token IS NULL AND visible_at > (extract(epoch FROM clock_timestamp()) * 1000)::bigint;

CREATE INDEX IF NOT EXISTS flextide_queue_messages_ready_idx
    ON flextide_queue_messages (queue, priority DESC, seq) INCLUDE (visible_at)
    WHERE token IS NULL;

CREATE INDEX IF NOT EXISTS flextide_queue_messages_lease_idx
    ON flextide_queue_messages (queue, visible_at)
    WHERE token <> '';

CREATE INDEX IF NOT EXISTS flextide_queue_messages_delay_idx
    ON flextide_queue_messages (queue, visible_at)
    WHERE token = '';

DROP INDEX IF EXISTS flextide_queue_messages_claim_idx;

DROP INDEX IF EXISTS flextide_queue_messages_retry_idx;
