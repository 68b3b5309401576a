//! Schema migrations, tracked in our own version table.

use flextide_queue_core::Result;
use sqlx::{AssertSqlSafe, PgPool};

use flextide_queue_sql::Plan;

use crate::{
    PostgresConfig,
    error::{DIALECT, map_err},
};

pub use flextide_queue_sql::Migration;

/// Every migration, oldest first.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "init",
        sql: include_str!("../migrations/0001_init.sql"),
    },
    Migration {
        version: 2,
        name: "plain_inserts",
        sql: include_str!("../migrations/0002_plain_inserts.sql"),
    },
    Migration {
        version: 3,
        name: "dedup",
        sql: include_str!("../migrations/0003_dedup.sql"),
    },
    Migration {
        version: 4,
        name: "claim_indexes",
        sql: include_str!("../migrations/0004_claim_indexes.sql"),
    },
];

/// The version table and how a version is recorded.
const PLAN: Plan = Plan {
    dialect: &DIALECT,
    migrations: MIGRATIONS,
    create_version_table: "CREATE TABLE IF NOT EXISTS flextide_queue_schema_version (
        version    BIGINT PRIMARY KEY,
        name       TEXT NOT NULL,
        applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
    )",
    applied: "SELECT version FROM flextide_queue_schema_version",
    record: "INSERT INTO flextide_queue_schema_version (version, name) VALUES ($1, $2)",
    split: false,
};

/// Key of the transaction-scoped advisory lock that serialises concurrent
/// `migrate` calls ("flextide" in ASCII).
const MIGRATE_LOCK: i64 = 0x666c_6578_7469_6465;

/// Creates or upgrades the queue tables in the default schema (the
/// connection's `search_path`). Idempotent and safe to call from several
/// processes at once.
///
/// Versions are recorded in `flextide_queue_schema_version`, not in sqlx's
/// `_sqlx_migrations`, so it never clashes with your own sqlx migrations.
pub async fn migrate(pool: &PgPool) -> Result<()> {
    migrate_with(pool, &PostgresConfig::default())
        .await
        .map(drop)
}

/// [`migrate`] honouring [`PostgresConfig::schema`]. Returns the versions
/// applied by this call (empty when the schema was up to date).
pub async fn migrate_with(pool: &PgPool, config: &PostgresConfig) -> Result<Vec<i64>> {
    config.validate()?;
    // Detached: sqlx's BEGIN is not cancel-safe (a caller that gives up
    // during it would leave a pooled connection inside a transaction sqlx
    // does not know of); run to the end, the migration commits or rolls
    // back whatever happens to the caller.
    let (pool, schema) = (pool.clone(), config.schema.clone());
    flextide_queue_sql::detach(crate::BACKEND, async move {
        let mut tx = pool.begin().await.map_err(map_err)?;
        // Held until commit: concurrent callers wait here, then find the work done.
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(MIGRATE_LOCK)
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
        if let Some(schema) = &schema {
            // The schema name was validated as a plain identifier.
            sqlx::raw_sql(AssertSqlSafe(format!(
                "CREATE SCHEMA IF NOT EXISTS \"{schema}\"; SET LOCAL search_path TO \"{schema}\""
            )))
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
        }
        let applied = flextide_queue_sql::migrate::<sqlx::Postgres>(&mut *tx, &PLAN).await?;
        tx.commit().await.map_err(map_err)?;
        Ok(applied)
    })
    .await
}
