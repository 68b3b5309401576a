#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

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
mod settle;
mod sql;
mod stats;

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

/// Removes every message and dead letter of queue `name` from the default
/// schema; returns how many rows went. For tests and tooling.
pub async fn drop_queue(pool: &sqlx::PgPool, name: &str) -> flextide_queue_core::Result<u64> {
    PostgresBackend::from_pool(pool.clone(), PostgresConfig::default())?
        .drop_queue(name)
        .await
}
