//! Helpers for backend authors: the checks and encodings every backend
//! applies the same way, so each crate does not write its own.

use std::{fmt, future::Future, time::Duration};

use tokio::{sync::Notify, time::Instant};

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

/// The dead-letter reason of a message that reached the queue's
/// [`max_attempts`](crate::QueueOptions::max_attempts): every backend gives
/// this exact text, so operators and tests can match on it.
pub fn max_attempts_reason(max_attempts: u32) -> String {
    format!("max attempts exceeded ({max_attempts})")
}

/// The prefix of the dead-letter reason of an entry that could not be
/// decoded into a message (contract clause 12).
pub const UNDECODABLE: &str = "undecodable:";

/// The dead-letter reason of an entry that could not be decoded:
/// `undecodable: <what is wrong>`. A backend that meets such an entry in a
/// pop moves it to the dead letters with this reason, by itself, and goes on
/// with the rest of the batch: the pop does not fail and no other message's
/// attempt is counted.
pub fn undecodable_reason(what: impl fmt::Display) -> String {
    format!("{UNDECODABLE} {what}")
}

/// A stable id for a message another producer wrote without a Flextide id
/// (contract clause 12): `<backend>-<native>`, where `native` is the
/// broker's own identifier of the entry (a row key, a stream entry id, an
/// SQS message id). The same entry gets the same id on every delivery.
pub fn foreign_id(backend: &str, native: impl fmt::Display) -> crate::MessageId {
    crate::MessageId::new(format!("{backend}-{native}"))
}

/// The one sorting of a popped batch into what decoded and what did not,
/// so a backend never fails a pop (or burns other messages' attempts)
/// because one entry is foreign or malformed. `K` is whatever the backend
/// needs to dead-letter the entry (its key and fencing token).
#[derive(Debug)]
pub struct Decoded<T, K> {
    /// The entries that decoded, in batch order.
    pub ok: Vec<T>,
    /// The entries that did not, with their `undecodable: …` reason.
    pub undecodable: Vec<(K, String)>,
}

impl<T, K> Decoded<T, K> {
    /// Sorts `entries`: each is the decoded value or, as `Err((key, what))`,
    /// what went wrong; the reason is built with [`undecodable_reason`].
    pub fn sort<W: fmt::Display>(entries: impl IntoIterator<Item = Result<T, (K, W)>>) -> Self {
        let mut ok = Vec::new();
        let mut undecodable = Vec::new();
        for entry in entries {
            match entry {
                Ok(v) => ok.push(v),
                Err((key, what)) => undecodable.push((key, undecodable_reason(what))),
            }
        }
        Decoded { ok, undecodable }
    }
}

/// The wait of a `pop` on a backend with an in-process wake-up (a
/// [`Notify`] that pushes, settles and listeners signal) and polling as the
/// fallback: registers for the wake-up *before* each look, so a push between
/// the look and the sleep is never missed, then sleeps until the wake-up,
/// the next poll of `backoff`, or the wait's end.
///
/// `look` claims what is available now (it may shorten the next sleep with
/// [`PollBackoff::wake_by`], e.g. to a delayed message's due time). A wait of
/// zero looks exactly once.
pub async fn wait_for_deliveries<T, F, Fut>(
    wake: &Notify,
    mut backoff: PollBackoff,
    mut look: F,
) -> crate::Result<Vec<T>>
where
    F: FnMut(&mut PollBackoff) -> Fut,
    Fut: Future<Output = crate::Result<Vec<T>>>,
{
    loop {
        let woken = wake.notified();
        tokio::pin!(woken);
        woken.as_mut().enable();
        let got = look(&mut backoff).await?;
        if !got.is_empty() {
            return Ok(got);
        }
        if !backoff.wait_or(woken).await {
            return Ok(got);
        }
    }
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
    wake_by: Option<Instant>,
}

impl PollBackoff {
    /// A backoff for a wait of `wait` starting now.
    pub fn new(wait: Duration, min: Duration, max: Duration) -> Self {
        PollBackoff {
            deadline: Instant::now() + wait,
            next: min,
            max,
            wake_by: None,
        }
    }

    /// Makes the next sleep end no later than `at` (a delayed message
    /// falling due, a lease ending), once.
    pub fn wake_by(&mut self, at: Instant) {
        self.wake_by = Some(self.wake_by.map_or(at, |w| w.min(at)));
    }

    fn next_sleep(&mut self, now: Instant) -> Duration {
        let mut sleep = self.next.min(self.deadline - now);
        if let Some(at) = self.wake_by.take() {
            sleep = sleep.min(at.saturating_duration_since(now));
        }
        sleep
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
        let sleep = self.next_sleep(now);
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
        let sleep = self.next_sleep(now);
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

    #[test]
    fn reasons() {
        assert_eq!(max_attempts_reason(3), "max attempts exceeded (3)");
        assert!(undecodable_reason("bad headers").starts_with(UNDECODABLE));
        assert_eq!(foreign_id("redis", "17-0").as_str(), "redis-17-0");
        let d: Decoded<u32, &str> = Decoded::sort([Ok(1), Err(("k", "oops")), Ok(2)]);
        assert_eq!(d.ok, vec![1, 2]);
        assert_eq!(d.undecodable, vec![("k", "undecodable: oops".to_owned())]);
    }

    #[tokio::test(start_paused = true)]
    async fn wait_loop_sees_a_wake_up_between_look_and_sleep() {
        let wake = std::sync::Arc::new(Notify::new());
        let looks = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
        let start = Instant::now();
        let got = wait_for_deliveries(
            &wake,
            PollBackoff::new(
                Duration::from_secs(60),
                Duration::from_secs(30),
                Duration::from_secs(30),
            ),
            |_| {
                let (wake, looks) = (wake.clone(), looks.clone());
                async move {
                    // The first look finds nothing, and a push lands right
                    // after it, before the loop sleeps: it must be seen.
                    if looks.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
                        wake.notify_waiters();
                        Ok(Vec::new())
                    } else {
                        Ok(vec![7])
                    }
                }
            },
        )
        .await
        .unwrap();
        assert_eq!(got, vec![7]);
        assert_eq!(
            Instant::now(),
            start,
            "woken at once, not after a poll interval"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn wait_loop_wakes_by_a_due_time_and_zero_wait_looks_once() {
        let wake = Notify::new();
        let start = Instant::now();
        let mut looks = 0;
        let got: Vec<u32> = wait_for_deliveries(
            &wake,
            PollBackoff::new(
                Duration::from_secs(60),
                Duration::from_secs(30),
                Duration::from_secs(30),
            ),
            |b| {
                looks += 1;
                let due = start + Duration::from_secs(2);
                let now = Instant::now();
                if now < due {
                    b.wake_by(due);
                }
                async move { Ok(if now >= due { vec![1] } else { Vec::new() }) }
            },
        )
        .await
        .unwrap();
        assert_eq!(got, vec![1]);
        assert_eq!(Instant::now() - start, Duration::from_secs(2));
        assert_eq!(looks, 2);
        let mut looks = 0;
        let got: Vec<u32> = wait_for_deliveries(
            &wake,
            PollBackoff::new(
                Duration::ZERO,
                Duration::from_millis(5),
                Duration::from_millis(5),
            ),
            |_| {
                looks += 1;
                async { Ok(Vec::new()) }
            },
        )
        .await
        .unwrap();
        assert!(got.is_empty());
        assert_eq!(looks, 1);
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
