//! The fetch loop: pops batches while the worker has room for them.

use std::{
    sync::{Arc, atomic::Ordering},
    time::Duration,
};

use tokio::{sync::mpsc, time::Instant};
use tokio_util::sync::CancellationToken;
use tracing::{error, warn};

use super::{Shared, adapt::Sizing, run::Batch, settle};
use crate::{breaker::Admit, gate::Gates};

const FIRST_ERROR_BACKOFF: Duration = Duration::from_millis(100);
const MAX_ERROR_BACKOFF: Duration = Duration::from_secs(5);

pub(crate) async fn run(
    shared: Arc<Shared>,
    gates: Arc<Gates>,
    sizing: Arc<Sizing>,
    tx: mpsc::Sender<Batch>,
    stop: CancellationToken,
) {
    let config = &shared.config;
    let mut backoff = FIRST_ERROR_BACKOFF;
    loop {
        if stop.is_cancelled() {
            return;
        }
        // Room first, then the breaker: a breaker that opened while we
        // waited for room is seen before popping. While the backlog is
        // deep, wait for room for half a batch: claims stay large.
        let batch = sizing.batch();
        let min_room = sizing.policy().min_room(batch);
        let room = if gates.held.free() >= min_room {
            gates.held.try_take(batch)
        } else {
            0
        };
        let room = match room {
            0 => tokio::select! {
                biased;
                _ = stop.cancelled() => return,
                room = gates.held.take_at_least(min_room, batch) => room,
            },
            room => room,
        };
        // Marked so the ack loop does not wait for receipts of deliveries
        // that are only room yet.
        gates.popping.store(room, Ordering::Release);
        let probe = match &shared.breaker {
            None => false,
            Some(breaker) => {
                let admit = tokio::select! {
                    biased;
                    _ = stop.cancelled() => { gates.held.release(room); gates.popping.store(0, Ordering::Release); return }
                    admit = breaker.admit(&shared.counters, &shared.metrics) => admit,
                };
                admit == Admit::Probe
            }
        };
        let unused_probe = || {
            if probe && let Some(breaker) = &shared.breaker {
                breaker.probe_unused();
            }
        };
        let room = if probe {
            gates.held.release(room - 1);
            gates.popping.store(1, Ordering::Release);
            1
        } else {
            room
        };
        let popped_at = Instant::now();
        let popped = tokio::select! {
            biased;
            // A pop cut short may have leased messages on some backends;
            // they come back when their leases end.
            _ = stop.cancelled() => { gates.held.release(room); gates.popping.store(0, Ordering::Release); unused_probe(); return }
            popped = shared.queue.pop_batch(room, config.poll_wait) => popped,
        };
        // The gate is settled to what the pop got before the mark goes:
        // for a moment the ack loop may undercount deliveries (and send a
        // batch early), never count unused room as deliveries.
        let got = popped.as_ref().map_or(0, Vec::len);
        if popped.is_ok() && !probe {
            sizing.after_pop(room, got);
            gates.held.set_limit(sizing.held_limit());
        }
        if got < room {
            gates.held.release(room - got);
        } else if got > room {
            gates.held.force_take(got - room);
        }
        gates.popping.store(0, Ordering::Release);
        match popped {
            Ok(deliveries) => {
                backoff = FIRST_ERROR_BACKOFF;
                if got == 0 {
                    unused_probe();
                    continue;
                }
                shared.metrics.consumed.increment(got as u64);
                if let Err(mpsc::error::SendError(batch)) = tx
                    .send(Batch {
                        deliveries,
                        popped_at,
                        probe,
                    })
                    .await
                {
                    settle::give_back(&shared, &gates, batch.deliveries).await;
                    return;
                }
            }
            Err(e) => {
                unused_probe();
                if e.is_retryable() {
                    warn!(queue = %shared.queue_name, error = %e, retry_in = ?backoff, "fetching failed; retrying");
                } else {
                    error!(queue = %shared.queue_name, error = %e, retry_in = ?backoff, "fetching failed; retrying");
                }
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(MAX_ERROR_BACKOFF);
            }
        }
    }
}
