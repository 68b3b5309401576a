-- Flextide Queue, SQLite schema version 1: messages and dead letters.
--
-- Idempotent: safe to apply more than once, with `flextide_queue_sqlite::migrate`
-- (which embeds this file) or with your own migration tool. The version row at
-- the end tells `migrate` the file was applied. Every queue lives in these
-- tables, told apart by the `queue` column.

CREATE TABLE IF NOT EXISTS flextide_queue_schema (
    version     INTEGER PRIMARY KEY,
    description TEXT    NOT NULL,
    applied_at  INTEGER NOT NULL            -- ms since the Unix epoch
);

-- One row per message waiting, delayed or leased. Acknowledged messages are
-- deleted, so the table holds only live work.
CREATE TABLE IF NOT EXISTS flextide_queue_messages (
    -- Push order. Never reused (AUTOINCREMENT), kept through nacks and
    -- expired leases, so a redelivered message keeps its place.
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    queue        TEXT    NOT NULL,
    id           TEXT    NOT NULL,
    payload      BLOB    NOT NULL,
    headers      TEXT    NOT NULL DEFAULT '',   -- JSON object, '' for none
    priority     INTEGER NOT NULL DEFAULT 0,    -- higher first
    ordering_key TEXT,
    enqueued_at  INTEGER NOT NULL,              -- ms since the Unix epoch
    -- Not delivered before this time (ms): the delay of a new or nacked
    -- message, or the end of the current lease.
    visible_at   INTEGER NOT NULL,
    -- Fencing token of the current delivery; NULL while not leased.
    token        TEXT,
    attempts     INTEGER NOT NULL DEFAULT 0,    -- deliveries so far
    -- 1 when `purge` ran while the message was leased: it is never delivered
    -- again, but its receipt still settles it.
    purged       INTEGER NOT NULL DEFAULT 0
);

-- The claim walks this index in delivery order and stops after LIMIT rows;
-- visible_at is included so rows not yet due are skipped without a table read.
CREATE INDEX IF NOT EXISTS flextide_queue_messages_claim
    ON flextide_queue_messages (queue, priority DESC, seq, visible_at);

-- The head (lowest seq) of each ordering key.
CREATE INDEX IF NOT EXISTS flextide_queue_messages_key
    ON flextide_queue_messages (queue, ordering_key, seq)
    WHERE ordering_key IS NOT NULL;

-- Leased messages by lease end: finds expired leases to dead-letter.
CREATE INDEX IF NOT EXISTS flextide_queue_messages_leased
    ON flextide_queue_messages (queue, visible_at)
    WHERE token IS NOT NULL;

CREATE TABLE IF NOT EXISTS flextide_queue_dead_letters (
    dseq             INTEGER PRIMARY KEY AUTOINCREMENT,  -- dead-letter order
    queue            TEXT    NOT NULL,
    id               TEXT    NOT NULL,
    payload          BLOB    NOT NULL,
    headers          TEXT    NOT NULL DEFAULT '',
    priority         INTEGER NOT NULL DEFAULT 0,
    ordering_key     TEXT,
    enqueued_at      INTEGER NOT NULL,
    attempts         INTEGER NOT NULL,
    reason           TEXT    NOT NULL,
    dead_lettered_at INTEGER NOT NULL
);

CREATE INDEX IF NOT EXISTS flextide_queue_dead_letters_queue
    ON flextide_queue_dead_letters (queue, dseq);

CREATE INDEX IF NOT EXISTS flextide_queue_dead_letters_id
    ON flextide_queue_dead_letters (queue, id);

INSERT OR IGNORE INTO flextide_queue_schema (version, description, applied_at)
VALUES (1, 'create queue tables', CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER));
