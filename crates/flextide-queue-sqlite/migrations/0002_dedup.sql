-- Flextide Queue, SQLite schema version 2: unique pushes (contract clause 16).
--
-- `flextide_queue_dedup` remembers, per queue and dedup id, the message
-- that holds the id and when its window ends (ms since the Unix epoch): a
-- push of the id before then is not enqueued. The row outlives the message;
-- an expired row is taken over by the next push of its id, and pushes sweep
-- expired rows now and then. `drop_queue` removes a queue's rows, `purge`
-- keeps them. Messages and dead letters keep their dedup id.
--
-- Unlike version 1 this file is not idempotent by hand (SQLite has no
-- `ADD COLUMN IF NOT EXISTS`): `flextide_queue_sqlite::migrate` applies it
-- once, in one transaction with its version row.

CREATE TABLE IF NOT EXISTS flextide_queue_dedup (
    queue      TEXT    NOT NULL,
    dedup_id   TEXT    NOT NULL,
    -- The id of the message that holds the dedup id.
    message_id TEXT    NOT NULL,
    -- When the window ends: the push of the message plus the queue's window.
    expires_at INTEGER NOT NULL,
    -- Pushes dropped as duplicates within this window; 0 right after the
    -- push that won, which is how that push knows it won.
    duplicates INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (queue, dedup_id)
);

-- The sweep of expired rows.
CREATE INDEX IF NOT EXISTS flextide_queue_dedup_expires
    ON flextide_queue_dedup (expires_at);

ALTER TABLE flextide_queue_messages ADD COLUMN dedup_id TEXT;

ALTER TABLE flextide_queue_dead_letters ADD COLUMN dedup_id TEXT;

INSERT OR IGNORE INTO flextide_queue_schema (version, description, applied_at)
VALUES (2, 'unique pushes', CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER));
