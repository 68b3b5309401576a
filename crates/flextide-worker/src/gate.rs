//! A counted limit with one taker and many releasers, cheaper than a
//! semaphore on the hot path: taking and releasing are single atomic
//! operations, and the taker is woken only when the gate goes from full to
//! not full.

use std::{
    pin::pin,
    sync::atomic::{AtomicUsize, Ordering},
};

use tokio::sync::Notify;

#[derive(Debug)]
pub(crate) struct Gate {
    used: AtomicUsize,
    /// Changed only by the taker (the adaptive prefetch), read by anyone.
    limit: AtomicUsize,
    /// Free units the taker waits for (1 unless it asked for more).
    min_wanted: AtomicUsize,
    notify: Notify,
}

impl Gate {
    pub(crate) fn new(limit: usize) -> Self {
        Gate {
            used: AtomicUsize::new(0),
            limit: AtomicUsize::new(limit.max(1)),
            min_wanted: AtomicUsize::new(1),
            notify: Notify::new(),
        }
    }

    pub(crate) fn limit(&self) -> usize {
        self.limit.load(Ordering::Acquire)
    }

    /// Moves the limit. Lowering it below what is used takes nothing back:
    /// the gate stays full until enough is released.
    pub(crate) fn set_limit(&self, limit: usize) {
        let before = self.limit.swap(limit.max(1), Ordering::AcqRel);
        if limit > before {
            self.notify.notify_one();
        }
    }

    /// Free units now.
    pub(crate) fn free(&self) -> usize {
        self.limit().saturating_sub(self.used())
    }

    pub(crate) fn used(&self) -> usize {
        self.used.load(Ordering::SeqCst)
    }

    /// Takes up to `max` units without waiting; 0 when the gate is full.
    /// Only one task may take from a gate.
    pub(crate) fn try_take(&self, max: usize) -> usize {
        let n = self.free().min(max);
        if n > 0 {
            self.used.fetch_add(n, Ordering::AcqRel);
        }
        n
    }

    /// Waits until at least one unit is free, then takes up to `max`.
    pub(crate) async fn take(&self, max: usize) -> usize {
        self.take_at_least(1, max).await
    }

    /// Waits until at least `min` units (at least one, at most `max`) are
    /// free, then takes up to `max`.
    pub(crate) async fn take_at_least(&self, min: usize, max: usize) -> usize {
        let min = min.clamp(1, max.max(1));
        self.min_wanted.store(min, Ordering::SeqCst);
        loop {
            let mut notified = pin!(self.notify.notified());
            notified.as_mut().enable();
            if max == 0 {
                return 0;
            }
            if self.free() >= min {
                return self.try_take(max);
            }
            notified.await;
        }
    }

    /// Counts `n` units taken by other means (a backend that returned more
    /// deliveries than asked for).
    pub(crate) fn force_take(&self, n: usize) {
        self.used.fetch_add(n, Ordering::AcqRel);
    }

    pub(crate) fn release(&self, n: usize) {
        if n == 0 {
            return;
        }
        // SeqCst with the taker's store of `min_wanted` and load of `used`:
        // either it sees this release, or this sees what it waits for.
        let before = self.used.fetch_sub(n, Ordering::SeqCst);
        debug_assert!(before >= n, "gate released more than taken");
        // The taker waits either for the gate to be not full or for a
        // number of free units: wake it whenever it may be waiting.
        if before + self.min_wanted.load(Ordering::SeqCst) > self.limit() {
            self.notify.notify_one();
        }
    }
}

/// The two limits of one worker: deliveries held (popped, not yet settled)
/// and handlers running.
#[derive(Debug)]
pub(crate) struct Gates {
    pub(crate) held: Gate,
    pub(crate) running: Gate,
    /// Units of `held` the fetcher has taken for a pop that has not
    /// returned yet: room, not deliveries.
    pub(crate) popping: AtomicUsize,
}

impl Gates {
    pub(crate) fn new(concurrency: usize, prefetch: usize) -> Self {
        Gates {
            held: Gate::new(concurrency + prefetch),
            running: Gate::new(concurrency),
            popping: AtomicUsize::new(0),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::{sync::Arc, time::Duration};

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn take_waits_for_release() {
        let gate = Arc::new(Gate::new(3));
        assert_eq!(gate.try_take(2), 2);
        assert_eq!(gate.take(5).await, 1);
        assert_eq!(gate.used(), gate.limit());
        let releaser = gate.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            releaser.release(2);
        });
        let start = tokio::time::Instant::now();
        assert_eq!(gate.take(5).await, 2);
        assert_eq!(start.elapsed(), Duration::from_secs(1));
    }
}
