-- Flextide Queue for MySQL 8.0+ / MariaDB 10.6+: tables shared by every queue.
-- Times are milliseconds since the Unix epoch on the database clock.
-- Every statement is idempotent (IF NOT EXISTS), so this file can also be run
-- by hand or by your own migration tool.

CREATE TABLE IF NOT EXISTS flextide_queue_messages (
    seq          BIGINT NOT NULL AUTO_INCREMENT,
    queue        VARCHAR(80) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    id           VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    payload      LONGBLOB NOT NULL,
    headers      MEDIUMTEXT CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    priority     TINYINT UNSIGNED NOT NULL DEFAULT 0,
    -- 255 - priority: an ascending index column gives "priority DESC, seq"
    -- on every server (MariaDB before 10.8 ignores DESC in index definitions).
    pri_inv      TINYINT UNSIGNED NOT NULL DEFAULT 255,
    ordering_key VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NULL,
    enqueued_at  BIGINT NOT NULL,
    -- Ready: deliverable from this time on (delay / nack delay).
    -- Leased: the lease deadline; once past, the message is deliverable again.
    visible_at   BIGINT NOT NULL,
    leased       TINYINT NOT NULL DEFAULT 0,
    -- The fencing token of the current delivery; NULL when not leased.
    token        CHAR(32) CHARACTER SET ascii COLLATE ascii_bin NULL,
    attempts     INT UNSIGNED NOT NULL DEFAULT 0,
    PRIMARY KEY (seq),
    -- The claim: queue, then priority high to low, then push order, with the
    -- visibility time checked inside the index.
    KEY flextide_queue_messages_claim (queue, pri_inv, seq, visible_at),
    -- Leases that ran out (dead-lettering past max attempts) and stats.
    KEY flextide_queue_messages_lease (queue, leased, visible_at),
    -- The head of an ordering key.
    KEY flextide_queue_messages_key (queue, ordering_key, seq)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE IF NOT EXISTS flextide_queue_dead_letters (
    dseq         BIGINT NOT NULL AUTO_INCREMENT,
    queue        VARCHAR(80) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    id           VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    payload      LONGBLOB NOT NULL,
    headers      MEDIUMTEXT CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    priority     TINYINT UNSIGNED NOT NULL DEFAULT 0,
    ordering_key VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NULL,
    enqueued_at  BIGINT NOT NULL,
    attempts     INT UNSIGNED NOT NULL DEFAULT 0,
    reason       TEXT CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    dead_at      BIGINT NOT NULL,
    PRIMARY KEY (dseq),
    KEY flextide_queue_dead_letters_queue (queue, dseq),
    KEY flextide_queue_dead_letters_id (queue, id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
