#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

mod admin;
mod builder;
mod claim;
mod connect;
mod connector;
mod dead;
mod error;
mod migrate;
mod push;
mod queue;
mod release;
mod settle;
mod sql;
mod stats;
mod vacuum;

pub use connect::{PoolSettings, connect_pool, connect_pool_with};
pub use connector::SqliteConnector;
// The core types this crate hands out, so users need no direct dependency.
pub use builder::SqliteQueueBuilder;
pub use flextide_queue_core::{
    Capabilities, Connector, DeadLetter, Delivery, Message, QueueError, QueueOptions,
    QueueProvider, QueueStats, Receipt, Replay,
};
pub use migrate::{
    MIGRATIONS, Migration, SCHEMA_VERSION, current_version, drop_queue, list_queues, migrate,
};
/// The sqlx crate this backend is built on, so you can name its types
/// (transactions, pool options) without depending on it yourself.
pub use queue::SqliteQueue;
pub use sqlx;
pub use sqlx::sqlite::{SqliteConnection, SqlitePool, SqliteSynchronous};

/// The library's statement texts, so the bench's raw sqlx baseline runs the
/// very statements the library runs. Not part of the API.
#[doc(hidden)]
pub mod raw_sql {
    pub use crate::sql::{CLAIM_SQL, INSERT_HEAD, INSERT_SQL, SWEEP_CHECK_SQL, delete_batch};
}

/// The backend's name in errors, logs and metrics.
pub const BACKEND: &str = "sqlite";

/// The URL schemes [`SqliteConnector`] opens.
pub const SCHEMES: &[&str] = &["sqlite"];

/// What the SQLite backend supports: everything, unique pushes included
/// (each queue reports its `dedup_window`), with no limit of its own. SQLite refuses values over SQLITE_MAX_LENGTH (1 GB
/// by default) with InvalidMessage, and batches are split below its
/// bound-variable limit internally.
pub const CAPABILITIES: Capabilities = flextide_queue_sql::CAPABILITIES;
