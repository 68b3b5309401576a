//! A circuit breaker in front of the fetch loop: when too many handlers
//! fail (a database down, an API refusing), stop taking messages for a
//! while instead of burning their attempts, then let one probe through.

use std::{
    collections::VecDeque,
    pin::pin,
    sync::{Mutex, atomic::Ordering},
    time::Duration,
};

use tokio::{sync::Notify, time::Instant};
use tracing::{info, warn};

use crate::{BreakerState, metrics::Metrics, progress::Counters};

/// Settings of the circuit breaker (opt in with
/// [`WorkerBuilder::circuit_breaker`](crate::WorkerBuilder::circuit_breaker)).
///
/// Results are kept over a sliding window: the last `window` results, none
/// older than `window_duration`. When at least `min_results` are in the
/// window and the share of failures reaches `failure_rate`, the breaker
/// opens: no message is fetched for `cool_down`. Then it is half-open and
/// fetches one probe message: a success closes it, a failure opens it again.
///
/// Failures here are retryable errors and panics: the signs of a broken
/// dependency. Fatal errors are about one message and do not count, so a
/// run of poison messages never stops the worker.
#[derive(Debug, Clone, PartialEq)]
pub struct CircuitBreaker {
    /// Results kept. Default 20.
    pub window: usize,
    /// Oldest result kept. Default 30 s.
    pub window_duration: Duration,
    /// Results needed before the breaker may open. Default 10.
    pub min_results: usize,
    /// Failure share that opens the breaker. Default 0.5.
    pub failure_rate: f64,
    /// Time the breaker stays open before the probe. Default 30 s.
    pub cool_down: Duration,
}

impl Default for CircuitBreaker {
    fn default() -> Self {
        CircuitBreaker {
            window: 20,
            window_duration: Duration::from_secs(30),
            min_results: 10,
            failure_rate: 0.5,
            cool_down: Duration::from_secs(30),
        }
    }
}

impl CircuitBreaker {
    /// Sets [`CircuitBreaker::window`] (at least 1).
    pub fn window(mut self, window: usize) -> Self {
        self.window = window.max(1);
        self
    }

    /// Sets [`CircuitBreaker::window_duration`].
    pub fn window_duration(mut self, d: Duration) -> Self {
        self.window_duration = d;
        self
    }

    /// Sets [`CircuitBreaker::min_results`] (at least 1).
    pub fn min_results(mut self, n: usize) -> Self {
        self.min_results = n.max(1);
        self
    }

    /// Sets [`CircuitBreaker::failure_rate`].
    pub fn failure_rate(mut self, rate: f64) -> Self {
        self.failure_rate = rate;
        self
    }

    /// Sets [`CircuitBreaker::cool_down`].
    pub fn cool_down(mut self, d: Duration) -> Self {
        self.cool_down = d;
        self
    }
}

/// What the fetch loop may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admit {
    /// As many as there is room for.
    Batch,
    /// Exactly one message, the half-open probe.
    Probe,
}

#[derive(Debug)]
enum State {
    Closed,
    Open { until: Instant },
    HalfOpen { probe_out: bool },
}

#[derive(Debug)]
struct Inner {
    state: State,
    results: VecDeque<(Instant, bool)>,
    failures: usize,
}

#[derive(Debug)]
pub(crate) struct Breaker {
    config: CircuitBreaker,
    inner: Mutex<Inner>,
    changed: Notify,
}

