//! The tables, created by an idempotent [`migrate`] that keeps its own
//! version table (`flextide_queue_schema`), apart from sqlx's
//! `_sqlx_migrations`, so it never clashes with your own migrations.

use flextide_queue_core::{Result, validate_queue_name};
use sqlx::{Connection, sqlite::SqlitePool};

use crate::error;

/// One schema step: its version and the SQL that makes it.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    /// The version this step brings the schema to.
    pub version: i64,
    /// What it does, as recorded in `flextide_queue_schema`.
    pub description: &'static str,
    /// The SQL, the same text as the crate's `migrations/` file. Every
    /// statement is idempotent and the last one records the version.
    pub sql: &'static str,
}

/// Every schema step, oldest first: the files of the crate's `migrations/`
/// folder, embedded so a published crate needs no files at run time.
pub const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    description: "create queue tables",
    sql: include_str!("../migrations/0001_create_queue_tables.sql"),
}];

/// The schema version this crate needs.
pub const SCHEMA_VERSION: i64 = 1;

/// Creates or updates the queue tables. Idempotent and safe to run from
/// several processes at once: each step runs in a `BEGIN IMMEDIATE`
/// transaction and is recorded in `flextide_queue_schema`, so it is applied
/// once. [`SqliteQueue::connect`](crate::SqliteQueue::connect) calls it unless
/// told not to; call it yourself when you build queues with
/// [`SqliteQueue::from_pool`](crate::SqliteQueue::from_pool).
pub async fn migrate(pool: &SqlitePool) -> Result<()> {
    if current_version(pool).await? >= SCHEMA_VERSION {
        return Ok(());
    }
    let mut conn = pool.acquire().await.map_err(error::map)?;
    for step in MIGRATIONS {
        let mut tx = conn
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(error::map)?;
        let applied: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'flextide_queue_schema')",
        )
        .fetch_one(&mut *tx)
        .await
        .map_err(error::map)?;
        let applied = applied
            && sqlx::query_scalar::<_, bool>(
                "SELECT EXISTS (SELECT 1 FROM flextide_queue_schema WHERE version = ?)",
            )
            .bind(step.version)
            .fetch_one(&mut *tx)
            .await
            .map_err(error::map)?;
        if !applied {
            sqlx::raw_sql(step.sql)
                .execute(&mut *tx)
                .await
                .map_err(error::map)?;
            tracing::info!(
                version = step.version,
                description = step.description,
                "applied flextide queue schema step"
            );
        }
        tx.commit().await.map_err(error::map)?;
    }
    Ok(())
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
/// included, and dead letters) and returns how many rows went. Open handles
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
    tx.commit().await.map_err(error::map)?;
    Ok(messages + dead)
}

/// Names of every queue that holds messages or dead letters, sorted.
pub async fn list_queues(pool: &SqlitePool) -> Result<Vec<String>> {
    sqlx::query_scalar(
        "SELECT queue FROM flextide_queue_messages UNION SELECT queue FROM flextide_queue_dead_letters ORDER BY 1",
    )
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
