//! The ack loop: gathers receipts of handled messages and deletes them in
//! batches, so one round trip acknowledges many messages without holding
//! any of them back by more than the ack delay.
//!
//! A batch is sent when it is full, when the delay since its first receipt
//! has passed, or as soon as no other held delivery can still add to it
//! (everything the worker holds is in this batch or already being deleted).
//! Flushing merely because the worker is out of room would cut batches
//! short: with fast handlers the worker is always out of room, and small
//! deletes then free room for small pops, round trip after round trip.
//! While the backlog is deep the batch grows with the pop size (see
//! `adapt.rs`), so acks of many handlers share one delete.

use std::{
    pin::pin,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use flextide_queue_core::{QueueError, Receipt};
use tokio::{
    sync::{Semaphore, mpsc},
    time::{Instant, sleep_until},
};
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tracing::warn;

use super::{
    Shared,
    adapt::Sizing,
    settle::{settle_failed, settle_failed_many},
};
use crate::gate::Gates;

/// A handled delivery to acknowledge, and when its lease ends: a failed
/// delete is tried again until then (a broker restarting for a few
/// seconds must not turn every ack of that moment into a duplicate), and
/// no longer, since after it the message is delivered again anyway.
#[derive(Debug)]
pub(crate) struct Ack {
    pub(crate) receipt: Receipt,
    pub(crate) lease_end: Instant,
}

/// The longest pause between two tries of a failed delete.
const MAX_PAUSE: Duration = Duration::from_secs(1);

pub(crate) async fn run(
    shared: Arc<Shared>,
    gates: Arc<Gates>,
    sizing: Arc<Sizing>,
    mut rx: mpsc::UnboundedReceiver<Ack>,
    close: CancellationToken,
) {
    let configured = shared.config.ack_batch;
    let flushes = Arc::new(Semaphore::new(shared.config.ack_concurrency.max(1)));
    let tracker = TaskTracker::new();
    let mut buf: Vec<Ack> = Vec::with_capacity(configured);
    // Receipts handed to a flush and not yet released from the held gate.
    let deleting = Arc::new(AtomicUsize::new(0));
    // Held deliveries that may still send a receipt: running, waiting to
    // run, or waiting in the channel (not room taken for a pop).
    let others = |buf: &Vec<Ack>| {
        gates.held.used().saturating_sub(
            gates.popping.load(Ordering::Acquire) + deleting.load(Ordering::Acquire) + buf.len(),
        )
    };
    let mut open = true;
    while open {
        // As large as a pop while the backlog is deep: one statement (one
        // commit on SQL backends) settles what one claim leased.
        let batch = sizing.ack_batch(configured, shared.caps.max_batch);
        // The first receipt of a batch.
        let got = tokio::select! {
            biased;
            got = rx.recv_many(&mut buf, batch) => got,
            _ = close.cancelled() => 0,
        };
        if got == 0 {
            open = false;
        } else {
            // More, until the batch is full, the delay has passed, or no
            // other delivery could add to it.
            let mut timer = pin!(sleep_until(Instant::now() + shared.config.ack_delay));
            while buf.len() < batch && others(&buf) > 0 {
                let room = batch - buf.len();
                tokio::select! {
                    biased;
                    got = rx.recv_many(&mut buf, room) => if got == 0 { open = false; break },
                    _ = &mut timer => break,
                    _ = close.cancelled() => { open = false; break }
                }
            }
        }
        if !open {
            while let Ok(receipt) = rx.try_recv() {
                buf.push(receipt);
            }
        }
        for chunk in buf.chunks(batch) {
            let permit = flushes
                .clone()
                .acquire_owned()
                .await
                .expect("the semaphore is never closed");
            let (shared, gates, deleting, chunk) = (
                shared.clone(),
                gates.clone(),
                deleting.clone(),
                chunk
                    .iter()
                    .map(|a| (a.receipt.clone(), a.lease_end))
                    .collect::<Vec<_>>(),
            );
            let n = chunk.len();
            deleting.fetch_add(n, Ordering::AcqRel);
            tracker.spawn(async move {
                delete(&shared, chunk).await;
                // Gate first: for a moment `others` reads low, which can
                // only send a batch early, never hold one back.
                gates.held.release(n);
                deleting.fetch_sub(n, Ordering::AcqRel);
                drop(permit);
            });
        }
        buf.clear();
    }
    tracker.close();
    tracker.wait().await;
}

/// Deletes a batch, trying retryable failures again, with a doubling
/// pause, for as long as their leases last.
async fn delete(shared: &Shared, mut batch: Vec<(Receipt, Instant)>) {
    let mut pause = Duration::from_millis(50);
    let mut warned = false;
    loop {
        let result = if batch.len() == 1 {
            shared.queue.delete(&batch[0].0).await
        } else {
            let receipts: Vec<Receipt> = batch.iter().map(|(r, _)| r.clone()).collect();
            shared.queue.delete_batch(&receipts).await
        };
        let (again, error) = match result {
            Ok(()) => return,
            Err(QueueError::PartialBatch { failures, .. }) => {
                let mut again = Vec::new();
                let mut first = None;
                for failure in failures {
                    if failure.error.is_retryable() {
                        if let Some(item) = batch.get(failure.index) {
                            again.push(item.clone());
                        }
                        first.get_or_insert(failure.error);
                    } else {
                        settle_failed(shared, "delete", &failure.error);
                    }
                }
                match first {
                    Some(e) => (again, e),
                    None => return,
                }
            }
            Err(e) if e.is_retryable() => (batch, e),
            Err(e) => {
                settle_failed_many(shared, "delete", &e, batch.len());
                return;
            }
        };
        // Worth another try only while the lease lasts past the pause.
        let retry_at = Instant::now() + pause;
        let (live, ended): (Vec<_>, Vec<_>) =
            again.into_iter().partition(|(_, end)| *end > retry_at);
        if !ended.is_empty() {
            settle_failed_many(shared, "delete", &error, ended.len());
        }
        if live.is_empty() {
            return;
        }
        if !warned {
            warn!(queue = %shared.queue_name, error = %error, deliveries = live.len(), "acknowledging failed; trying again until the leases end");
            warned = true;
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(MAX_PAUSE);
        batch = live;
    }
}
