//! Adaptive batch sizes: how many deliveries one pop asks for, how many
//! the worker may hold, and how large an ack batch may grow.
//!
//! A shallow queue is served as before the sizes adapted: pops of up to
//! `concurrency + prefetch`, that many held, so a message pushed to an idle
//! queue starts at once and no worker hoards a short queue. When pops come
//! back full the backlog is deep, and every claim and every settle costs a
//! round trip and (on SQL backends) a commit, whatever its size: the batch
//! doubles, up to `fetch_batch`, and the worker may hold about three
//! batches (one being claimed, one waiting for a slot, one being
//! acknowledged). A pop that comes back less than half full halves it
//! again. A delivery that waited more than an eighth of its lease before it
//! started shows the worker holds more than its handlers get through in
//! time: the batch is halved and may not grow past that for a while.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// Consecutive full pops, without a late start, after which a ceiling set
/// by a late start is raised again (doubled).
const RECOVER_AFTER: u32 = 32;

/// The fixed bounds of the sizing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Policy {
    /// Held limit of a shallow queue: `concurrency + prefetch`.
    pub(crate) base_held: usize,
    /// Pop size of a shallow queue: `base_held`, capped by `max`.
    pub(crate) base: usize,
    /// Largest pop: `fetch_batch` (capped by the backend's `max_batch`);
    /// `base` when the sizes do not adapt.
    pub(crate) max: usize,
}

impl Policy {
    pub(crate) fn new(
        concurrency: usize,
        prefetch: usize,
        fetch_batch: usize,
        adapt: bool,
    ) -> Self {
        let base_held = (concurrency + prefetch).max(1);
        let fetch_batch = fetch_batch.max(1);
        let base = base_held.min(fetch_batch);
        Policy {
            base_held,
            base,
            max: if adapt { fetch_batch.max(base) } else { base },
        }
    }

    /// Deliveries the worker may hold while pops aim at `batch`.
    pub(crate) fn held_limit(&self, batch: usize) -> usize {
        self.base_held + 3 * batch.saturating_sub(self.base)
    }

    /// The largest the held limit can get (for channel capacities).
    pub(crate) fn max_held(&self) -> usize {
        self.held_limit(self.max)
    }

    /// Free room the fetcher waits for before it pops while aiming at
    /// `batch`: any while the queue is shallow (a free slot is filled at
    /// once), half a batch when it is deep (so claims stay large rather than
    /// refilling the few slots a small ack freed).
    pub(crate) fn min_room(&self, batch: usize) -> usize {
        if batch <= self.base { 1 } else { batch / 2 }
    }
}

/// The sizing state one worker's loops share: the fetch loop moves it, the
/// ack loop reads it, the dispatcher reports late starts.
#[derive(Debug)]
pub(crate) struct Sizing {
    policy: Policy,
    batch: AtomicUsize,
    late: AtomicBool,
    /// The fetch loop's own state (only it touches these).
    state: std::sync::Mutex<State>,
}

#[derive(Debug)]
struct State {
    ceiling: usize,
    full_in_a_row: u32,
}

impl Sizing {
    pub(crate) fn new(policy: Policy) -> Self {
        Sizing {
            policy,
            batch: AtomicUsize::new(policy.base),
            late: AtomicBool::new(false),
            state: std::sync::Mutex::new(State {
                ceiling: policy.max,
                full_in_a_row: 0,
            }),
        }
    }

    pub(crate) fn policy(&self) -> &Policy {
        &self.policy
    }

    /// The pop size aimed at now.
    pub(crate) fn batch(&self) -> usize {
        self.batch.load(Ordering::Relaxed)
    }

    /// The held limit for the batch aimed at now.
    pub(crate) fn held_limit(&self) -> usize {
        self.policy.held_limit(self.batch())
    }

    /// Largest ack batch now: the configured one, or the pop size if that
    /// grew past it (never past the backend's `max_batch`, which `cap` is).
    pub(crate) fn ack_batch(&self, configured: usize, cap: Option<usize>) -> usize {
        let n = configured.max(self.batch());
        cap.map_or(n, |c| n.min(c.max(1)))
    }

    /// A delivery started late in its lease (or was given back unstarted):
    /// the worker holds more than its handlers get through in time.
    pub(crate) fn report_late(&self) {
        self.late.store(true, Ordering::Relaxed);
    }

