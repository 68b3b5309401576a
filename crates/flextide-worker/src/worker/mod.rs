//! The worker: fetches deliveries, runs the handler on them, settles them.
//!
//! Inside, one run is four kinds of task: the fetch loop (`fetch.rs`) pops
//! batches while there is room, the dispatch loop (`run.rs`) hands each
//! delivery to the handler service when a concurrency slot and the service
//! are ready, one task per delivery (`process.rs`) supervises the handler
//! (lease heartbeat, panics, cancellation) and settles the result
//! (`settle.rs`), and the ack loop (`ack.rs`) batches acknowledgements.

mod ack;
mod adapt;
mod fetch;
mod guard;
mod process;
pub(crate) mod run;
mod settle;

use std::{fmt, sync::Arc, time::Duration};

use flextide_queue_core::{Capabilities, QueueProvider};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tower::Service;

use crate::{
    Autoscale, BoxError, CircuitBreaker, Progress, RetryPolicy, Task, WorkerPool, WorkerReport,
    breaker::Breaker, metrics::Metrics, progress::Counters,
};

/// Settings shared by every worker of a run.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub(crate) concurrency: usize,
    pub(crate) prefetch: usize,
    pub(crate) fetch_batch: usize,
    /// Whether pop and ack batches adapt to the backlog (off once
    /// `prefetch` is set).
    pub(crate) adaptive: bool,
    pub(crate) poll_wait: Duration,
    pub(crate) retry: RetryPolicy,
    pub(crate) shutdown_timeout: Duration,
    pub(crate) abort_grace: Duration,
    pub(crate) heartbeat: bool,
    pub(crate) ack_batch: usize,
    pub(crate) ack_delay: Duration,
    pub(crate) ack_concurrency: usize,
    pub(crate) park_delay: Duration,
    pub(crate) stats_interval: Duration,
    pub(crate) handler_timeout: Option<Duration>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            concurrency: 16,
            prefetch: 16,
            fetch_batch: 512,
            adaptive: true,
            poll_wait: Duration::from_secs(1),
            retry: RetryPolicy::default(),
            shutdown_timeout: Duration::from_secs(30),
            abort_grace: Duration::from_secs(5),
            heartbeat: true,
            ack_batch: 128,
            ack_delay: Duration::from_millis(5),
            ack_concurrency: 4,
            park_delay: Duration::from_secs(3600),
            stats_interval: Duration::from_secs(5),
            handler_timeout: None,
        }
    }
}

/// What every task of a worker (or of all workers of a pool) shares.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) queue: Arc<dyn QueueProvider>,
    pub(crate) caps: Capabilities,
    pub(crate) queue_name: Arc<str>,
    pub(crate) backend: &'static str,
    pub(crate) config: Config,
    pub(crate) counters: Arc<Counters>,
    pub(crate) metrics: Metrics,
    pub(crate) breaker: Option<Breaker>,
    pub(crate) stale_log: settle::StaleLog,
    /// Rate-limits the warning about deliveries given back late.
    pub(crate) late_log: settle::StaleLog,
}

/// Builds a [`Worker`] (or a [`WorkerPool`]); start with [`Worker::builder`].
#[derive(Debug)]
pub struct WorkerBuilder {
    queue: Arc<dyn QueueProvider>,
    config: Config,
    breaker: Option<CircuitBreaker>,
}

impl WorkerBuilder {
    /// Gives up on a handler that runs longer than `timeout`: its future is
    /// dropped (its task's cancellation token is cancelled first) and the
    /// message is retried like any retryable failure, so a handler that
    /// hangs cannot hold its message forever while the heartbeat keeps the
    /// lease alive. Default: no limit.
    pub fn handler_timeout(mut self, timeout: Duration) -> Self {
        self.config.handler_timeout = Some(timeout);
        self
    }

    /// Handlers run at once. Default 16.
    pub fn concurrency(mut self, n: usize) -> Self {
        self.config.concurrency = n.max(1);
        self
    }

