//! Settings of the RabbitMQ backend.

use std::time::Duration;

/// The kind of RabbitMQ queue the backend declares for a queue's messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum QueueType {
    /// Replicated, Raft-based queue (the default): survives node loss, and
    /// the broker's `x-delivery-limit` guards against consumers that keep
    /// crashing on a message.
    #[default]
    Quorum,
    /// A classic durable queue: cheaper, single node, no delivery limit.
    Classic,
}

impl QueueType {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            QueueType::Quorum => "quorum",
            QueueType::Classic => "classic",
        }
    }
}

/// Tuning of a [`RabbitMq`](crate::RabbitMq) client. `Default` suits most uses.
///
/// The queue type and delivery limit become queue arguments: every process
/// opening the same queue must use the same values, or the broker refuses
/// the declaration (`Configuration` error).
#[derive(Debug, Clone)]
pub struct RabbitMqConfig {
    /// Type of the main queue (default quorum). Delay holding queues follow
    /// it (quorum ones dead-letter back at least once); the dead-letter
    /// queue is a classic durable queue either way.
    pub queue_type: QueueType,
    /// Quorum queues only: after this many broker-side returns (a consumer's
    /// channel closed while holding the message, or an unclaimed prefetched
    /// message given back) the broker moves the message to the dead letters.
    /// A guard against poison messages that crash their consumer. Default 50.
    pub delivery_limit: Option<u32>,
    /// Largest payload accepted by `push` (default 8 MiB; the broker's own
    /// limit, `max_message_size`, is 128 MiB by default).
    pub max_payload_bytes: usize,
    /// Largest batch of one `pop_batch` (default 500).
    pub max_batch: usize,
    /// Upper bound of the consumer prefetch (unacknowledged deliveries held
    /// by one handle, leased or buffered). Default 1000.
    pub max_prefetch: u16,
    /// How long the consumer stays subscribed after the last waiting `pop`
    /// ended, so a worker's next `pop` finds messages already buffered.
    /// Default 50 ms.
    pub linger: Duration,
    /// How long a prefetched message no caller has claimed stays buffered
    /// before it is given back to the broker for other consumers.
    /// Default 250 ms.
    pub hold: Duration,
    /// How long a delivery whose lease ended stays with this handle before it
    /// is republished for every consumer. Meanwhile its old receipt still
    /// settles it and this handle's next `pop` redelivers it (attempt + 1).
    /// Default 2 s.
    pub expired_grace: Duration,
    /// Deadline of one broker round trip (connect, declare, publisher
    /// confirm). Default 30 s.
    pub operation_timeout: Duration,
}

impl Default for RabbitMqConfig {
    fn default() -> Self {
        RabbitMqConfig {
            queue_type: QueueType::Quorum,
            delivery_limit: Some(50),
            max_payload_bytes: 8 * 1024 * 1024,
            max_batch: 500,
            max_prefetch: 1000,
            linger: Duration::from_millis(50),
            hold: Duration::from_millis(250),
            expired_grace: Duration::from_secs(2),
            operation_timeout: Duration::from_secs(30),
        }
    }
}

impl RabbitMqConfig {
    /// Sets [`RabbitMqConfig::queue_type`].
    pub fn queue_type(mut self, queue_type: QueueType) -> Self {
        self.queue_type = queue_type;
        self
    }

    /// Sets [`RabbitMqConfig::delivery_limit`].
    pub fn delivery_limit(mut self, limit: Option<u32>) -> Self {
        self.delivery_limit = limit;
        self
    }

    /// Sets [`RabbitMqConfig::max_payload_bytes`].
    pub fn max_payload_bytes(mut self, max: usize) -> Self {
        self.max_payload_bytes = max;
        self
    }

    /// Sets [`RabbitMqConfig::operation_timeout`].
    pub fn operation_timeout(mut self, timeout: Duration) -> Self {
        self.operation_timeout = timeout;
        self
    }
}
