//! A lease-based leader for queues that cannot deduplicate: only the
//! instance holding a schedule's lock pushes its slots.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, SystemTime},
};

use async_trait::async_trait;

use crate::BoxError;

/// A held lease on one schedule's lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// Fencing token: grows with every new holder, so a write by a holder
    /// whose lease ran out (paused, partitioned) is refused by
    /// [`ScheduleLock::record`].
    pub token: u64,
    /// The last slot moment recorded under this lock by any holder, so a new
    /// holder continues where the previous one stopped.
    pub handled: Option<SystemTime>,
}

/// A lease-based lock per schedule, for queues without dedup.
///
/// Implement it over storage every instance shares and that expires
/// entries by itself: a SQL row or advisory lock with a lease time, a
/// Redis key set with `SET key holder NX PX ttl` and an `INCR`'d fencing
/// counter. flextide-worker has no driver dependency, so it ships only
/// [`MemoryScheduleLock`] (one process).
///
/// With a lock, a slot is pushed at least once and, while leadership does
/// not change, exactly once; when it changes, a slot the old holder pushed
/// but could not [`record`](ScheduleLock::record) before its lease ran out
/// (it crashed between the two) is pushed again by the new holder.
#[async_trait]
pub trait ScheduleLock: Send + Sync + std::fmt::Debug {
    /// Takes the lock `key` for `holder`, or renews it if `holder` already
    /// has it, for `ttl` from now. `Ok(None)` when another holder has it.
    /// A renewal keeps the token; a new holder gets a larger one.
    async fn acquire(
        &self,
        key: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<Option<Lease>, BoxError>;

    /// Records that the holder of `lease` handled the slots up to `handled`.
    /// `Ok(false)` (nothing written) when the lease is no longer the
    /// current one.
    async fn record(&self, key: &str, lease: &Lease, handled: SystemTime)
    -> Result<bool, BoxError>;

    /// Gives the lock up if `holder` has it (at shutdown, so another
    /// instance takes over without waiting for the lease to run out).
    async fn release(&self, key: &str, holder: &str) -> Result<(), BoxError>;
}

#[derive(Debug)]
struct Entry {
    holder: String,
    until: tokio::time::Instant,
    token: u64,
    handled: Option<SystemTime>,
}

/// A [`ScheduleLock`] inside one process (tests, or several schedulers in
/// one program). Leases run on Tokio's clock.
#[derive(Debug, Default)]
pub struct MemoryScheduleLock {
    entries: Mutex<HashMap<String, Entry>>,
}

impl MemoryScheduleLock {
    /// An empty lock table.
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl ScheduleLock for MemoryScheduleLock {
    async fn acquire(
        &self,
        key: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<Option<Lease>, BoxError> {
        let now = tokio::time::Instant::now();
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let entry = entries.entry(key.to_owned()).or_insert(Entry {
            holder: String::new(),
            until: now,
            token: 0,
            handled: None,
        });
        if entry.holder != holder {
            if entry.until > now {
                return Ok(None);
            }
            entry.holder = holder.to_owned();
            entry.token += 1;
        }
        entry.until = now + ttl;
        Ok(Some(Lease {
            token: entry.token,
            handled: entry.handled,
        }))
    }

    async fn record(
        &self,
        key: &str,
        lease: &Lease,
        handled: SystemTime,
    ) -> Result<bool, BoxError> {
        let now = tokio::time::Instant::now();
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        match entries.get_mut(key) {
            Some(entry) if entry.token == lease.token && entry.until > now => {
                entry.handled = Some(handled);
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn release(&self, key: &str, holder: &str) -> Result<(), BoxError> {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(entry) = entries.get_mut(key)
            && entry.holder == holder
        {
            entry.until = tokio::time::Instant::now();
            entry.holder.clear();
        }
        Ok(())
    }
}