    /// Fixes the prefetch: deliveries fetched ahead of free slots, so a
    /// handler finishing finds the next message waiting. At most
    /// `concurrency + prefetch` deliveries are held (leased) at once, and
    /// pop and ack batches no longer adapt to the backlog. 0 fetches only
    /// for free slots.
    ///
    /// Unset (the default), the prefetch is 16 while the queue is shallow
    /// and grows with the backlog: when pops come back full, the pop size
    /// doubles up to [`fetch_batch`](Self::fetch_batch), the worker may hold
    /// about three pops' worth, and acks are sent in batches as large as a
    /// pop; a pop less than half full halves it again. A delivery that
    /// waited an eighth of its lease before it started halves it too, and
    /// one that waits half its lease without a free slot is given back
    /// (released) rather than left to lose its lease. See
    /// `docs/benchmarks.md` for what it buys.
    pub fn prefetch(mut self, n: usize) -> Self {
        self.config.prefetch = n;
        self.config.adaptive = false;
        self
    }

    /// Largest `pop_batch` asked for (also capped by the backend's
    /// `max_batch`): how far the adaptive prefetch grows pops on a deep
    /// backlog. Default 512.
    pub fn fetch_batch(mut self, n: usize) -> Self {
        self.config.fetch_batch = n.max(1);
        self
    }

    /// How long one fetch waits on an empty queue (the long-poll time).
    /// Default 1 s.
    pub fn poll_wait(mut self, wait: Duration) -> Self {
        self.config.poll_wait = wait;
        self
    }

    /// Backoff and attempt limit for retryable failures.
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.config.retry = policy;
        self
    }

    /// How long a shutdown lets running handlers finish before it cancels
    /// them and nacks their messages. Default 30 s.
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.config.shutdown_timeout = timeout;
        self
    }

    /// Extends leases of running handlers before they expire (on backends
    /// that can). Default on.
    pub fn heartbeat(mut self, on: bool) -> Self {
        self.config.heartbeat = on;
        self
    }

    /// Acknowledgements are sent in batches of up to `n` (also capped by the
    /// backend's `max_batch`), or after `delay` once the first is waiting,
    /// whichever comes first; also at once when no other delivery the
    /// worker holds could still join the batch. Defaults 128 and 5 ms.
    pub fn ack_batching(mut self, n: usize, delay: Duration) -> Self {
        self.config.ack_batch = n.max(1);
        self.config.ack_delay = delay;
        self
    }

    /// On a backend without dead letters, a message that should be
    /// dead-lettered is nacked with this delay instead (capped by the
    /// backend's `max_delay`) and an error is logged. Default 1 hour.
    pub fn park_delay(mut self, delay: Duration) -> Self {
        self.config.park_delay = delay;
        self
    }

    /// How often queue depth, in-flight and utilisation gauges are updated.
    /// Default 5 s. (A pool uses its autoscale check interval.)
    pub fn stats_interval(mut self, interval: Duration) -> Self {
        self.config.stats_interval = interval;
        self
    }

    /// Adds a circuit breaker that pauses fetching while handlers fail.
    pub fn circuit_breaker(mut self, breaker: CircuitBreaker) -> Self {
        self.breaker = Some(breaker);
        self
    }

    fn shared(self) -> Arc<Shared> {
        let caps = self.queue.capabilities();
        let mut config = self.config;
        if let Some(max) = caps.max_batch {
            config.fetch_batch = config.fetch_batch.min(max.max(1));
            config.ack_batch = config.ack_batch.min(max.max(1));
        }
        let queue_name: Arc<str> = Arc::from(self.queue.queue_name());
        let backend = self.queue.backend_name();
        Arc::new(Shared {
            metrics: Metrics::new(&queue_name, backend),
            caps,
            queue_name,
            backend,
            config,
            counters: Arc::new(Counters::default()),
            breaker: self.breaker.map(Breaker::new),
            stale_log: settle::StaleLog::new(Duration::from_secs(10)),
            late_log: settle::StaleLog::new(Duration::from_secs(10)),
            queue: self.queue,
        })
    }

    /// Builds a worker running `handler` on every message.
    ///
    /// The handler is any `tower::Service<Task>`: a [`handler_fn`](crate::handler_fn),
    /// possibly wrapped in tower layers (`TimeoutLayer`, `ConcurrencyLimitLayer`,
    /// `RateLimitLayer`, …). Its readiness is respected, so a rate limit
    /// slows fetching down too.
    pub fn build<S>(self, handler: S) -> Worker<S>
    where
        S: Service<Task> + Send + 'static,
        S::Future: Send + 'static,
        S::Error: Into<BoxError>,
    {
        Worker {
            shared: self.shared(),
            service: handler,
        }
    }

    /// Builds a pool of workers between `autoscale.min_workers` and
    /// `autoscale.max_workers`, each with this builder's concurrency and a
    /// clone of `handler`, scaled by queue depth and utilisation.
    pub fn build_pool<S>(self, handler: S, autoscale: Autoscale) -> WorkerPool<S>
    where
        S: Service<Task> + Clone + Send + 'static,
        S::Future: Send + 'static,
        S::Error: Into<BoxError>,
    {
        WorkerPool::new(self.shared(), handler, autoscale)
    }
}

