//! Per-queue settings every backend understands.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The default [`QueueOptions::dedup_window`]: one hour.
pub const DEFAULT_DEDUP_WINDOW: Duration = Duration::from_secs(3600);

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
    /// How long a [`Message::dedup_id`](crate::Message::dedup_id) is
    /// remembered after its push: another push with the same id within this
    /// window is not enqueued. Backends whose broker fixes the window (SQS
    /// FIFO: 5 minutes) or keeps it per stream (NATS: the stream's
    /// duplicate window, set from this when the library makes the stream)
    /// report the window in effect in
    /// [`Capabilities::dedup_window`](crate::Capabilities::dedup_window).
    /// Default 1 hour.
    pub dedup_window: Duration,
}

impl Default for QueueOptions {
    fn default() -> Self {
        QueueOptions {
            lease: Duration::from_secs(30),
            max_attempts: Some(10),
            dedup_window: DEFAULT_DEDUP_WINDOW,
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

    /// Sets [`QueueOptions::dedup_window`].
    pub fn dedup_window(mut self, window: Duration) -> Self {
        self.dedup_window = window;
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

/// A duration written as a number and a unit: `500ms`, `90s`, `15m`,
/// `1.5h`, `2d`; a bare number is seconds. `None` for anything else.
///
/// ```
/// use std::time::Duration;
/// use flextide_queue_core::parse_duration;
///
/// assert_eq!(parse_duration("90s"), Some(Duration::from_secs(90)));
/// assert_eq!(parse_duration("1.5h"), Some(Duration::from_secs(5400)));
/// assert_eq!(parse_duration("soon"), None);
/// ```
pub fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    let end = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(end);
    let n: f64 = number
        .parse()
        .ok()
        .filter(|n: &f64| n.is_finite() && *n >= 0.0)?;
    let unit_secs = match unit.trim() {
        "ms" => 0.001,
        "" | "s" | "sec" | "secs" => 1.0,
        "m" | "min" | "mins" => 60.0,
        "h" => 3600.0,
        "d" => 86400.0,
        _ => return None,
    };
    Duration::try_from_secs_f64(n * unit_secs).ok()
}
