//! Attempt counts that do not go backwards within a handle.
//!
//! A delivery's attempt is the server's delivery count, read from its ack
//! subject. nats-server before 2.10.14 can count a redelivery as a first
//! delivery again: when it fails to send a redelivery (to a pull request
//! whose connection was just lost), it puts the message back as if it had
//! never been delivered, and the next delivery carries a count of 1
//! (nats-io/nats-server#5305). The shared 2.9 server of this project's CI
//! does it after a reconnect, and the conformance case
//! `reconnect::leased_message_is_not_lost` caught it.
//!
//! So each handle remembers, per stream sequence, the highest attempt it
//! handed out and the consumer sequence of that delivery; a later delivery
//! of the same message (another consumer sequence) counts at least one
//! more. Settling the message (`+ACK`, `+TERM`) forgets it. Across
//! processes the server's count stands: upgrade the server to fix it there.
//! The memory is bounded: past [`MAX_REMEMBERED`] entries, those not seen
//! for [`FORGET_AFTER`] are dropped, and all of them if that is not enough.

use std::{collections::HashMap, sync::Mutex, time::Duration};

use tokio::time::Instant;

/// Most messages one handle remembers.
const MAX_REMEMBERED: usize = 65_536;

/// An entry older than this is dropped first when the map is full.
const FORGET_AFTER: Duration = Duration::from_secs(600);

#[derive(Debug, Clone, Copy)]
struct Seen {
    attempt: u32,
    consumer_seq: u64,
    at: Instant,
}

#[derive(Debug, Default)]
pub(crate) struct Attempts {
    seen: Mutex<HashMap<u64, Seen>>,
}

impl Attempts {
    /// The attempt of a delivery the server counts `delivered`: at least one
    /// more than an earlier delivery of the message this handle handed out.
    pub(crate) fn observe(&self, stream_seq: u64, consumer_seq: u64, delivered: u32) -> u32 {
        let now = Instant::now();
        let mut seen = self.seen.lock().unwrap();
        let attempt = match seen.get(&stream_seq) {
            Some(s) if s.consumer_seq == consumer_seq => s.attempt.max(delivered),
            Some(s) => delivered.max(s.attempt.saturating_add(1)),
            None => delivered,
        };
        if attempt != delivered {
            tracing::debug!(
                stream_seq,
                delivered,
                attempt,
                "the server counted a redelivery lower than an earlier delivery; kept counting up"
            );
        }
        if seen.len() >= MAX_REMEMBERED && !seen.contains_key(&stream_seq) {
            seen.retain(|_, s| now.saturating_duration_since(s.at) < FORGET_AFTER);
            if seen.len() >= MAX_REMEMBERED {
                seen.clear();
            }
        }
        seen.insert(
            stream_seq,
            Seen {
                attempt,
                consumer_seq,
                at: now,
            },
        );
        attempt
    }

    /// The attempt of a delivery handed out before (its receipt is being
    /// settled): what `observe` said, or the server's count.
    pub(crate) fn of(&self, stream_seq: u64, consumer_seq: u64, delivered: u32) -> u32 {
        match self.seen.lock().unwrap().get(&stream_seq) {
            Some(s) if s.consumer_seq == consumer_seq => s.attempt.max(delivered),
            _ => delivered,
        }
    }

    /// The message was settled for good.
    pub(crate) fn forget(&self, stream_seq: u64) {
        self.seen.lock().unwrap().remove(&stream_seq);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_redelivery_counted_as_first_counts_up() {
        let a = Attempts::default();
        assert_eq!(a.observe(7, 1, 1), 1);
        // The same delivery seen again keeps its count.
        assert_eq!(a.observe(7, 1, 1), 1);
        // A redelivery the server counts 1 again (nats-server#5305).
        assert_eq!(a.observe(7, 2, 1), 2);
        assert_eq!(a.of(7, 2, 1), 2);
        // A correct server count higher than ours wins.
        assert_eq!(a.observe(7, 3, 5), 5);
        // Another message is not affected.
        assert_eq!(a.observe(8, 4, 1), 1);
        a.forget(7);
        assert_eq!(a.observe(7, 9, 1), 1);
    }

    #[test]
    fn the_memory_is_bounded() {
        let a = Attempts::default();
        for seq in 0..(MAX_REMEMBERED as u64 + 10) {
            a.observe(seq, seq, 1);
        }
        assert!(a.seen.lock().unwrap().len() <= MAX_REMEMBERED);
    }
}
