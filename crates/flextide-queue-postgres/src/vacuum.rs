//! Whether PostgreSQL will vacuum the queue tables.
//!
//! A queue table is written and deleted from all day: every ack leaves a
//! dead tuple that only VACUUM reclaims. The migration gives the tables
//! aggressive per-table autovacuum settings, but those do nothing when the
//! server's `autovacuum` is off (or `autovacuum_enabled = false` is set on a
//! table): the table and its indexes then bloat and claims slow down
//! (about 100 messages/s on a 200,000-message backlog, half a million dead
//! tuples after 150,000 messages). [`PostgresBackend::connect`] checks this
//! and logs a warning once per process; the crate README says what to do.

use std::sync::atomic::{AtomicBool, Ordering};

use flextide_queue_core::Result;
use sqlx::PgPool;

use crate::{PostgresBackend, error::map_err};

/// The warning was logged in this process.
static WARNED: AtomicBool = AtomicBool::new(false);

/// The queue tables, unqualified.
const TABLES: [&str; 3] = [
    "flextide_queue_messages",
    "flextide_queue_dead_letters",
    "flextide_queue_dedup",
];

impl PostgresBackend {
    /// Why autovacuum will not clean the queue tables, one line per reason
    /// (the server's `autovacuum` is off; a table has
    /// `autovacuum_enabled = false`), or nothing when it will. See the crate
    /// README for what to do about it.
    pub async fn autovacuum_problems(&self) -> Result<Vec<String>> {
        problems(&self.inner.pool, &self.inner.config.table_prefix()).await
    }

    /// Logs [`PostgresBackend::autovacuum_problems`] as a warning, once per
    /// process; a failure to look is logged at debug level and ignored.
    pub(crate) async fn warn_if_not_vacuumed(&self) {
        if WARNED.load(Ordering::Relaxed) {
            return;
        }
        match self.autovacuum_problems().await {
            Ok(problems) if !problems.is_empty() => {
                if !WARNED.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        problems = %problems.join("; "),
                        "postgres: autovacuum will not clean the queue tables, which will bloat and \
                         slow down as messages are acknowledged; turn autovacuum on, or run \
                         `VACUUM (ANALYZE) flextide_queue_messages` regularly \
                         (see the flextide-queue-postgres README)"
                    );
                }
            }
            Ok(_) => {}
            Err(e) => tracing::debug!(error = %e, "postgres: could not check autovacuum"),
        }
    }
}

async fn problems(pool: &PgPool, prefix: &str) -> Result<Vec<String>> {
    let mut out = Vec::new();
    let server: String = sqlx::query_scalar("SELECT current_setting('autovacuum')")
        .fetch_one(pool)
        .await
        .map_err(map_err)?;
    if server != "on" {
        out.push(format!("the server's autovacuum setting is {server}"));
    }
    for table in TABLES {
        let qualified = format!("{prefix}{table}");
        let options: Option<Vec<String>> =
            sqlx::query_scalar("SELECT reloptions FROM pg_class WHERE oid = to_regclass($1)")
                .bind(&qualified)
                .fetch_optional(pool)
                .await
                .map_err(map_err)?
                .flatten();
        let off = options.unwrap_or_default().iter().any(|o| {
            o.strip_prefix("autovacuum_enabled=").is_some_and(|v| {
                matches!(
                    v.to_ascii_lowercase().as_str(),
                    "false" | "off" | "0" | "no"
                )
            })
        });
        if off {
            out.push(format!("{qualified} has autovacuum_enabled = false"));
        }
    }
    Ok(out)
}
