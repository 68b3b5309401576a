-- Flextide Queue, PostgreSQL schema version 4: the claim reads only rows it
-- can take.
--
-- Before, one index held every row of a queue in delivery order, and the
-- claim walked past each leased row (a heap visit each: 2,500 of them per
-- claim with a worker's batches in flight); the sweep of exhausted expired
-- leases read every row delivered at least once, so a backlog of nacked
-- messages waiting for their retry made every claim read all of them (a
-- sequential scan of the table: 156–179 ms per claim of 500 with 300,000
-- retried rows of 1,000,000, 4–8 ms with these indexes).
--
-- Now a row is in exactly one of two partial indexes:
--   ready_idx  not leased (token NULL): ready or delayed, in delivery order;
--   lease_idx  leased (token set), by lease end: the expired leases are its
--              head, for the claim and the sweep.
-- A claim walks the head of each and merges them in delivery order. Every
-- statement that reads a queue's rows names `token IS NULL` or
-- `token IS NOT NULL`, so it can use one of them.
--
-- The indexes are built without CONCURRENTLY (the migration runs in one
-- transaction): writes to the table wait while they are built, about a
-- second per million rows. Processes of the previous version go on working
-- after it, but their claims no longer find an index in delivery order:
-- upgrade them before migrating a table with a large backlog.
--
-- Every statement is idempotent.

CREATE INDEX IF NOT EXISTS flextide_queue_messages_ready_idx
    ON flextide_queue_messages (queue, priority DESC, seq) INCLUDE (visible_at)
    WHERE token IS NULL;

CREATE INDEX IF NOT EXISTS flextide_queue_messages_lease_idx
    ON flextide_queue_messages (queue, visible_at)
    WHERE token IS NOT NULL;

DROP INDEX IF EXISTS flextide_queue_messages_claim_idx;

DROP INDEX IF EXISTS flextide_queue_messages_retry_idx;
