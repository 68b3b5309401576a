//! Creates the queue tables: an explicit, idempotent step with its own
//! version table, safe to run from several processes at once.

use std::time::Duration;

use flextide_queue_core::{QueueError, Result};
use sqlx::{AssertSqlSafe, MySqlPool, Row};

use crate::{BACKEND, error::map_err};

/// One schema change, in the order they are applied.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    /// Version number, recorded in `flextide_queue_schema` once applied.
    pub version: i64,
    /// What the change does.
    pub description: &'static str,
    /// The SQL: statements separated by `;`, each idempotent, runnable by
    /// hand or by your own migration tool (the files live in the crate's
    /// `migrations/` folder).
    pub sql: &'static str,
}

/// Every schema change of this crate, oldest first.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        description: "create queue tables",
        sql: include_str!("../migrations/0001_create_queue_tables.sql"),
    },
    Migration {
        version: 2,
        description: "derive pri_inv from priority",
        sql: include_str!("../migrations/0002_derived_pri_inv.sql"),
    },
];

/// The table recording which [`MIGRATIONS`] were applied (not sqlx's
/// `_sqlx_migrations`, so it never clashes with your own sqlx migrations).
pub const VERSION_TABLE: &str = "flextide_queue_schema";

const LOCK_NAME: &str = "flextide_queue_migrate";
const LOCK_WAIT: Duration = Duration::from_secs(60);

/// Creates or upgrades the queue tables. Idempotent: run it at every start
/// if you like. Concurrent calls (several processes starting together) are
/// serialised by the server lock `GET_LOCK('flextide_queue_migrate')`.
///
/// Works on MySQL 8.0+ and MariaDB 10.6+. Needs the CREATE privilege; if your
/// application runs without it, apply [`MIGRATIONS`] with your own tooling
/// instead (each file's statements are idempotent).
pub async fn migrate(pool: &MySqlPool) -> Result<()> {
    let mut conn = pool.acquire().await.map_err(map_err)?;
    let locked: Option<i64> = sqlx::query_scalar("SELECT GET_LOCK(?, ?)")
        .bind(LOCK_NAME)
        .bind(LOCK_WAIT.as_secs() as i64)
        .fetch_one(&mut *conn)
        .await
        .map_err(map_err)?;
    if locked != Some(1) {
        return Err(QueueError::Timeout {
            backend: BACKEND,
            operation: "migrate (waiting for GET_LOCK)",
            after: LOCK_WAIT,
        });
    }
    let outcome = apply(&mut conn).await;
    // A lost connection releases the lock on its own; ignore a failure here.
    let _ = sqlx::query("SELECT RELEASE_LOCK(?)")
        .bind(LOCK_NAME)
        .execute(&mut *conn)
        .await;
    outcome
}

async fn apply(conn: &mut sqlx::MySqlConnection) -> Result<()> {
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS flextide_queue_schema (
            version     BIGINT NOT NULL PRIMARY KEY,
            description VARCHAR(200) NOT NULL,
            applied_at  BIGINT NOT NULL
        ) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4",
    )
    .execute(&mut *conn)
    .await
    .map_err(map_err)?;
    let applied: Vec<i64> = sqlx::query("SELECT version FROM flextide_queue_schema")
        .fetch_all(&mut *conn)
        .await
        .map_err(map_err)?
        .iter()
        .map(|row| row.try_get::<i64, _>(0))
        .collect::<std::result::Result<_, _>>()
        .map_err(map_err)?;
    for migration in MIGRATIONS.iter().filter(|m| !applied.contains(&m.version)) {
        tracing::info!(
            version = migration.version,
            description = migration.description,
            "applying flextide-queue-mysql migration"
        );
        // MySQL commits DDL implicitly, so a migration cannot be one
        // transaction: its statements are idempotent instead, and a
        // half-applied one is simply applied again.
        for statement in statements(migration.sql) {
            sqlx::raw_sql(AssertSqlSafe(statement))
                .execute(&mut *conn)
                .await
                .map_err(map_err)?;
        }
        sqlx::query(concat!(
            "INSERT IGNORE INTO flextide_queue_schema (version, description, applied_at) VALUES (?, ?, ",
            now_ms!(),
            ")"
        ))
        .bind(migration.version)
        .bind(migration.description)
        .execute(&mut *conn)
        .await
        .map_err(map_err)?;
    }
    Ok(())
}

/// Splits a migration file into statements: drops `--` comment lines, splits
/// on `;`. The files are written so that no statement contains a `;`.
fn statements(sql: &str) -> Vec<String> {
    let text: String = sql
        .lines()
        .filter(|line| !line.trim_start().starts_with("--"))
        .map(|line| format!("{line}\n"))
        .collect();
    text.split(';')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migration_files_split_into_create_statements() {
        let statements = statements(MIGRATIONS[0].sql);
        assert_eq!(statements.len(), 2);
        assert!(
            statements
                .iter()
                .all(|s| s.starts_with("CREATE TABLE IF NOT EXISTS"))
        );
    }
}
