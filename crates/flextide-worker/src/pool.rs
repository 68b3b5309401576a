//! A pool of workers on one queue that grows with the backlog and shrinks
//! when idle.

use std::{
    fmt,
    sync::{Arc, atomic::Ordering},
    time::Duration,
};

use tokio::{task::JoinHandle, time::Instant};
use tokio_util::sync::CancellationToken;
use tower::Service;
use tracing::{debug, info};

use crate::{
    BoxError, BreakerState, Progress, Task, Worker, WorkerReport,
    worker::{Shared, run::UtilizationMeter},
};

/// When a [`WorkerPool`] adds or removes workers.
///
/// Every `check_interval` the pool reads the queue's depth (`stats()`) and
/// the utilisation of its concurrency slots since the last check. It adds
/// `step` workers when the depth per worker is above
/// `scale_up_depth_per_worker` or utilisation above `scale_up_utilization`,
/// and removes `step` workers when utilisation has stayed below
/// `scale_down_utilization` for `scale_down_after`; after each change it
/// waits `cooldown`. A removed worker drains gracefully. Nothing changes
/// while the circuit breaker is not closed.
#[derive(Debug, Clone, PartialEq)]
pub struct Autoscale {
    /// Fewest workers. Default 1.
    pub min_workers: usize,
    /// Most workers. Default 8.
    pub max_workers: usize,
    /// Scale up when ready messages per worker exceed this. Default 10.
    pub scale_up_depth_per_worker: f64,
    /// Scale up when utilisation exceeds this. Default 0.8.
    pub scale_up_utilization: f64,
    /// Scale down when utilisation stays below this. Default 0.2.
    pub scale_down_utilization: f64,
    /// For this long. Default 30 s.
    pub scale_down_after: Duration,
    /// Time between checks. Default 5 s.
    pub check_interval: Duration,
    /// Pause after each change. Default 10 s.
    pub cooldown: Duration,
    /// Workers added or removed per change. Default 1.
    pub step: usize,
}

impl Default for Autoscale {
    fn default() -> Self {
        Autoscale {
            min_workers: 1,
            max_workers: 8,
            scale_up_depth_per_worker: 10.0,
            scale_up_utilization: 0.8,
            scale_down_utilization: 0.2,
            scale_down_after: Duration::from_secs(30),
            check_interval: Duration::from_secs(5),
            cooldown: Duration::from_secs(10),
            step: 1,
        }
    }
}

impl Autoscale {
    /// Between `min` and `max` workers (at least 1), other settings default.
    pub fn new(min: usize, max: usize) -> Self {
        let min = min.max(1);
        Autoscale {
            min_workers: min,
            max_workers: max.max(min),
            ..Autoscale::default()
        }
    }
}

/// The scaling decisions, apart from the clock and the queue.
#[derive(Debug)]
pub(crate) struct Scaler {
    config: Autoscale,
    low_since: Option<Instant>,
    last_change: Option<Instant>,
}

impl Scaler {
    pub(crate) fn new(config: Autoscale) -> Self {
        Scaler {
            config,
            low_since: None,
            last_change: None,
        }
    }

    /// How many workers there should be now.
    pub(crate) fn decide(
        &mut self,
        now: Instant,
        workers: usize,
        depth: Option<u64>,
        utilization: f64,
    ) -> usize {
        let c = &self.config;
        if utilization < c.scale_down_utilization {
            self.low_since.get_or_insert(now);
        } else {
            self.low_since = None;
        }
        if self.last_change.is_some_and(|t| now < t + c.cooldown) {
            return workers;
        }
        let depth_per_worker = depth.unwrap_or(0) as f64 / workers.max(1) as f64;
        let busy =
            depth_per_worker > c.scale_up_depth_per_worker || utilization > c.scale_up_utilization;
        let target = if busy && workers < c.max_workers {
            (workers + c.step.max(1)).min(c.max_workers)
        } else if !busy
            && workers > c.min_workers
            && self
                .low_since
                .is_some_and(|t| now.duration_since(t) >= c.scale_down_after)
        {
            workers.saturating_sub(c.step.max(1)).max(c.min_workers)
        } else {
            workers
        };
        if target != workers {
            self.last_change = Some(now);
        }
        target
    }
}

/// Several [`Worker`]s on one queue, each with a clone of the handler,
/// started and stopped by [`Autoscale`]. Build it with
/// [`WorkerBuilder::build_pool`](crate::WorkerBuilder::build_pool); the
/// builder's concurrency is per worker.
pub struct WorkerPool<S> {
    shared: Arc<Shared>,
    service: S,
    autoscale: Autoscale,
}

impl<S> fmt::Debug for WorkerPool<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WorkerPool")
            .field("queue", &self.shared.queue_name)
            .field("autoscale", &self.autoscale)
            .finish_non_exhaustive()
    }
}

type Running = (CancellationToken, JoinHandle<(usize, Option<String>)>);