/// Pulls messages from a queue and runs a handler on each, with retries,
/// dead letters, lease heartbeats, batching and graceful shutdown.
///
/// ```no_run
/// use std::sync::Arc;
/// use flextide_worker::{handler_fn, CancellationToken, HandlerError, RetryPolicy, Task, Worker};
/// # async fn f(queue: Arc<dyn flextide_queue_core::QueueProvider>) {
/// let worker = Worker::builder(queue)
///     .concurrency(32)
///     .retry(RetryPolicy::default().max_attempts(5))
///     .build(handler_fn(|task: Task| async move {
///         println!("{} (attempt {})", task.id(), task.attempt());
///         Ok::<_, HandlerError>(())
///     }));
/// let report = worker.run(flextide_worker::shutdown_on_signal()).await;
/// println!("{} processed, {} dead-lettered", report.processed, report.dead_lettered);
/// # }
/// ```
pub struct Worker<S> {
    shared: Arc<Shared>,
    service: S,
}

impl<S> fmt::Debug for Worker<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Worker")
            .field("queue", &self.shared.queue_name)
            .field("backend", &self.shared.backend)
            .field("config", &self.shared.config)
            .finish_non_exhaustive()
    }
}

impl Worker<()> {
    /// Starts building a worker on `queue`.
    pub fn builder(queue: Arc<dyn QueueProvider>) -> WorkerBuilder {
        WorkerBuilder {
            queue,
            config: Config::default(),
            breaker: None,
        }
    }
}

impl<S> Worker<S>
where
    S: Service<Task> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
{
    pub(crate) fn from_parts(shared: Arc<Shared>, service: S) -> Self {
        Worker { shared, service }
    }

    /// Live counters of this worker, readable while it runs.
    pub fn progress(&self) -> Progress {
        Progress {
            counters: self.shared.counters.clone(),
        }
    }

    /// Runs until `shutdown` is cancelled (or the handler service fails),
    /// then shuts down gracefully: stops fetching, nacks prefetched
    /// deliveries, lets running handlers finish for up to the shutdown
    /// timeout, then cancels the rest and nacks them so they are delivered
    /// again at once, and flushes pending acknowledgements.
    pub async fn run(self, shutdown: CancellationToken) -> WorkerReport {
        use std::sync::atomic::Ordering;
        let started = Instant::now();
        let shared = self.shared.clone();
        shared.counters.workers.fetch_add(1, Ordering::Relaxed);
        let stop_monitor = CancellationToken::new();
        let monitor = tokio::spawn(run::monitor(shared.clone(), stop_monitor.clone()));
        let (still_running, error) = self.run_in_pool(shutdown).await;
        shared.counters.workers.fetch_sub(1, Ordering::Relaxed);
        stop_monitor.cancel();
        let _ = monitor.await;
        let progress = Progress {
            counters: shared.counters.clone(),
        };
        WorkerReport::new(progress.snapshot(), still_running, started.elapsed(), error)
    }

    /// The run without gauges and worker counting (the pool does those):
    /// returns the handlers still running at the end and the error that
    /// stopped the worker, if any.
    pub(crate) async fn run_in_pool(self, shutdown: CancellationToken) -> (usize, Option<String>) {
        run::drive(self.shared, self.service, shutdown).await
    }
}