    /// A pop that asked for `asked` got `got`: moves the batch; returns it.
    pub(crate) fn after_pop(&self, asked: usize, got: usize) -> usize {
        let p = self.policy;
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let mut batch = self.batch();
        if self.late.swap(false, Ordering::Relaxed) {
            state.ceiling = (batch / 2).max(p.base);
            state.full_in_a_row = 0;
            batch = state.ceiling;
        } else if asked > 0 && got >= asked && asked * 2 >= batch {
            state.full_in_a_row = state.full_in_a_row.saturating_add(1);
            if state.full_in_a_row >= RECOVER_AFTER && state.ceiling < p.max {
                state.ceiling = (state.ceiling * 2).min(p.max);
                state.full_in_a_row = 0;
            }
            batch = (batch * 2).min(state.ceiling);
        } else if got * 2 < asked {
            state.full_in_a_row = 0;
            batch = (batch / 2).max(p.base);
        }
        self.batch.store(batch, Ordering::Relaxed);
        batch
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn adaptive() -> Sizing {
        // The defaults: concurrency 16, prefetch 16, fetch batch 512.
        Sizing::new(Policy::new(16, 16, 512, true))
    }

    #[test]
    fn full_pops_double_the_batch_up_to_the_fetch_batch() {
        let s = adaptive();
        assert_eq!((s.batch(), s.held_limit()), (32, 32));
        let mut seen = vec![];
        for _ in 0..6 {
            let asked = s.batch();
            seen.push(s.after_pop(asked, asked));
        }
        assert_eq!(seen, [64, 128, 256, 512, 512, 512]);
        assert_eq!(s.held_limit(), 32 + 3 * (512 - 32));
        assert_eq!(s.policy().min_room(512), 256);
        assert_eq!(s.ack_batch(128, None), 512);
        assert_eq!(s.ack_batch(128, Some(100)), 100);
    }

    #[test]
    fn shallow_pops_halve_it_back_to_the_base() {
        let s = adaptive();
        while s.batch() < 512 {
            s.after_pop(s.batch(), s.batch());
        }
        // Half full or more: the backlog is still there; keep the size.
        assert_eq!(s.after_pop(512, 300), 512);
        let mut seen = vec![];
        for _ in 0..6 {
            seen.push(s.after_pop(s.batch(), 1));
        }
        assert_eq!(seen, [256, 128, 64, 32, 32, 32]);
        assert_eq!(s.held_limit(), 32);
        assert_eq!(s.policy().min_room(32), 1);
        assert_eq!(s.ack_batch(128, None), 128);
    }

    #[test]
    fn a_small_pop_that_was_full_does_not_grow_a_large_batch() {
        // A pop cut short by little room says nothing about the backlog.
        let s = adaptive();
        s.after_pop(32, 32);
        s.after_pop(64, 64);
        assert_eq!(s.batch(), 128);
        assert_eq!(s.after_pop(10, 10), 128, "neither grows nor shrinks");
    }

    #[test]
    fn a_late_start_halves_the_batch_and_caps_it_for_a_while() {
        let s = adaptive();
        while s.batch() < 512 {
            s.after_pop(s.batch(), s.batch());
        }
        s.report_late();
        assert_eq!(s.after_pop(512, 512), 256);
        // Full pops do not take it past the new ceiling at once...
        for _ in 0..(RECOVER_AFTER - 1) {
            assert_eq!(s.after_pop(256, 256), 256);
        }
        // ...only after a run of full pops without a late start.
        assert_eq!(s.after_pop(256, 256), 512);
        // Late at the base: stays at the base.
        let s = adaptive();
        s.report_late();
        assert_eq!(s.after_pop(32, 32), 32);
    }

    #[test]
    fn fixed_sizes_never_move() {
        let s = Sizing::new(Policy::new(8, 8, 512, false));
        for _ in 0..5 {
            assert_eq!(s.after_pop(16, 16), 16);
        }
        assert_eq!(s.held_limit(), 16);
        // A fetch batch below concurrency + prefetch caps the pop, not the held limit.
        let p = Policy::new(16, 16, 10, true);
        assert_eq!((p.base, p.max, p.held_limit(p.base)), (10, 10, 32));
    }
}
