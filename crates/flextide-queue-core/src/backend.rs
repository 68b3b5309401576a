//! Helpers for backend authors: the checks and encodings every backend
//! applies the same way, so each crate does not write its own.

use std::time::Duration;

use tokio::time::Instant;

pub use crate::message::check_payload;
pub use crate::options::{now_millis, system_time_from_millis};
use crate::{BatchFailure, Headers, QueueError, Receipt, Result};

/// The result of a batch operation from its per-item failures: `Ok(ok)`
/// when there are none, otherwise `PartialBatch` listing them in index order.
pub fn batch_result<T>(backend: &'static str, ok: T, mut failures: Vec<BatchFailure>) -> Result<T> {
    if failures.is_empty() {
        return Ok(ok);
    }
    failures.sort_by_key(|f| f.index);
    Err(QueueError::PartialBatch { backend, failures })
}

/// Builds the receipt of one delivery from the row's key and the delivery's
/// fencing token: `<key>:<token>`. The token must change on every delivery.
pub fn encode_receipt(key: i64, token: &str) -> Receipt {
    Receipt::new(format!("{key}:{token}"))
}

/// Splits a receipt made by [`encode_receipt`] back into key and token, or
/// fails with `InvalidReceipt`.
pub fn decode_receipt<'r>(backend: &'static str, receipt: &'r Receipt) -> Result<(i64, &'r str)> {
    let (key, token) = receipt
        .as_str()
        .split_once(':')
        .ok_or_else(|| QueueError::invalid_receipt(backend, "expected <key>:<token>"))?;
    let key = key
        .parse()
        .map_err(|_| QueueError::invalid_receipt(backend, "key is not a number"))?;
    if token.is_empty() {
        return Err(QueueError::invalid_receipt(backend, "empty token"));
    }
    Ok((key, token))
}

/// A fresh, unguessable fencing token for one delivery.
pub fn new_token() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// Headers as compact JSON text, for backends that store them in a column.
pub fn encode_headers(headers: &Headers) -> String {
    serde_json::to_string(headers).unwrap_or_else(|_| "{}".to_owned())
}

/// Reads headers stored by [`encode_headers`]; empty text is no headers.
pub fn decode_headers(backend: &'static str, text: &str) -> Result<Headers> {
    if text.is_empty() {
        return Ok(Headers::new());
    }
    serde_json::from_str(text).map_err(|e| {
        QueueError::backend_error(
            backend,
            false,
            format!("stored headers are not valid JSON: {e}"),
        )
    })
}

/// Adaptive polling inside a `pop` wait, for backends with no push
/// notification: starts at `min`, doubles after each empty poll up to `max`,
/// and never sleeps past the wait's deadline.
#[derive(Debug, Clone)]
pub struct PollBackoff {
    deadline: Instant,
    next: Duration,
    max: Duration,
}

impl PollBackoff {
    /// A backoff for a wait of `wait` starting now.
    pub fn new(wait: Duration, min: Duration, max: Duration) -> Self {
        PollBackoff {
            deadline: Instant::now() + wait,
            next: min,
            max,
        }
    }

    /// The wait's deadline.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// Sleeps until the next poll. Returns `false`, without sleeping, when
    /// the wait is over.
    pub async fn wait(&mut self) -> bool {
        let now = Instant::now();
        if now >= self.deadline {
            return false;
        }
        let sleep = self.next.min(self.deadline - now);
        tokio::time::sleep(sleep).await;
        self.next = (self.next * 2).min(self.max);
        true
    }

    /// Sleeps until the next poll or until `woken` completes (a
    /// notification), whichever is first. Returns `false` when the wait is over.
    pub async fn wait_or(&mut self, woken: impl std::future::Future<Output = ()>) -> bool {
        let now = Instant::now();
        if now >= self.deadline {
            return false;
        }
        let sleep = self.next.min(self.deadline - now);
        tokio::select! {
            _ = tokio::time::sleep(sleep) => { self.next = (self.next * 2).min(self.max); }
            _ = woken => {}
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn receipt_round_trip() {
        let r = encode_receipt(42, "abc");
        assert_eq!(decode_receipt("x", &r).unwrap(), (42, "abc"));
        for bad in ["", "42", "x:abc", "42:"] {
            assert!(
                matches!(
                    decode_receipt("x", &Receipt::new(bad)),
                    Err(QueueError::InvalidReceipt { .. })
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn headers_round_trip() {
        let mut h = Headers::new();
        h.insert("content-type".into(), "application/json".into());
        assert_eq!(decode_headers("x", &encode_headers(&h)).unwrap(), h);
        assert!(decode_headers("x", "").unwrap().is_empty());
        assert!(decode_headers("x", "{oops").is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn backoff_stops_at_deadline() {
        let start = Instant::now();
        let mut b = PollBackoff::new(
            Duration::from_millis(100),
            Duration::from_millis(10),
            Duration::from_millis(40),
        );
        let mut polls = 0;
        while b.wait().await {
            polls += 1;
        }
        assert_eq!(Instant::now() - start, Duration::from_millis(100));
        assert_eq!(polls, 4); // 10 + 20 + 40 + 30 (cut at the deadline)
    }
}
