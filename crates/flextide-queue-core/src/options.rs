//! Per-queue settings every backend understands.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Settings of one queue, given when a backend opens it.
///
/// ```
/// # use std::time::Duration;
/// # use flextide_queue_core::QueueOptions;
/// let opts = QueueOptions::default().lease(Duration::from_secs(60)).max_attempts(Some(5));
/// assert_eq!(opts.lease, Duration::from_secs(60));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct QueueOptions {
    /// How long a popped message stays invisible to other consumers (the
    /// visibility timeout) before it is delivered again. Default 30 s.
    pub lease: Duration,
    /// Deliveries after which a message goes to the dead letters instead of
    /// being delivered again, with the reason "max attempts exceeded".
    /// `None` never dead-letters on its own. Default `Some(10)`.
    pub max_attempts: Option<u32>,
}

impl Default for QueueOptions {
    fn default() -> Self {
        QueueOptions {
            lease: Duration::from_secs(30),
            max_attempts: Some(10),
        }
    }
}

impl QueueOptions {
    /// Sets [`QueueOptions::lease`].
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    /// Sets [`QueueOptions::max_attempts`].
    pub fn max_attempts(mut self, max_attempts: Option<u32>) -> Self {
        self.max_attempts = max_attempts;
        self
    }
}

/// Milliseconds since the Unix epoch on the system clock: the time unit the
/// SQL and Redis backends store.
pub fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The inverse of [`now_millis`]: a stored timestamp as a `SystemTime`.
pub fn system_time_from_millis(ms: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64)
}
