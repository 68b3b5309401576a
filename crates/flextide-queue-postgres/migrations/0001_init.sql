-- Flextide Queue, PostgreSQL schema version 1.
--
-- Applied by `flextide_queue_postgres::migrate()`, which records it in
-- `flextide_queue_schema_version`. To apply it with your own tooling, run
-- this file as is (every statement is idempotent) in the schema you want.
--
-- Times are milliseconds since the Unix epoch on the DATABASE clock, so
-- hosts with skewed clocks agree on leases and delays.

-- One row per message of every queue. A row is
--   ready     when visible_at <= now (token NULL, or an expired lease),
--   leased    when token IS NOT NULL AND visible_at > now (lease deadline),
--   delayed   when token IS NULL AND visible_at > now (not-before time).
-- The token stays after a lease expires, so a late ack of an expired but not
-- yet redelivered message still works; every new delivery replaces it.
CREATE TABLE IF NOT EXISTS flextide_queue_messages (
    seq          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    queue        TEXT     NOT NULL,
    id           TEXT     NOT NULL,
    payload      BYTEA    NOT NULL,
    headers      TEXT     NOT NULL DEFAULT '',
    priority     SMALLINT NOT NULL DEFAULT 0,
    ordering_key TEXT,
    enqueued_at  BIGINT   NOT NULL,
    visible_at   BIGINT   NOT NULL,
    token        TEXT,
    attempts     INTEGER  NOT NULL DEFAULT 0,
    -- Set by purge() on leased rows: removed when their lease ends unsettled.
    purged       BOOLEAN  NOT NULL DEFAULT FALSE
);

-- The claim walks this index in delivery order and filters on visible_at
-- without touching the heap for leased or delayed rows.
CREATE INDEX IF NOT EXISTS flextide_queue_messages_claim_idx
    ON flextide_queue_messages (queue, priority DESC, seq) INCLUDE (visible_at);

-- Finds the head of an ordering key.
CREATE INDEX IF NOT EXISTS flextide_queue_messages_key_idx
    ON flextide_queue_messages (queue, ordering_key, seq)
    WHERE ordering_key IS NOT NULL;

-- Rows delivered at least once, by lease end: the sweep of expired leases
-- that exhausted their attempts reads only these.
CREATE INDEX IF NOT EXISTS flextide_queue_messages_retry_idx
    ON flextide_queue_messages (queue, visible_at)
    WHERE attempts > 0;

-- A queue table churns: vacuum it early.
ALTER TABLE flextide_queue_messages SET (
    autovacuum_vacuum_scale_factor = 0.02,
    autovacuum_analyze_scale_factor = 0.05
);

CREATE TABLE IF NOT EXISTS flextide_queue_dead_letters (
    dl_seq           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    queue            TEXT     NOT NULL,
    id               TEXT     NOT NULL,
    payload          BYTEA    NOT NULL,
    headers          TEXT     NOT NULL DEFAULT '',
    priority         SMALLINT NOT NULL DEFAULT 0,
    ordering_key     TEXT,
    enqueued_at      BIGINT   NOT NULL,
    attempts         INTEGER  NOT NULL,
    reason           TEXT     NOT NULL,
    dead_lettered_at BIGINT   NOT NULL
);

CREATE INDEX IF NOT EXISTS flextide_queue_dead_letters_queue_idx
    ON flextide_queue_dead_letters (queue, dl_seq);
