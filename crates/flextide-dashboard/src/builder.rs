//! Building a [`Dashboard`] over the queues a user passes in.

use std::{fmt, sync::Arc, time::Duration};

use flextide_queue_core::{QueueProvider, validate_queue_name};

use crate::state::{Entry, State, random_hex};

/// Exact throughput counters of one queue's workers, for the rates the
/// dashboard shows; without them the rates are estimated from the counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Messages handled and deleted so far.
    pub processed: u64,
    /// Messages whose handling failed so far (retried or dead-lettered).
    pub failed: u64,
}

type CountsFn = Arc<dyn Fn() -> Counts + Send + Sync>;

/// A dashboard over some queues; [`Dashboard::router`] serves it.
#[derive(Clone)]
pub struct Dashboard {
    pub(crate) state: Arc<State>,
}

impl fmt::Debug for Dashboard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.state.queues.iter().map(|e| e.name.as_str()).collect();
        f.debug_struct("Dashboard")
            .field("queues", &names)
            .field("token", &self.state.token.as_ref().map(|_| "<redacted>"))
            .field("read_only", &self.state.read_only)
            .field("metrics", &self.state.metrics)
            .field("loopback_only", &self.state.loopback_only)
            .field("base_path", &self.state.base)
            .finish()
    }
}

impl Dashboard {
    /// Starts building a dashboard.
    pub fn builder() -> DashboardBuilder {
        DashboardBuilder::default()
    }

    /// The axum router of the dashboard: pages, `/api/*`, `/metrics` (when
    /// enabled) and `/static/*`. Starts the sampler that keeps the last
    /// hour of counts for the charts (one `stats()` per queue per sample),
    /// which stops when every router and handle of this dashboard is
    /// dropped. Must be called inside a Tokio runtime.
    pub fn router(&self) -> axum::Router {
        crate::history::spawn_sampler(&self.state);
        crate::routes::router(self.state.clone())
    }

    /// Serves the dashboard on `listener` until `shutdown` completes (then
    /// lets the requests in progress finish), as `flextide dashboard` does.
    pub async fn serve(
        &self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        axum::serve(listener, self.router())
            .with_graceful_shutdown(shutdown)
            .await
    }

    /// Takes one sample of every queue now (the sampler does this on its
    /// own every [`DashboardBuilder::sample_every`]).
    pub async fn sample_now(&self) {
        crate::history::sample_all(&self.state).await;
    }
}

/// Builder of a [`Dashboard`]; see [`Dashboard::builder`].
#[derive(Default)]
pub struct DashboardBuilder {
    queues: Vec<(String, Arc<dyn QueueProvider>, Option<CountsFn>)>,
    token: Option<String>,
    read_only: bool,
    metrics: bool,
    loopback_only: bool,
    base_path: String,
    sample_every: Option<Duration>,
}

impl fmt::Debug for DashboardBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.queues.iter().map(|q| q.0.as_str()).collect();
        f.debug_struct("DashboardBuilder")
            .field("queues", &names)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("read_only", &self.read_only)
            .finish_non_exhaustive()
    }
}

impl DashboardBuilder {
    /// Shows `queue` under `name` (a valid queue name, unique in this
    /// dashboard; usually the queue's own name).
    pub fn queue(mut self, name: impl Into<String>, queue: Arc<dyn QueueProvider>) -> Self {
        self.queues.push((name.into(), queue, None));
        self
    }

    /// Like [`DashboardBuilder::queue`], with exact counters of the workers
    /// that consume it (read at every sample), so processed and failed per
    /// minute are counted rather than estimated from the counts.
    pub fn queue_with_counts(
        mut self,
        name: impl Into<String>,
        queue: Arc<dyn QueueProvider>,
        counts: impl Fn() -> Counts + Send + Sync + 'static,
    ) -> Self {
        self.queues
            .push((name.into(), queue, Some(Arc::new(counts) as CountsFn)));
        self
    }

    /// Requires this token on every request except the login page and the
    /// static assets: as `Authorization: Bearer TOKEN`, or through the
    /// session cookie the login page sets after it was typed there.
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// Refuses every change (replay, purge): the forms are not shown and
    /// the requests get 403.
    pub fn read_only(mut self, read_only: bool) -> Self {
        self.read_only = read_only;
        self
    }

    /// Serves Prometheus metrics (OpenMetrics text) at `/metrics`.
    pub fn metrics(mut self, metrics: bool) -> Self {
        self.metrics = metrics;
        self
    }

    /// Refuses requests whose `Host` header is not `127.0.0.1`,
    /// `localhost` or `[::1]` (any port), so a web page cannot reach a
    /// dashboard on loopback through a DNS name of its own (DNS
    /// rebinding). `flextide dashboard` sets it when it listens on
    /// loopback without a token.
    pub fn loopback_only(mut self, loopback_only: bool) -> Self {
        self.loopback_only = loopback_only;
        self
    }

    /// The path the router is mounted at (`Router::nest`), for the links
    /// the pages and the script make; default: the root.
    pub fn base_path(mut self, base_path: impl Into<String>) -> Self {
        self.base_path = base_path.into();
        self
    }

    /// How often the sampler takes the counts of every queue for the
    /// charts and rates; default 10 s (the charts keep the last hour).
    pub fn sample_every(mut self, every: Duration) -> Self {
        self.sample_every = Some(every);
        self
    }

    /// Checks the names, the token and the base path.
    pub fn build(self) -> Result<Dashboard, BuildError> {
        if self.queues.is_empty() {
            return Err(BuildError(
                "no queue to show: add one with .queue(name, queue)".into(),
            ));
        }
        let mut entries = Vec::with_capacity(self.queues.len());
        for (name, queue, counts) in self.queues {
            validate_queue_name(&name).map_err(|e| BuildError(e.to_string()))?;
            if entries.iter().any(|e: &Entry| e.name == name) {
                return Err(BuildError(format!(
                    "the queue name {name} is given twice; each queue needs its own name"
                )));
            }
            entries.push(Entry::new(name, queue, counts));
        }
        if let Some(token) = &self.token
            && token.trim().len() < 16
        {
            return Err(BuildError(
                "the token is shorter than 16 characters; use a long random one (e.g. `openssl rand -hex 32`)".into(),
            ));
        }
        let base = self.base_path.trim_end_matches('/').to_owned();
        if !base.is_empty()
            && (!base.starts_with('/')
                || !base
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"/-_.".contains(&b)))
        {
            return Err(BuildError(format!(
                "base path {base:?} must start with '/' and hold only letters, digits, '/', '-', '_' and '.'"
            )));
        }
        let every = self.sample_every.unwrap_or(Duration::from_secs(10));
        if every < Duration::from_millis(100) {
            return Err(BuildError("sample_every must be at least 100 ms".into()));
        }
        Ok(Dashboard {
            state: Arc::new(State {
                queues: entries,
                token: self.token.map(|t| t.trim().to_owned()),
                session: random_hex(),
                csrf: random_hex(),
                read_only: self.read_only,
                metrics: self.metrics,
                loopback_only: self.loopback_only,
                base,
                sample_every: every,
                sampler_started: std::sync::atomic::AtomicBool::new(false),
            }),
        })
    }
}

/// A dashboard that cannot be built, saying what to change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildError(String);

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BuildError {}
