#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

mod backend;
mod codec;
mod config;
mod conn;
mod connector;
mod error;
mod keys;
mod queue;
mod queues;
mod scripts;

pub use backend::RedisBackend;
pub use config::{PREFIX_VAR, RedisConfig, URL_VAR};
pub use connector::RedisConnector;
pub use queue::{MAX_BATCH, RedisQueue};

// Re-exported so users need no other dependency for the common types.
pub use flextide_queue_core::{
    Capabilities, Connector, DeadLetter, Delivery, Message, QueueError, QueueOptions,
    QueueProvider, QueueStats, Receipt, Replay,
};

/// The backend's short name in errors, logs and metrics.
pub const BACKEND: &str = "redis";

/// The URL schemes this backend opens (what [`RedisConnector`] accepts).
/// `rediss` needs the redis crate built with TLS, which this crate does not
/// enable yet: such a URL fails with a `Configuration` error saying so.
pub const SCHEMES: &[&str] = &["redis", "rediss"];
