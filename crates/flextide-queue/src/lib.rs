#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

mod config;
mod open;
mod registry;

pub use config::{Config, DEFAULT_COMPRESSION_THRESHOLD, DEFAULT_DATABASE_URL, DEFAULT_QUEUE_NAME};
pub use flextide_queue_core::*;
pub use open::{connect, from_env};
pub use registry::{IN_TREE, Registry, open, register, registry};

#[cfg(feature = "zstd")]
pub use flextide_queue_compression as compression;
#[cfg(feature = "kafka")]
pub use flextide_queue_kafka as kafka;
#[cfg(feature = "memory")]
pub use flextide_queue_memory as memory;
#[cfg(feature = "mysql")]
pub use flextide_queue_mysql as mysql;
#[cfg(feature = "nats")]
pub use flextide_queue_nats as nats;
#[cfg(feature = "postgres")]
pub use flextide_queue_postgres as postgres;
#[cfg(feature = "rabbitmq")]
pub use flextide_queue_rabbitmq as rabbitmq;
#[cfg(feature = "redis")]
pub use flextide_queue_redis as redis;
#[cfg(feature = "sqlite")]
pub use flextide_queue_sqlite as sqlite;
#[cfg(feature = "sqs")]
pub use flextide_queue_sqs as sqs;
