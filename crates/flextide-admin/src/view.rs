//! The JSON shape of a queue's counts, of a message and of a dead letter:
//! what `flextide stats --json`, `flextide peek`, `flextide dlq list` and
//! the dashboard's API print.

use std::time::{SystemTime, UNIX_EPOCH};

use flextide_queue_core::{DeadLetter, Message, QueueProvider, QueueStats};
use serde::Serialize;

/// The counts of one queue, as printed and served.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct StatsView {
    /// The queue's name.
    pub queue: String,
    /// The backend's short name.
    pub backend: &'static str,
    /// Whether the counts are exact (else approximate).
    pub exact: bool,
    /// Messages ready to be delivered.
    pub ready: u64,
    /// Messages leased and not yet settled.
    pub in_flight: u64,
    /// Messages waiting for their delay.
    pub delayed: u64,
    /// Dead letters.
    pub dead_letters: u64,
    /// Age of the oldest ready or in-flight message, in seconds.
    pub oldest_seconds: Option<f64>,
}

impl StatsView {
    /// The view of `stats`, taken from `queue`.
    pub fn new(queue: &dyn QueueProvider, stats: &QueueStats) -> Self {
        StatsView {
            queue: queue.queue_name().to_owned(),
            backend: queue.backend_name(),
            exact: queue.capabilities().exact_stats,
            ready: stats.depth,
            in_flight: stats.in_flight,
            delayed: stats.delayed,
            dead_letters: stats.dead_lettered,
            oldest_seconds: stats.oldest_age.map(|a| a.as_secs_f64()),
        }
    }

    /// Messages that are still to be handled: ready, in flight or delayed.
    pub fn live(&self) -> u64 {
        self.ready + self.in_flight + self.delayed
    }
}

/// The counts of `queue`.
pub async fn stats(queue: &dyn QueueProvider) -> Result<StatsView, crate::Error> {
    let s = queue.stats().await?;
    Ok(StatsView::new(queue, &s))
}

fn millis(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default()
}

/// A message as one JSON object: the payload as text (`payload`) when it
/// is UTF-8, as hex (`payload_hex`) otherwise.
pub fn message_json(message: &Message) -> serde_json::Value {
    let mut v = serde_json::json!({
        "id": message.id.as_str(),
        "headers": message.headers,
        "priority": message.priority,
        "ordering_key": message.ordering_key,
        "enqueued_at": message.enqueued_at.map(millis),
    });
    match std::str::from_utf8(&message.payload) {
        Ok(text) => v["payload"] = text.into(),
        Err(_) => {
            let hex: String = message.payload.iter().map(|b| format!("{b:02x}")).collect();
            v["payload_hex"] = hex.into();
        }
    }
    v
}

/// A dead letter as one JSON object: the message's fields plus `reason`,
/// `attempts` and `dead_lettered_at_ms`.
pub fn dead_letter_json(dead: &DeadLetter) -> serde_json::Value {
    let mut line = message_json(&dead.message);
    line["reason"] = dead.reason.clone().into();
    line["attempts"] = dead.attempts.into();
    line["dead_lettered_at_ms"] = millis(dead.dead_lettered_at).into();
    line
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    #[test]
    fn text_and_binary_payloads() {
        let text = message_json(&Message::new(Bytes::from_static(b"{\"a\":1}")));
        assert_eq!(text["payload"], "{\"a\":1}");
        assert!(text.get("payload_hex").is_none());
        let binary = message_json(&Message::new(Bytes::from_static(&[0xff, 0x00, 0x10])));
        assert_eq!(binary["payload_hex"], "ff0010");
        assert!(binary.get("payload").is_none());
    }

    #[test]
    fn dead_letter_fields() {
        let d = DeadLetter::new(
            Message::new(Bytes::from_static(b"x")),
            "boom",
            3,
            UNIX_EPOCH + std::time::Duration::from_millis(1500),
        );
        let v = dead_letter_json(&d);
        assert_eq!(v["reason"], "boom");
        assert_eq!(v["attempts"], 3);
        assert_eq!(v["dead_lettered_at_ms"], 1500);
        assert_eq!(v["payload"], "x");
    }
}
