-- Flextide Queue for MySQL 8.0+ / MariaDB 10.6+, version 3: unique pushes
-- (contract clause 16).
--
-- `flextide_queue_dedup` remembers, per queue and dedup id, the message
-- that holds the id and when its window ends (ms since the epoch on the
-- database clock): a push of the id before then is not enqueued. The push
-- claims its dedup id with INSERT … ON DUPLICATE KEY UPDATE in the
-- transaction that inserts the message, so concurrent pushes of one id
-- enqueue exactly one, inside your own transaction too. The row outlives
-- the message; an expired row is taken over by the next push of its id, and
-- pushes sweep expired rows now and then. `drop_queue` removes a queue's
-- rows, `purge` keeps them. Messages and dead letters keep their dedup id.
--
-- The dedup id is VARBINARY, compared byte for byte: a PAD SPACE collation
-- would take `a` and `a ` for one id.
--
-- Every statement is idempotent (MySQL has no ADD COLUMN IF NOT EXISTS:
-- the columns are added through a prepared statement only when missing).

CREATE TABLE IF NOT EXISTS flextide_queue_dedup (
    queue      VARCHAR(80) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    dedup_id   VARBINARY(1020) NOT NULL,
    -- The id of the message that holds the dedup id.
    message_id VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    -- When the window ends: the push of the message plus the queue's window.
    expires_at BIGINT NOT NULL,
    -- Pushes dropped as duplicates within this window; 0 right after the
    -- push that won, which is how that push knows it won.
    duplicates BIGINT UNSIGNED NOT NULL DEFAULT 0,
    PRIMARY KEY (queue, dedup_id),
    -- The sweep of expired rows.
    KEY flextide_queue_dedup_expires (expires_at)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

SET @flextide_ddl = IF(
    (SELECT COUNT(*) FROM information_schema.columns
     WHERE table_schema = DATABASE() AND table_name = 'flextide_queue_messages'
       AND column_name = 'dedup_id') = 0,
    'ALTER TABLE flextide_queue_messages ADD COLUMN dedup_id VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NULL',
    'DO 0');

PREPARE flextide_stmt FROM @flextide_ddl;

EXECUTE flextide_stmt;

DEALLOCATE PREPARE flextide_stmt;

SET @flextide_ddl = IF(
    (SELECT COUNT(*) FROM information_schema.columns
     WHERE table_schema = DATABASE() AND table_name = 'flextide_queue_dead_letters'
       AND column_name = 'dedup_id') = 0,
    'ALTER TABLE flextide_queue_dead_letters ADD COLUMN dedup_id VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NULL',
    'DO 0');

PREPARE flextide_stmt FROM @flextide_ddl;

EXECUTE flextide_stmt;

DEALLOCATE PREPARE flextide_stmt
