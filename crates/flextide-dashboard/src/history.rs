//! The last hour of every queue's counts, sampled in process, and the
//! rates derived from them: the charts and the per-minute columns need no
//! database of their own.

use std::{
    collections::VecDeque,
    sync::{Arc, Weak, atomic::Ordering},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use serde::Serialize;

use crate::{builder::Counts, state::State};

/// How far back the charts reach.
const WINDOW: Duration = Duration::from_secs(3600);
/// Longest a sample waits for one queue's counts.
pub(crate) const STATS_TIMEOUT: Duration = Duration::from_secs(10);

/// One sample of one queue.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub(crate) struct Sample {
    /// When, in milliseconds since the Unix epoch.
    pub(crate) at_ms: u64,
    pub(crate) ready: u64,
    pub(crate) in_flight: u64,
    pub(crate) delayed: u64,
    pub(crate) dead_letters: u64,
    /// Per minute since the previous sample; `None` for the first one.
    pub(crate) processed_per_min: Option<f64>,
    pub(crate) failed_per_min: Option<f64>,
}

#[derive(Debug, Default)]
pub(crate) struct History {
    samples: VecDeque<Sample>,
    /// The last worker counters read, when the queue has them.
    last_counts: Option<Counts>,
    /// Whether the rates were counted (counters given) or estimated.
    pub(crate) counted: bool,
}

/// The counts a sample is taken from.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Observed {
    pub(crate) at: SystemTime,
    pub(crate) ready: u64,
    pub(crate) in_flight: u64,
    pub(crate) delayed: u64,
    pub(crate) dead_letters: u64,
    pub(crate) counts: Option<Counts>,
}

impl History {
    /// Adds a sample, with the rates since the previous one: counted from
    /// the worker counters when given, else estimated from the counts —
    /// failed = dead letters added; processed = messages that left the
    /// queue (ready + in flight + delayed went down) other than into the
    /// dead letters, which misses what was pushed in the same interval.
    pub(crate) fn record(&mut self, o: Observed) {
        let at_ms =
            o.at.duration_since(UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or_default();
        let live = o.ready + o.in_flight + o.delayed;
        let (mut processed, mut failed) = (None, None);
        if let Some(prev) = self.samples.back() {
            let minutes = at_ms.saturating_sub(prev.at_ms) as f64 / 60_000.0;
            if minutes > 0.0 {
                match (o.counts, self.last_counts) {
                    (Some(now), Some(before)) => {
                        processed =
                            Some(now.processed.saturating_sub(before.processed) as f64 / minutes);
                        failed = Some(now.failed.saturating_sub(before.failed) as f64 / minutes);
                    }
                    _ => {
                        let prev_live = prev.ready + prev.in_flight + prev.delayed;
                        let dead_added = o.dead_letters.saturating_sub(prev.dead_letters);
                        let left = prev_live.saturating_sub(live).saturating_sub(dead_added);
                        processed = Some(left as f64 / minutes);
                        failed = Some(dead_added as f64 / minutes);
                    }
                }
            }
        }
        self.counted = o.counts.is_some();
        self.last_counts = o.counts;
        self.samples.push_back(Sample {
            at_ms,
            ready: o.ready,
            in_flight: o.in_flight,
            delayed: o.delayed,
            dead_letters: o.dead_letters,
            processed_per_min: processed,
            failed_per_min: failed,
        });
        let oldest = at_ms.saturating_sub(WINDOW.as_millis() as u64);
        while self.samples.front().is_some_and(|s| s.at_ms < oldest) {
            self.samples.pop_front();
        }
    }

    pub(crate) fn samples(&self) -> Vec<Sample> {
        self.samples.iter().cloned().collect()
    }

    /// The rates of the newest sample that has them.
    pub(crate) fn latest_rates(&self) -> (Option<f64>, Option<f64>) {
        self.samples
            .back()
            .map(|s| (s.processed_per_min, s.failed_per_min))
            .unwrap_or_default()
    }
}

/// Takes one sample of every queue, all at once.
pub(crate) async fn sample_all(state: &State) {
    let at = SystemTime::now();
    let futures = state.queues.iter().map(|entry| async move {
        let stats = tokio::time::timeout(STATS_TIMEOUT, entry.queue.stats()).await;
        match stats {
            Ok(Ok(s)) => {
                let counts = entry.counts.as_ref().map(|f| f());
                entry.history.lock().unwrap().record(Observed {
                    at,
                    ready: s.depth,
                    in_flight: s.in_flight,
                    delayed: s.delayed,
                    dead_letters: s.dead_lettered,
                    counts,
                });
            }
            Ok(Err(e)) => tracing::warn!("dashboard: counts of {} failed: {e}", entry.name),
            Err(_) => tracing::warn!(
                "dashboard: counts of {} took longer than {}s",
                entry.name,
                STATS_TIMEOUT.as_secs()
            ),
        }
    });
    futures::future::join_all(futures).await;
}

/// Starts the sampler once per dashboard; it holds the state weakly and
/// ends when the dashboard is gone.
pub(crate) fn spawn_sampler(state: &Arc<State>) {
    if state.sampler_started.swap(true, Ordering::SeqCst) {
        return;
    }
    let weak: Weak<State> = Arc::downgrade(state);
    let every = state.sample_every;
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let Some(state) = weak.upgrade() else { return };
            sample_all(&state).await;
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obs(secs: u64, ready: u64, dead: u64, counts: Option<Counts>) -> Observed {
        Observed {
            at: UNIX_EPOCH + Duration::from_secs(1_000_000 + secs),
            ready,
            in_flight: 0,
            delayed: 0,
            dead_letters: dead,
            counts,
        }
    }

    #[test]
    fn estimated_rates_from_counts() {
        let mut h = History::default();
        h.record(obs(0, 100, 0, None));
        assert_eq!(h.latest_rates(), (None, None));
        // 30 s later: 40 left the queue, 10 of them into the dead letters.
        h.record(obs(30, 60, 10, None));
        assert_eq!(h.latest_rates(), (Some(60.0), Some(20.0)));
        assert!(!h.counted);
    }

    #[test]
    fn counted_rates_from_counters() {
        let mut h = History::default();
        let c = |processed, failed| Some(Counts { processed, failed });
        h.record(obs(0, 5, 0, c(10, 1)));
        h.record(obs(60, 5, 0, c(130, 4)));
        assert_eq!(h.latest_rates(), (Some(120.0), Some(3.0)));
        assert!(h.counted);
    }

    #[test]
    fn keeps_one_hour() {
        let mut h = History::default();
        for i in 0..400 {
            h.record(obs(i * 10, i, 0, None));
        }
        let s = h.samples();
        assert_eq!(s.len(), 361);
        assert_eq!(s.last().unwrap().ready, 399);
    }
}