impl Breaker {
    pub(crate) fn new(config: CircuitBreaker) -> Self {
        Breaker {
            config,
            inner: Mutex::new(Inner {
                state: State::Closed,
                results: VecDeque::new(),
                failures: 0,
            }),
            changed: Notify::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Admits a fetch now, or says until when to wait (`None`: until a
    /// result arrives).
    fn try_admit(&self, counters: &Counters, metrics: &Metrics) -> Result<Admit, Option<Instant>> {
        let mut inner = self.lock();
        loop {
            match inner.state {
                State::Closed => return Ok(Admit::Batch),
                State::Open { until } => {
                    if Instant::now() < until {
                        return Err(Some(until));
                    }
                    inner.state = State::HalfOpen { probe_out: false };
                    publish(BreakerState::HalfOpen, counters, metrics);
                    info!("circuit breaker half-open: fetching one probe message");
                }
                State::HalfOpen { ref mut probe_out } => {
                    if *probe_out {
                        return Err(None);
                    }
                    *probe_out = true;
                    return Ok(Admit::Probe);
                }
            }
        }
    }

    /// Waits until the fetch loop may take messages.
    pub(crate) async fn admit(&self, counters: &Counters, metrics: &Metrics) -> Admit {
        loop {
            let mut changed = pin!(self.changed.notified());
            changed.as_mut().enable();
            match self.try_admit(counters, metrics) {
                Ok(admit) => return admit,
                Err(Some(until)) => {
                    tokio::select! {
                        _ = tokio::time::sleep_until(until) => {}
                        _ = changed => {}
                    }
                }
                Err(None) => changed.await,
            }
        }
    }

    /// The probe fetch found nothing: another may be tried.
    pub(crate) fn probe_unused(&self) {
        let mut inner = self.lock();
        if let State::HalfOpen { probe_out } = &mut inner.state {
            *probe_out = false;
        }
        drop(inner);
        self.changed.notify_waiters();
    }

    /// Records a handler's result: `Some(true)` success, `Some(false)` a
    /// failure that counts, `None` neither (fatal error, shutdown).
    pub(crate) fn record(
        &self,
        result: Option<bool>,
        probe: bool,
        counters: &Counters,
        metrics: &Metrics,
    ) {
        let mut inner = self.lock();
        let now = Instant::now();
        match inner.state {
            State::Closed => {
                let Some(ok) = result else { return };
                inner.results.push_back((now, ok));
                if !ok {
                    inner.failures += 1;
                }
                let horizon = now.checked_sub(self.config.window_duration);
                while inner.results.len() > self.config.window.max(1)
                    || horizon.is_some_and(|h| inner.results.front().is_some_and(|(t, _)| *t < h))
                {
                    if let Some((_, false)) = inner.results.pop_front() {
                        inner.failures -= 1;
                    }
                }
                let n = inner.results.len();
                if n >= self.config.min_results
                    && inner.failures as f64 >= self.config.failure_rate * n as f64
                {
                    warn!(
                        failures = inner.failures,
                        results = n,
                        cool_down = ?self.config.cool_down,
                        "circuit breaker open: handlers are failing; pausing fetches"
                    );
                    self.open(&mut inner, now, counters, metrics);
                }
            }
            // Results of messages fetched before the breaker opened.
            State::Open { .. } => return,
            State::HalfOpen { .. } => match result {
                Some(true) => {
                    info!("circuit breaker closed: the probe succeeded");
                    inner.state = State::Closed;
                    inner.results.clear();
                    inner.failures = 0;
                    publish(BreakerState::Closed, counters, metrics);
                }
                Some(false) => {
                    warn!(cool_down = ?self.config.cool_down, "circuit breaker open again: the probe failed");
                    self.open(&mut inner, now, counters, metrics);
                }
                None if probe => inner.state = State::HalfOpen { probe_out: false },
                None => return,
            },
        }
        drop(inner);
        self.changed.notify_waiters();
    }

    fn open(&self, inner: &mut Inner, now: Instant, counters: &Counters, metrics: &Metrics) {
        inner.state = State::Open {
            until: now + self.config.cool_down,
        };
        inner.results.clear();
        inner.failures = 0;
        publish(BreakerState::Open, counters, metrics);
    }
}

fn publish(state: BreakerState, counters: &Counters, metrics: &Metrics) {
    counters.breaker.store(state.to_u8(), Ordering::Relaxed);
    metrics.breaker.set(state.to_u8() as f64);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts() -> (Counters, Metrics) {
        (Counters::default(), Metrics::new("q", "test"))
    }

    #[tokio::test(start_paused = true)]
    async fn opens_on_failure_rate_then_probes() {
        let (c, m) = parts();
        let b = Breaker::new(
            CircuitBreaker::default()
                .min_results(4)
                .cool_down(Duration::from_secs(10)),
        );
        for ok in [true, false, true] {
            b.record(Some(ok), false, &c, &m);
        }
        assert_eq!(b.try_admit(&c, &m), Ok(Admit::Batch));
        b.record(Some(false), false, &c, &m); // 2 of 4 failed: 50 %
        assert!(matches!(b.try_admit(&c, &m), Err(Some(_))));
        assert_eq!(
            c.breaker.load(Ordering::Relaxed),
            BreakerState::Open.to_u8()
        );

        let start = Instant::now();
        assert_eq!(b.admit(&c, &m).await, Admit::Probe);
        assert_eq!(start.elapsed(), Duration::from_secs(10));
        // Only one probe at a time.
        assert_eq!(b.try_admit(&c, &m), Err(None));
        b.record(Some(false), true, &c, &m);
        assert!(matches!(b.try_admit(&c, &m), Err(Some(_))));
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert_eq!(b.try_admit(&c, &m), Ok(Admit::Probe));
        b.record(Some(true), true, &c, &m);
        assert_eq!(b.try_admit(&c, &m), Ok(Admit::Batch));
        assert_eq!(
            c.breaker.load(Ordering::Relaxed),
            BreakerState::Closed.to_u8()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn old_results_and_neutral_results_do_not_count() {
        let (c, m) = parts();
        let b = Breaker::new(
            CircuitBreaker::default()
                .min_results(2)
                .window_duration(Duration::from_secs(5)),
        );
        b.record(Some(false), false, &c, &m);
        tokio::time::sleep(Duration::from_secs(6)).await;
        b.record(Some(true), false, &c, &m);
        b.record(None, false, &c, &m);
        assert_eq!(
            b.try_admit(&c, &m),
            Ok(Admit::Batch),
            "the old failure left the window"
        );
        // A probe that fetched nothing can be retried.
        b.record(Some(false), false, &c, &m);
        b.record(Some(false), false, &c, &m);
        tokio::time::sleep(Duration::from_secs(31)).await;
        assert_eq!(b.try_admit(&c, &m), Ok(Admit::Probe));
        b.probe_unused();
        assert_eq!(b.try_admit(&c, &m), Ok(Admit::Probe));
    }
}
