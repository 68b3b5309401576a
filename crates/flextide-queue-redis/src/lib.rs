#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

mod config;
mod error;
mod queue;
mod scripts;

pub use config::{PREFIX_VAR, RedisConfig, URL_VAR};
pub use queue::{MAX_BATCH, RedisBackend, RedisQueue};

// Re-exported so users need no other dependency for the common types.
pub use flextide_queue_core::{Message, QueueOptions, QueueProvider};

/// The backend's short name in errors, logs and metrics.
pub const BACKEND: &str = "redis";
