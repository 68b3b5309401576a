-- Flextide Queue, PostgreSQL schema version 3: unique pushes (contract
-- clause 16).
--
-- `flextide_queue_dedup` remembers, per queue and dedup id, the message
-- that holds the id and when its window ends (ms since the epoch on the
-- database clock): a push of the id before then is not enqueued. The push
-- claims its dedup id with INSERT … ON CONFLICT DO UPDATE in the statement
-- that inserts the message, so concurrent pushes of one id enqueue exactly
-- one, inside your own transaction too. The row outlives the message; an
-- expired row is taken over by the next push of its id, and pushes sweep
-- expired rows now and then. `drop_queue` removes a queue's rows, `purge`
-- keeps them. Messages and dead letters keep their dedup id.
--
-- Every statement is idempotent.

CREATE TABLE IF NOT EXISTS flextide_queue_dedup (
    queue      TEXT   NOT NULL,
    dedup_id   TEXT   NOT NULL,
    -- The id of the message that holds the dedup id.
    message_id TEXT   NOT NULL,
    -- When the window ends: the push of the message plus the queue's window.
    expires_at BIGINT NOT NULL,
    -- Pushes dropped as duplicates within this window; 0 right after the
    -- push that won, which is how that push knows it won.
    duplicates BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (queue, dedup_id)
);

-- The sweep of expired rows.
CREATE INDEX IF NOT EXISTS flextide_queue_dedup_expires_idx
    ON flextide_queue_dedup (expires_at);

-- Every duplicate push updates its row: vacuum early, like the messages.
ALTER TABLE flextide_queue_dedup SET (
    autovacuum_vacuum_scale_factor = 0.02,
    autovacuum_analyze_scale_factor = 0.05
);

ALTER TABLE flextide_queue_messages ADD COLUMN IF NOT EXISTS dedup_id TEXT;

ALTER TABLE flextide_queue_dead_letters ADD COLUMN IF NOT EXISTS dedup_id TEXT;
