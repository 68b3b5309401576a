//! Settling deliveries on failure and shutdown, with the fallbacks for
//! backends that lack delays or dead letters.

use std::time::Duration;

use flextide_queue_core::{Delivery, QueueError, Receipt};
use tracing::{error, warn};

use super::Shared;
use crate::{gate::Gates, progress::bump};

/// Logs a failed settle. A stale receipt is expected now and then (the
/// lease ended and the message went to another consumer): a warning.
pub(crate) fn settle_failed(shared: &Shared, operation: &str, e: &QueueError) {
    settle_failed_many(shared, operation, e, 1);
}

/// [`settle_failed`] for `n` deliveries that failed with the same error.
pub(crate) fn settle_failed_many(shared: &Shared, operation: &str, e: &QueueError, n: usize) {
    shared
        .counters
        .settle_errors
        .fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
    if matches!(e, QueueError::StaleReceipt { .. }) {
        // After a broker restart every receipt of the moment is stale at
        // once: say so once per window, with the count, not once each.
        if let Some(suppressed) = shared.stale_log.admit(n) {
            warn!(
                queue = %shared.queue_name,
                operation,
                deliveries = n,
                earlier_unreported = suppressed,
                "receipts were stale: leases ended (or the broker restarted) before messages were settled; they are (or were) delivered again"
            );
        }
    } else {
        error!(queue = %shared.queue_name, operation, deliveries = n, error = %e, "settling a delivery failed; it is delivered again when its lease ends");
    }
}

pub(crate) async fn ack_one(shared: &Shared, receipt: &Receipt) {
    if let Err(e) = shared.queue.delete(receipt).await {
        settle_failed(shared, "delete", &e);
    }
}

fn clamp_delay(shared: &Shared, delay: Duration) -> Duration {
    shared.caps.max_delay.map_or(delay, |max| delay.min(max))
}

/// Makes the message visible again after `delay`, in the queue, so the
/// wait survives a restart. Without delayed nacks, a lease extended by
/// `delay` and left to expire does the same; without either, the message
/// comes back at once.
pub(crate) async fn retry_later(shared: &Shared, receipt: &Receipt, delay: Duration) {
    let delay = clamp_delay(shared, delay);
    let result = if delay.is_zero() || shared.caps.delay {
        shared.queue.nack(receipt, delay).await
    } else if shared.caps.extend_lease {
        shared.queue.extend(receipt, delay).await
    } else {
        shared.queue.nack(receipt, Duration::ZERO).await
    };
    match result {
        Ok(()) => {
            bump(&shared.counters.retried);
            shared.metrics.retried.increment(1);
        }
        Err(e) => settle_failed(shared, "nack", &e),
    }
}

/// Moves the message to the dead letters; on a backend without them, parks
/// it (a nack with the long park delay) and logs an error, since deleting
/// would lose it and retrying at once would spin on it.
pub(crate) async fn dead_letter(shared: &Shared, receipt: &Receipt, reason: &str) {
    if shared.caps.dead_letters {
        match shared.queue.dead_letter(receipt, reason).await {
            Ok(()) => {
                bump(&shared.counters.dead_lettered);
                shared.metrics.dead_lettered.increment(1);
                return;
            }
            Err(QueueError::Unsupported { .. }) => {}
            Err(e) => return settle_failed(shared, "dead_letter", &e),
        }
    }
    let delay = clamp_delay(shared, shared.config.park_delay);
    error!(
        queue = %shared.queue_name,
        reason,
        park_for = ?delay,
        "the backend has no dead letters: parking the message with a long delay instead"
    );
    let result = if shared.caps.delay {
        shared.queue.nack(receipt, delay).await
    } else if shared.caps.extend_lease {
        shared.queue.extend(receipt, delay).await
    } else {
        // Leaving it leased is the longest wait available: it comes back when the lease ends.
        Ok(())
    };
    match result {
        Ok(()) => bump(&shared.counters.parked),
        Err(e) => settle_failed(shared, "park", &e),
    }
}

/// Gives back a delivery whose handler started (and was aborted at the
/// shutdown deadline): visible again at once, the attempt spent.
pub(crate) async fn give_back_one(shared: &Shared, receipt: &Receipt) {
    match shared.queue.nack(receipt, Duration::ZERO).await {
        Ok(()) => bump(&shared.counters.nacked_at_shutdown),
        Err(e) => settle_failed(shared, "nack", &e),
    }
}

/// Gives back a delivery that never started: released where the backend
/// can (the attempt is not spent), else nacked without delay.
async fn give_back_unstarted(shared: &Shared, receipt: &Receipt) {
    match flextide_queue_core::give_back_unstarted(&*shared.queue, receipt).await {
        Ok(_) => bump(&shared.counters.nacked_at_shutdown),
        Err(e) => settle_failed(shared, "release", &e),
    }
}

/// Gives back a prefetched delivery that waited too long for a slot (see
/// `guard.rs`), and frees its place in the held gate.
pub(crate) async fn give_back_late(shared: &Shared, gates: &Gates, delivery: Delivery) {
    match flextide_queue_core::give_back_unstarted(&*shared.queue, &delivery.receipt).await {
        Ok(_) => bump(&shared.counters.given_back_late),
        Err(e) => settle_failed(shared, "release", &e),
    }
    gates.held.release(1);
}

/// Gives back deliveries that never started, all at once.
pub(crate) async fn give_back(shared: &Shared, gates: &Gates, deliveries: Vec<Delivery>) {
    if deliveries.is_empty() {
        return;
    }
    let n = deliveries.len();
    futures::future::join_all(
        deliveries
            .iter()
            .map(|d| give_back_unstarted(shared, &d.receipt)),
    )
    .await;
    gates.held.release(n);
}

/// Rate-limits the stale-receipt warning: the first in each window is
/// logged, with how many were left unreported since the last one.
#[derive(Debug)]
pub(crate) struct StaleLog {
    window: std::time::Duration,
    state: std::sync::Mutex<(Option<tokio::time::Instant>, u64)>,
}

impl StaleLog {
    pub(crate) fn new(window: std::time::Duration) -> Self {
        StaleLog {
            window,
            state: std::sync::Mutex::new((None, 0)),
        }
    }

    /// Counts `n` stale receipts; `Some(unreported)` when this one is to be
    /// logged, carrying the count of those not logged before it.
    pub(crate) fn admit(&self, n: usize) -> Option<u64> {
        let now = tokio::time::Instant::now();
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let (last, unreported) = &mut *state;
        match last {
            Some(at) if now.duration_since(*at) < self.window => {
                *unreported += n as u64;
                None
            }
            _ => {
                *last = Some(now);
                Some(std::mem::take(unreported))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn stale_warnings_are_logged_once_per_window_with_a_count() {
        let log = StaleLog::new(std::time::Duration::from_secs(10));
        assert_eq!(log.admit(1), Some(0));
        for _ in 0..99 {
            assert_eq!(log.admit(1), None);
        }
        tokio::time::advance(std::time::Duration::from_secs(11)).await;
        assert_eq!(log.admit(1), Some(99));
    }
}
