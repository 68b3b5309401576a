//! Creates the queue tables: an explicit, idempotent step with its own
//! version table, safe to run from several processes at once.

use std::time::Duration;

use flextide_queue_core::{QueueError, Result};
use flextide_queue_sql::Plan;
use sqlx::MySqlPool;

use crate::{
    BACKEND,
    error::{DIALECT, map_err},
};

pub use flextide_queue_sql::Migration;

/// Every schema change of this crate, oldest first.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "create queue tables",
        sql: include_str!("../migrations/0001_create_queue_tables.sql"),
    },
    Migration {
        version: 2,
        name: "derive pri_inv from priority",
        sql: include_str!("../migrations/0002_derived_pri_inv.sql"),
    },
    Migration {
        version: 3,
        name: "unique pushes",
        sql: include_str!("../migrations/0003_dedup.sql"),
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
    migrate_steps(pool).await.map(drop)
}

/// [`migrate`], returning the versions it applied (empty: up to date).
pub(crate) async fn migrate_steps(pool: &MySqlPool) -> Result<Vec<i64>> {
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
    let outcome = flextide_queue_sql::migrate::<sqlx::MySql>(&mut conn, &PLAN).await;
    // A lost connection releases the lock on its own; ignore a failure here.
    let _ = sqlx::query("SELECT RELEASE_LOCK(?)")
        .bind(LOCK_NAME)
        .execute(&mut *conn)
        .await;
    outcome
}

/// The version table and how a version is recorded.
const PLAN: Plan = Plan {
    dialect: &DIALECT,
    migrations: MIGRATIONS,
    create_version_table: "CREATE TABLE IF NOT EXISTS flextide_queue_schema (
            version     BIGINT NOT NULL PRIMARY KEY,
            description VARCHAR(200) NOT NULL,
            applied_at  BIGINT NOT NULL
        ) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4",
    applied: "SELECT version FROM flextide_queue_schema",
    record: concat!(
        "INSERT IGNORE INTO flextide_queue_schema (version, description, applied_at) VALUES (?, ?, ",
        now_ms!(),
        ")"
    ),
    // MySQL takes one statement per call and commits DDL implicitly.
    split: true,
};