impl<S> WorkerPool<S>
where
    S: Service<Task> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
{
    pub(crate) fn new(shared: Arc<Shared>, service: S, autoscale: Autoscale) -> Self {
        let mut autoscale = autoscale;
        autoscale.min_workers = autoscale.min_workers.max(1);
        autoscale.max_workers = autoscale.max_workers.max(autoscale.min_workers);
        WorkerPool {
            shared,
            service,
            autoscale,
        }
    }

    /// Live counters over all workers of the pool.
    pub fn progress(&self) -> Progress {
        Progress {
            counters: self.shared.counters.clone(),
        }
    }

    fn spawn(&self) -> Running {
        let token = CancellationToken::new();
        let worker = Worker::from_parts(self.shared.clone(), self.service.clone());
        (token.clone(), tokio::spawn(worker.run_in_pool(token)))
    }

    /// Runs until `shutdown` is cancelled (or a worker's handler service
    /// fails), then shuts every worker down gracefully (see
    /// [`Worker::run`]) and returns the totals.
    pub async fn run(self, shutdown: CancellationToken) -> WorkerReport {
        let started = Instant::now();
        let shared = self.shared.clone();
        let mut scaler = Scaler::new(self.autoscale.clone());
        let mut active: Vec<Running> = (0..self.autoscale.min_workers)
            .map(|_| self.spawn())
            .collect();
        let mut retiring: Vec<JoinHandle<(usize, Option<String>)>> = Vec::new();
        let publish = |n: usize| {
            shared.counters.workers.store(n, Ordering::Relaxed);
            shared.metrics.workers.set(n as f64);
        };
        publish(active.len());
        let mut meter = UtilizationMeter::new(&shared);
        let mut tick = tokio::time::interval(self.autoscale.check_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tick.tick() => {}
            }
            // A worker that ended on its own had its service fail: stop all.
            if active.iter().any(|(_, handle)| handle.is_finished()) {
                break;
            }
            retiring.retain(|handle| !handle.is_finished());
            let utilization = meter.sample(&shared);
            let depth = shared.queue.stats().await.ok().map(|s| s.depth);
            if let Some(depth) = depth {
                shared.metrics.depth.set(depth as f64);
            }
            if shared.counters.breaker.load(Ordering::Relaxed) != BreakerState::Closed.to_u8() {
                continue;
            }
            let target = scaler.decide(Instant::now(), active.len(), depth, utilization);
            debug!(
                workers = active.len(),
                target,
                ?depth,
                utilization,
                "autoscale check"
            );
            if target != active.len() {
                info!(queue = %shared.queue_name, from = active.len(), to = target, ?depth, utilization, "scaling the worker pool");
            }
            while active.len() < target {
                active.push(self.spawn());
            }
            while active.len() > target {
                if let Some((token, handle)) = active.pop() {
                    token.cancel();
                    retiring.push(handle);
                }
            }
            publish(active.len());
        }

        for (token, _) in &active {
            token.cancel();
        }
        let mut still_running = 0;
        let mut error = None;
        for handle in active.into_iter().map(|(_, h)| h).chain(retiring) {
            if let Ok((running, e)) = handle.await {
                still_running += running;
                error = error.or(e);
            }
        }
        publish(0);
        WorkerReport::new(
            self.progress().snapshot(),
            still_running,
            started.elapsed(),
            error,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scales_up_on_depth_and_utilization_with_cooldown() {
        let t0 = Instant::now();
        let s = |secs| t0 + Duration::from_secs(secs);
        let mut scaler = Scaler::new(Autoscale::new(1, 3));
        assert_eq!(scaler.decide(s(0), 1, Some(5), 0.5), 1);
        assert_eq!(
            scaler.decide(s(5), 1, Some(11), 0.5),
            2,
            "depth per worker above 10"
        );
        assert_eq!(scaler.decide(s(10), 2, Some(1000), 0.9), 2, "cooldown");
        assert_eq!(
            scaler.decide(s(15), 2, Some(0), 0.9),
            3,
            "utilisation above 80 %"
        );
        assert_eq!(scaler.decide(s(30), 3, Some(1000), 1.0), 3, "at max");
    }

    #[test]
    fn scales_down_after_sustained_idleness() {
        let t0 = Instant::now();
        let s = |secs| t0 + Duration::from_secs(secs);
        let mut scaler = Scaler::new(Autoscale::new(1, 4));
        assert_eq!(scaler.decide(s(0), 3, Some(0), 0.1), 3);
        assert_eq!(
            scaler.decide(s(20), 3, Some(0), 0.5),
            3,
            "busy again: the idle clock restarts"
        );
        assert_eq!(scaler.decide(s(25), 3, Some(0), 0.1), 3);
        assert_eq!(
            scaler.decide(s(50), 3, Some(0), 0.1),
            3,
            "idle for 25 s only"
        );
        assert_eq!(scaler.decide(s(55), 3, Some(0), 0.1), 2);
        assert_eq!(scaler.decide(s(60), 2, Some(0), 0.0), 2, "cooldown");
        assert_eq!(scaler.decide(s(65), 2, Some(0), 0.0), 1);
        assert_eq!(scaler.decide(s(100), 1, Some(0), 0.0), 1, "at min");
    }
}
