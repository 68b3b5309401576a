//! Settings of the NATS backend.

use std::time::Duration;

use flextide_queue_core::{QueueError, Result};

use crate::BACKEND;

/// How JetStream stores a queue's streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Storage {
    /// On disk (the default): survives a server restart.
    #[default]
    File,
    /// In memory: lost when the server stops.
    Memory,
}

/// Tuning of a [`Nats`](crate::Nats) client. `Default` suits most uses.
///
/// Storage and replicas are stream settings: they apply when a queue's
/// streams are created, and are left as they are on streams that exist.
#[derive(Debug, Clone)]
pub struct NatsConfig {
    /// Where the streams keep messages (default on disk).
    pub storage: Storage,
    /// Stream replicas on a cluster (default 1; at most 5).
    pub replicas: usize,
    /// Largest batch of one `pop_batch` (one pull request) and one
    /// `push_batch` / `delete_batch` window (default 500).
    pub max_batch: usize,
    /// Deadline of one server round trip (connect, stream and consumer
    /// management, publish acknowledgements, acks). Default 10 s.
    pub operation_timeout: Duration,
    /// The duplicate window of the dead-letter stream (a dead letter
    /// copied again after a failed `+TERM` is stored once). Default 2
    /// minutes. The queue's own stream takes
    /// [`QueueOptions::dedup_window`](flextide_queue_core::QueueOptions::dedup_window).
    pub duplicate_window: Duration,
}

impl Default for NatsConfig {
    fn default() -> Self {
        NatsConfig {
            storage: Storage::File,
            replicas: 1,
            max_batch: 500,
            operation_timeout: Duration::from_secs(10),
            duplicate_window: Duration::from_secs(120),
        }
    }
}

impl NatsConfig {
    /// Sets [`NatsConfig::storage`].
    pub fn storage(mut self, storage: Storage) -> Self {
        self.storage = storage;
        self
    }

    /// Sets [`NatsConfig::replicas`].
    pub fn replicas(mut self, replicas: usize) -> Self {
        self.replicas = replicas;
        self
    }

    /// Sets [`NatsConfig::max_batch`].
    pub fn max_batch(mut self, max_batch: usize) -> Self {
        self.max_batch = max_batch;
        self
    }

    /// Sets [`NatsConfig::operation_timeout`].
    pub fn operation_timeout(mut self, timeout: Duration) -> Self {
        self.operation_timeout = timeout;
        self
    }

    pub(crate) fn check(&self) -> Result<()> {
        if self.max_batch == 0 {
            return Err(QueueError::configuration(
                BACKEND,
                "max_batch must be at least 1",
            ));
        }
        if !(1..=5).contains(&self.replicas) {
            return Err(QueueError::configuration(
                BACKEND,
                "replicas must be between 1 and 5",
            ));
        }
        if self.operation_timeout.is_zero() {
            return Err(QueueError::configuration(
                BACKEND,
                "operation_timeout must be above zero",
            ));
        }
        Ok(())
    }
}
