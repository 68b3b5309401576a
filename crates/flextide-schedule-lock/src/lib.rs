#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

#[cfg(feature = "postgres")]
mod postgres;
#[cfg(feature = "redis")]
mod redis;

#[cfg(feature = "postgres")]
pub use crate::postgres::PostgresScheduleLock;
#[cfg(feature = "redis")]
pub use crate::redis::RedisScheduleLock;
pub use flextide_worker::{Lease, ScheduleLock};

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Milliseconds since the epoch, the unit both stores keep.
#[allow(dead_code)]
fn millis(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[allow(dead_code)]
fn from_millis(ms: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64)
}
