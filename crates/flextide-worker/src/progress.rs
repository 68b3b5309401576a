//! Live counters of a running worker (for progress bars and health checks)
//! and the report a finished run returns.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicU8, AtomicU64, AtomicUsize, Ordering},
    },
    time::Duration,
};

use crate::gate::Gates;

/// The state of the circuit breaker, if one is configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BreakerState {
    /// Messages flow (also the state when no breaker is configured).
    #[default]
    Closed,
    /// Too many failures: no message is fetched until the cool-down ends.
    Open,
    /// After the cool-down: one probe message is let through.
    HalfOpen,
}

impl BreakerState {
    pub(crate) fn to_u8(self) -> u8 {
        match self {
            BreakerState::Closed => 0,
            BreakerState::Open => 1,
            BreakerState::HalfOpen => 2,
        }
    }

    fn from_u8(v: u8) -> Self {
        match v {
            1 => BreakerState::Open,
            2 => BreakerState::HalfOpen,
            _ => BreakerState::Closed,
        }
    }
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) processed: AtomicU64,
    pub(crate) failed: AtomicU64,
    pub(crate) retried: AtomicU64,
    pub(crate) dead_lettered: AtomicU64,
    pub(crate) parked: AtomicU64,
    pub(crate) panicked: AtomicU64,
    pub(crate) lease_lost: AtomicU64,
    pub(crate) nacked_at_shutdown: AtomicU64,
    pub(crate) given_back_late: AtomicU64,
    pub(crate) settle_errors: AtomicU64,
    /// Sum of handler run times, for the utilisation average.
    pub(crate) busy_nanos: AtomicU64,
    pub(crate) workers: AtomicUsize,
    pub(crate) breaker: AtomicU8,
    gates: Mutex<Vec<Arc<Gates>>>,
}

pub(crate) fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

impl Counters {
    pub(crate) fn register(&self, gates: &Arc<Gates>) {
        self.gates
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(gates.clone());
    }

    pub(crate) fn unregister(&self, gates: &Arc<Gates>) {
        self.gates
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|g| !Arc::ptr_eq(g, gates));
    }

    /// (running handlers, held deliveries, concurrency slots) over every worker.
    pub(crate) fn load(&self) -> (usize, usize, usize) {
        let gates = self.gates.lock().unwrap_or_else(|e| e.into_inner());
        gates.iter().fold((0, 0, 0), |(r, h, s), g| {
            (
                r + g.running.used(),
                h + g.held.used(),
                s + g.running.limit(),
            )
        })
    }
}

/// A live view of a worker's (or pool's) counters, cheap to clone and to
/// read from another task, e.g. to draw a progress bar:
///
/// ```no_run
/// # fn f(progress: flextide_worker::Progress) {
/// // let progress = worker.progress();
/// tokio::spawn(async move {
///     loop {
///         let s = progress.snapshot();
///         eprint!("\rprocessed {} failed {} in flight {}", s.processed, s.failed, s.in_flight);
///         tokio::time::sleep(std::time::Duration::from_millis(200)).await;
///     }
/// });
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Progress {
    pub(crate) counters: Arc<Counters>,
}

impl Progress {
    /// The counters now.
    pub fn snapshot(&self) -> ProgressSnapshot {
        let c = &*self.counters;
        let (in_flight, held, slots) = c.load();
        ProgressSnapshot {
            processed: c.processed.load(Ordering::Relaxed),
            failed: c.failed.load(Ordering::Relaxed),
            retried: c.retried.load(Ordering::Relaxed),
            dead_lettered: c.dead_lettered.load(Ordering::Relaxed),
            parked: c.parked.load(Ordering::Relaxed),
            panicked: c.panicked.load(Ordering::Relaxed),
            lease_lost: c.lease_lost.load(Ordering::Relaxed),
            nacked_at_shutdown: c.nacked_at_shutdown.load(Ordering::Relaxed),
            given_back_late: c.given_back_late.load(Ordering::Relaxed),
            settle_errors: c.settle_errors.load(Ordering::Relaxed),
            in_flight,
            held,
            slots,
            workers: c.workers.load(Ordering::Relaxed),
            breaker: BreakerState::from_u8(c.breaker.load(Ordering::Relaxed)),
        }
    }
}

