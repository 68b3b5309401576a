#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

/// The database clock in milliseconds since the Unix epoch, as an SQL
/// expression (constant within one statement).
macro_rules! now_ms {
    () => {
        "CAST(UNIX_TIMESTAMP(NOW(3)) * 1000 AS SIGNED)"
    };
}

/// Columns that rebuild a `Message`, in this order, from either table.
macro_rules! message_columns {
    () => {
        "id, payload, headers, priority, ordering_key, enqueued_at, dedup_id"
    };
}

mod admin;
mod claim;
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
mod tx;

pub use connector::MySqlConnector;
pub use migrate::{MIGRATIONS, Migration, VERSION_TABLE, migrate};
pub use queue::{DEFAULT_MAX_PAYLOAD_BYTES, MAX_BATCH, MySqlQueue};
pub use stats::drop_queue;

// Re-exported so users need no direct dependency to build pools and
// transactions for `from_pool` and `push_in_tx`.
pub use flextide_queue_core as core;
pub use flextide_queue_core::{
    Capabilities, Connector, DeadLetter, Delivery, Message, QueueError, QueueOptions,
    QueueProvider, QueueStats, Receipt, Replay,
};
pub use sqlx;
pub use sqlx::mysql::{MySql, MySqlPool, MySqlPoolOptions};

/// The library's statement texts, so the bench's raw sqlx baseline runs the
/// very statements the library runs. Not part of the API.
#[doc(hidden)]
pub mod raw_sql {
    pub use crate::sql::{
        CLAIM_SQL, INSERT_PREFIX, INSERT_ROW, SWEEP_PROBE_SQL, delete_seqs_sql, lease_sql,
        lock_for_delete_sql, placeholders,
    };
}

/// The backend's short name, used in errors, logs and metrics.
pub const BACKEND: &str = "mysql";

/// The URL schemes [`MySqlConnector`] opens.
pub const SCHEMES: &[&str] = &["mysql", "mariadb"];
