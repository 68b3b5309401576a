//! The schema's upgrade path: a database made by the schema code that
//! predates the shared migrator, with messages in it, is migrated twice by
//! today's `migrate` and keeps every message, in order.

mod common;

use std::time::Duration;

use common::TempDb;
use flextide_queue_sqlite::{
    Message, QueueOptions, QueueProvider, SqliteQueue, connect_pool, current_version, migrate, sqlx,
};

/// What the hand-written `migrate` of version 1 created (its one file,
/// comments left out), copied here so later edits of the file cannot hide a
/// break with databases that exist.
const SCHEMA_BEFORE_SHARED_MIGRATOR: &str = r#"
CREATE TABLE IF NOT EXISTS flextide_queue_schema (
    version     INTEGER PRIMARY KEY,
    description TEXT    NOT NULL,
    applied_at  INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS flextide_queue_messages (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    queue        TEXT    NOT NULL,
    id           TEXT    NOT NULL,
    payload      BLOB    NOT NULL,
    headers      TEXT    NOT NULL DEFAULT '',
    priority     INTEGER NOT NULL DEFAULT 0,
    ordering_key TEXT,
    enqueued_at  INTEGER NOT NULL,
    visible_at   INTEGER NOT NULL,
    token        TEXT,
    attempts     INTEGER NOT NULL DEFAULT 0,
    purged       INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS flextide_queue_messages_claim
    ON flextide_queue_messages (queue, priority DESC, seq, visible_at);
CREATE INDEX IF NOT EXISTS flextide_queue_messages_key
    ON flextide_queue_messages (queue, ordering_key, seq)
    WHERE ordering_key IS NOT NULL;
CREATE INDEX IF NOT EXISTS flextide_queue_messages_leased
    ON flextide_queue_messages (queue, visible_at)
    WHERE token IS NOT NULL;
CREATE TABLE IF NOT EXISTS flextide_queue_dead_letters (
    dseq             INTEGER PRIMARY KEY AUTOINCREMENT,
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
"#;

#[tokio::test]
async fn a_database_of_the_old_schema_code_upgrades_and_keeps_its_messages() {
    let db = TempDb::new("upgrade");
    let pool = connect_pool(&db.url()).await.unwrap();
    sqlx::raw_sql(SCHEMA_BEFORE_SHARED_MIGRATOR)
        .execute(&pool)
        .await
        .unwrap();
    // Rows as the old code wrote them: priority 0 and 5, one delayed.
    let now = flextide_queue_core::backend::now_millis();
    for (id, priority, delay) in [
        ("a", 0, 0),
        ("b", 5, 0),
        ("c", 0, 0),
        ("d", 5, 0),
        ("e", 0, 3_600_000),
    ] {
        sqlx::query(
            "INSERT INTO flextide_queue_messages \
             (queue, id, payload, headers, priority, ordering_key, enqueued_at, visible_at) \
             VALUES ('up', ?1, ?2, '', ?3, NULL, ?4, ?5)",
        )
        .bind(id)
        .bind(id.as_bytes())
        .bind(priority)
        .bind(now)
        .bind(now + delay)
        .execute(&pool)
        .await
        .unwrap();
    }
    assert_eq!(current_version(&pool).await.unwrap(), 1);
    migrate(&pool).await.unwrap();
    migrate(&pool).await.unwrap();
    let recorded: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM flextide_queue_schema")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(recorded, 2);
    let q = SqliteQueue::from_pool(pool.clone(), "up", QueueOptions::default()).unwrap();
    let mut got = Vec::new();
    while let Some(d) = q.pop(Duration::ZERO).await.unwrap() {
        assert_eq!(d.attempt, 1);
        got.push(d.message.id.as_str().to_owned());
        q.delete(&d.receipt).await.unwrap();
    }
    assert_eq!(got, ["b", "d", "a", "c"]);
    let stats = q.stats().await.unwrap();
    assert_eq!((stats.depth, stats.delayed), (0, 1));
    q.push(Message::new("after")).await.unwrap();
    let after = q.pop(Duration::ZERO).await.unwrap().unwrap();
    assert_eq!(&after.message.payload[..], b"after");
    // Version 2: unique pushes on the upgraded tables.
    let first = q.push(Message::new("u1").with_dedup_id("u")).await.unwrap();
    assert_eq!(
        q.push(Message::new("u2").with_dedup_id("u")).await.unwrap(),
        first
    );
}

#[tokio::test]
async fn a_fresh_database_migrates_from_nothing_through_the_shared_runner() {
    let db = TempDb::new("fresh");
    let pool = connect_pool(&db.url()).await.unwrap();
    assert_eq!(current_version(&pool).await.unwrap(), 0);
    migrate(&pool).await.unwrap();
    migrate(&pool).await.unwrap();
    let rows: Vec<(i64, String)> =
        sqlx::query_as("SELECT version, description FROM flextide_queue_schema")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(
        rows,
        [
            (1, "create queue tables".to_owned()),
            (2, "unique pushes".to_owned())
        ]
    );
}