/// The counters of a worker or pool at one moment. Counts are totals since
/// the worker was built.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProgressSnapshot {
    /// Messages handled successfully and acknowledged.
    pub processed: u64,
    /// Handler failures (errors and panics), each attempt counted.
    pub failed: u64,
    /// Failures given back to the queue for a later attempt.
    pub retried: u64,
    /// Messages moved to the dead letters (fatal errors, attempts exhausted).
    pub dead_lettered: u64,
    /// Messages that should have been dead-lettered on a backend without
    /// dead letters, held back with a long delay instead (see the README).
    pub parked: u64,
    /// Handler panics (also counted in `failed`).
    pub panicked: u64,
    /// Deliveries whose lease was lost while the handler ran; not settled.
    pub lease_lost: u64,
    /// Deliveries given back by a shutdown, visible again at once:
    /// prefetched but not started (released where the backend has
    /// `release`, so their attempt is not spent; else nacked), or still
    /// running at the shutdown deadline (nacked).
    pub nacked_at_shutdown: u64,
    /// Prefetched deliveries given back unstarted because they waited half
    /// their lease without a free slot (released where the backend can, so
    /// the attempt is not spent; else nacked), rather than left to lose
    /// their lease.
    pub given_back_late: u64,
    /// Acks, nacks or dead-letter moves that failed (stale receipts
    /// included); the message is delivered again after its lease.
    pub settle_errors: u64,
    /// Handlers running now.
    pub in_flight: usize,
    /// Deliveries held now: running, prefetched, or waiting for their ack.
    pub held: usize,
    /// Concurrency slots over all workers.
    pub slots: usize,
    /// Workers running (a pool changes this when it scales).
    pub workers: usize,
    /// The circuit breaker's state.
    pub breaker: BreakerState,
}

/// What a finished [`Worker::run`](crate::Worker::run) or
/// [`WorkerPool::run`](crate::WorkerPool::run) did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WorkerReport {
    /// Messages handled successfully and acknowledged.
    pub processed: u64,
    /// Handler failures (errors and panics).
    pub failed: u64,
    /// Failures given back to the queue with a backoff delay.
    pub retried: u64,
    /// Messages moved to the dead letters.
    pub dead_lettered: u64,
    /// Messages held back with a long delay because the backend has no dead letters.
    pub parked: u64,
    /// Handler panics (also counted in `failed`).
    pub panicked: u64,
    /// Deliveries whose lease was lost while the handler ran.
    pub lease_lost: u64,
    /// Deliveries given back by the shutdown, so they are redelivered at
    /// once: released when never started (if the backend can), else nacked.
    pub nacked_at_shutdown: u64,
    /// Prefetched deliveries given back unstarted, half their lease gone
    /// without a free slot.
    pub given_back_late: u64,
    /// Settle operations that failed.
    pub settle_errors: u64,
    /// Handlers that had not finished, even after cancellation, when the run
    /// returned; their messages come back when their leases end.
    pub still_running: usize,
    /// How long the run took.
    pub elapsed: Duration,
    /// Why the worker stopped on its own (the handler service failed), if it did.
    pub error: Option<String>,
}

impl WorkerReport {
    pub(crate) fn new(
        s: ProgressSnapshot,
        still_running: usize,
        elapsed: Duration,
        error: Option<String>,
    ) -> Self {
        WorkerReport {
            processed: s.processed,
            failed: s.failed,
            retried: s.retried,
            dead_lettered: s.dead_lettered,
            parked: s.parked,
            panicked: s.panicked,
            lease_lost: s.lease_lost,
            nacked_at_shutdown: s.nacked_at_shutdown,
            given_back_late: s.given_back_late,
            settle_errors: s.settle_errors,
            still_running,
            elapsed,
            error,
        }
    }
}
