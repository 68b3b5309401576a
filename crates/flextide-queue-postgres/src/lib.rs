#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

mod admin;
mod backend;
mod claim;
mod config;
mod connector;
mod dead;
mod error;
mod migrate;
mod notify;
mod push;
mod queue;
mod release;
mod settle;
mod sql;
mod stats;
mod vacuum;

pub use backend::PostgresBackend;
pub use config::{DEFAULT_CHANNEL, DEFAULT_MAX_PAYLOAD_BYTES, PostgresConfig};
pub use connector::PostgresConnector;
pub use migrate::{MIGRATIONS, Migration, migrate, migrate_with};
pub use queue::PostgresQueue;

// The core types this crate hands out, so users need no direct dependency.
pub use flextide_queue_core::{
    Capabilities, Connector, DeadLetter, Delivery, Message, QueueError, QueueOptions,
    QueueProvider, QueueStats, Receipt, Replay,
};

/// The sqlx this crate is built on, so your pool and transactions match it.
pub use sqlx;

/// This backend's short name in errors, logs and metrics.
pub const BACKEND: &str = "postgres";

/// The URL schemes [`PostgresConnector`] opens.
pub const SCHEMES: &[&str] = &["postgres", "postgresql"];

/// The library's hot-path statement texts for the default configuration
/// (no schema, durable settles), so the bench's raw sqlx baseline runs the
/// very statements the library runs. Not part of the API.
#[doc(hidden)]
pub mod raw_sql {
    use crate::{PostgresConfig, sql::Statements};

    fn default_statements() -> Statements {
        let config = PostgresConfig::default();
        Statements::new(&config.table_prefix(), config.durable_settle)
    }

    /// $1 queue, $2 id, $3 payload, $4 headers, $5 priority, $6 ordering
    /// key, $7 delay ms, $8 channel.
    pub fn push() -> String {
        default_statements().push.to_string()
    }

    /// `push` with arrays from $2 to $7, for one batch.
    pub fn push_batch() -> String {
        default_statements().push_batch.to_string()
    }

    /// $1 queue, $2 max attempts, $3 reason, $4 limit, $5 lease ms,
    /// $6 token, $7 foreign id prefix; returns `seq`, `payload`, ….
    pub fn claim() -> String {
        default_statements().claim.to_string()
    }

    /// What opens the claim's transaction (the library claims in one,
    /// with sorts, bitmap scans and sequential scans off, so the claim walks its indexes
    /// whatever the table's statistics say).
    pub fn claim_begin() -> &'static str {
        crate::claim::CLAIM_BEGIN
    }

    /// $1 seqs, $2 tokens, $3 queue; returns the `seq` and `token` deleted.
    pub fn delete_batch() -> String {
        default_statements().delete_batch.to_string()
    }
}

/// Removes every message and dead letter of queue `name` from the default
/// schema; returns how many rows went. For tests and tooling.
pub async fn drop_queue(pool: &sqlx::PgPool, name: &str) -> flextide_queue_core::Result<u64> {
    PostgresBackend::from_pool(pool.clone(), PostgresConfig::default())?
        .drop_queue(name)
        .await
}
