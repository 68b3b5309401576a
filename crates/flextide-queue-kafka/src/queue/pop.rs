//! The pop path: lease ready records from the ledger, waiting for the
//! consumer task to fetch more; records past their attempts, or that
//! cannot be decoded, go to the dead letters on the way.

use std::time::Duration;

use flextide_queue_core::{
    Delivery, Result,
    backend::{PollBackoff, now_millis, wait_for_deliveries},
};
use tokio::time::Instant;

use super::{KafkaQueue, dead};
use crate::{ledger::Dying, receipt};

/// Polling bounds inside a wait: the consumer task wakes waiters as records
/// arrive; the poll covers lease ends and not-before times.
const POLL_MIN: Duration = Duration::from_millis(20);
const POLL_MAX: Duration = Duration::from_millis(200);

/// Once a batch pop has its first records, it keeps taking the records
/// that are still arriving (the consumer hands a fetch over one record at
/// a time, partition by partition) while they come less than this far
/// apart ...
const BURST_GAP: Duration = Duration::from_millis(20);
/// ... for at most this long. A lone record costs at most one gap of
/// latency; a burst fills the batch as `pop_batch` promises (clause 6).
const BURST_MAX: Duration = Duration::from_millis(200);

pub(crate) async fn pop_batch(q: &KafkaQueue, max: usize, wait: Duration) -> Result<Vec<Delivery>> {
    if max == 0 {
        return Ok(Vec::new());
    }
    let max = max.min(500);
    q.engine.ensure_consumer().await?;
    let start = Instant::now();
    let mut out = claim_waiting(q, max, wait).await?;
    if !out.is_empty() && out.len() < max {
        let until = (start + wait)
            .max(Instant::now())
            .min(Instant::now() + BURST_MAX);
        while out.len() < max {
            let now = Instant::now();
            if now >= until {
                break;
            }
            let more = claim_waiting(q, max - out.len(), BURST_GAP.min(until - now)).await?;
            if more.is_empty() {
                break;
            }
            out.extend(more);
        }
    }
    Ok(out)
}

/// Up to `max` deliveries, waiting up to `wait` for the first.
async fn claim_waiting(q: &KafkaQueue, max: usize, wait: Duration) -> Result<Vec<Delivery>> {
    wait_for_deliveries(
        &q.engine.wake,
        PollBackoff::new(wait, POLL_MIN, POLL_MAX),
        |backoff| {
            let (claimed, dying, due, deadline) = {
                let mut ledger = q.engine.ledger.lock().expect("ledger lock");
                let (c, d, due) = ledger.claim(
                    max,
                    Instant::now(),
                    now_millis(),
                    q.options.lease,
                    q.options.max_attempts,
                    || q.engine.token(),
                );
                // Only a pop that waits needs the next lease's end.
                let deadline = if c.is_empty() {
                    ledger.next_deadline()
                } else {
                    None
                };
                (c, d, due, deadline)
            };
            if let Some(at) = due {
                let ms = (at - now_millis()).max(0) as u64;
                backoff.wake_by(Instant::now() + Duration::from_millis(ms));
            }
            if let Some(at) = deadline {
                backoff.wake_by(at);
            }
            if !claimed.is_empty() {
                q.engine.taken.notify_one();
            }
            async move {
                bury(q, dying).await;
                Ok(claimed
                    .into_iter()
                    .map(|c| {
                        Delivery::new(
                            c.decoded.message,
                            receipt::encode(c.partition, c.offset, &c.token),
                            c.attempt,
                            c.deadline,
                        )
                    })
                    .collect())
            }
        },
    )
    .await
}

/// Moves records whose leases ended past their attempts to the dead
/// letters now (contract clause 5: no later than the next stats or
/// dead-letter listing), when this process consumes the queue.
pub(crate) async fn sweep(q: &KafkaQueue) -> Result<()> {
    if !q.engine.is_running().await {
        return Ok(());
    }
    let dying = {
        let mut ledger = q.engine.ledger.lock().expect("ledger lock");
        ledger
            .claim(
                0,
                Instant::now(),
                now_millis(),
                q.options.lease,
                q.options.max_attempts,
                || q.engine.token(),
            )
            .1
    };
    bury(q, dying).await;
    Ok(())
}

/// Dead-letters records by themselves; one that fails stays in the ledger
/// and is tried again by the next pop.
async fn bury(q: &KafkaQueue, dying: Vec<Dying>) {
    for d in dying {
        let record = match &d.entry.decoded {
            Ok(decoded) => crate::codec::dead_letter(&decoded.message, d.entry.spent, &d.reason),
            Err(_) => {
                let mut r = d.entry.raw.to_record();
                crate::codec::mark_dead(&mut r, &d.reason);
                r
            }
        };
        match dead::store(q, &record).await {
            Ok(()) => {
                let moved = q
                    .engine
                    .ledger
                    .lock()
                    .expect("ledger lock")
                    .settle_dying(d.partition, d.offset);
                if moved.is_some() {
                    q.engine.commit_soon();
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, queue = %q.name, "kafka: dead-letter a record");
                q.engine
                    .ledger
                    .lock()
                    .expect("ledger lock")
                    .revive(d.partition, d.offset);
            }
        }
    }
}
