//! The tables, created by the shared migrator of `flextide-queue-sql`:
//! this file supplies the migration files and the version table
//! (`flextide_queue_schema`).

use flextide_queue_core::{Result, validate_queue_name};
use flextide_queue_sql::Plan;
use sqlx::{Connection, sqlite::SqlitePool};

use crate::error::{self, DIALECT};

pub use flextide_queue_sql::Migration;

/// Every schema step, oldest first: the files of the crate's `migrations/`
/// folder, embedded so a published crate needs no files at run time.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "create queue tables",
        sql: include_str!("../migrations/0001_create_queue_tables.sql"),
    },
    Migration {
        version: 2,
        name: "unique pushes",
        sql: include_str!("../migrations/0002_dedup.sql"),
    },
];

/// The schema version this crate needs.
pub const SCHEMA_VERSION: i64 = 2;

/// The version table (the one the first file creates too, so a database
/// migrated by hand with the files and one migrated here agree) and how a
/// version is recorded: `OR IGNORE`, as each file also records itself.
const PLAN: Plan = Plan {
    dialect: &DIALECT,
    migrations: MIGRATIONS,
    create_version_table: "CREATE TABLE IF NOT EXISTS flextide_queue_schema (
        version     INTEGER PRIMARY KEY,
        description TEXT    NOT NULL,
        applied_at  INTEGER NOT NULL
    )",
    applied: "SELECT version FROM flextide_queue_schema",
    record: "INSERT OR IGNORE INTO flextide_queue_schema (version, description, applied_at) \
             VALUES (?1, ?2, CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER))",
    split: false,
};

/// Creates or updates the queue tables. Idempotent and safe to run from
/// several processes at once: the shared migrator runs inside one
/// `BEGIN IMMEDIATE` transaction (SQLite's DDL is transactional), so a
/// concurrent caller waits for the write lock and finds the work done.
/// Versions are recorded in `flextide_queue_schema`, apart from sqlx's
/// `_sqlx_migrations`, so it never clashes with your own migrations.
/// [`SqliteQueue::connect`](crate::SqliteQueue::connect) calls it unless
/// told not to; call it yourself when you build queues with
/// [`SqliteQueue::from_pool`](crate::SqliteQueue::from_pool).
pub async fn migrate(pool: &SqlitePool) -> Result<()> {
    migrate_steps(pool).await.map(drop)
}

/// [`migrate`], returning the versions it applied (empty: up to date).
pub(crate) async fn migrate_steps(pool: &SqlitePool) -> Result<Vec<i64>> {
    // Up to date (the usual case): no write lock taken.
    if current_version(pool).await? >= SCHEMA_VERSION {
        return Ok(Vec::new());
    }
    let mut conn = pool.acquire().await.map_err(error::map)?;
    let mut tx = conn
        .begin_with("BEGIN IMMEDIATE")
        .await
        .map_err(error::map)?;
    let applied = flextide_queue_sql::migrate::<sqlx::Sqlite>(&mut *tx, &PLAN).await?;
    tx.commit().await.map_err(error::map)?;
    Ok(applied)
}

/// The schema version recorded in the database: 0 when nothing was applied.
pub async fn current_version(pool: &SqlitePool) -> Result<i64> {
    let has_table: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'flextide_queue_schema')",
    )
    .fetch_one(pool)
    .await
    .map_err(error::map)?;
    if !has_table {
        return Ok(0);
    }
    let version: Option<i64> = sqlx::query_scalar("SELECT MAX(version) FROM flextide_queue_schema")
        .fetch_one(pool)
        .await
        .map_err(error::map)?;
    Ok(version.unwrap_or(0))
}

/// Removes the queue `name` and everything it stored (messages, leased ones
/// included, dead letters, and the dedup ids it remembers) and returns how
/// many messages and dead letters went. Open handles
/// on it stay usable and see an empty queue. For tests and the CLI.
pub async fn drop_queue(pool: &SqlitePool, name: &str) -> Result<u64> {
    validate_queue_name(name)?;
    let mut tx = pool
        .begin_with("BEGIN IMMEDIATE")
        .await
        .map_err(error::map)?;
    let messages = sqlx::query("DELETE FROM flextide_queue_messages WHERE queue = ?")
        .bind(name)
        .execute(&mut *tx)
        .await
        .map_err(error::map)?
        .rows_affected();
    let dead = sqlx::query("DELETE FROM flextide_queue_dead_letters WHERE queue = ?")
        .bind(name)
        .execute(&mut *tx)
        .await
        .map_err(error::map)?
        .rows_affected();
    sqlx::query("DELETE FROM flextide_queue_dedup WHERE queue = ?")
        .bind(name)
        .execute(&mut *tx)
        .await
        .map_err(error::map)?;
    tx.commit().await.map_err(error::map)?;
    Ok(messages + dead)
}

/// Names of every queue that holds messages or dead letters, sorted.
pub async fn list_queues(pool: &SqlitePool) -> Result<Vec<String>> {
    sqlx::query_scalar(flextide_queue_sql::LIST_QUEUES_SQL)
        .fetch_all(pool)
        .await
        .map_err(error::map)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_embedded_in_order() {
        let mut last = 0;
        for m in MIGRATIONS {
            assert!(m.version > last);
            last = m.version;
            assert!(m.sql.contains("flextide_queue_schema"));
        }
        assert_eq!(last, SCHEMA_VERSION);
    }
}
