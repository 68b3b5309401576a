#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

mod codec;
mod config;
mod connector;
mod error;
mod layout;
mod queue;
mod receipt;
mod schedule;

use std::{fmt, sync::Arc};

use flextide_queue_core::{Result, redact_url, validate_queue_name};

pub use config::{NatsConfig, Storage};
pub use connector::NatsConnector;
pub use flextide_queue_core::{
    Capabilities, Connector, DeadLetter, Delivery, Message, QueueError, QueueOptions,
    QueueProvider, QueueStats, Receipt, Replay,
};
pub use queue::NatsQueue;

/// The backend's short name, used in errors and logs.
pub const BACKEND: &str = "nats";

/// The URL schemes this backend opens (`tls://` is NATS's own scheme for a
/// TLS connection).
pub const SCHEMES: &[&str] = &["nats", "tls"];

/// The environment variable [`Nats::from_env`] reads the server URL from:
/// the one the `nats` command-line tool and NATS clients already read.
pub const URL_ENV: &str = "NATS_URL";

/// What every queue of one client shares: the URL (with its credentials:
/// never printed), a printable form without them, and the configuration.
pub(crate) struct Settings {
    pub(crate) url: String,
    pub(crate) shown: String,
    pub(crate) config: NatsConfig,
}

/// A NATS server with JetStream enabled: opens queues on it.
///
/// Each opened [`NatsQueue`] has its own NATS connection, which async-nats
/// re-establishes by itself after it drops. A receipt is the delivery's
/// JetStream ack subject, so any handle of the queue (in any process) can
/// settle it. The URL's credentials never appear in errors, logs or `Debug`
/// output.
#[derive(Clone)]
pub struct Nats {
    settings: Arc<Settings>,
}

impl fmt::Debug for Nats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Nats")
            .field("url", &self.settings.shown)
            .field("config", &self.settings.config)
            .finish()
    }
}

impl Nats {
    /// A client for the server at `url` (`nats://user:password@host:4222`,
    /// `tls://host:4222`), with the default configuration. Nothing is
    /// connected until a queue is opened.
    pub fn new(url: &str) -> Result<Self> {
        Self::with_config(url, NatsConfig::default())
    }

    /// A client with the given configuration.
    pub fn with_config(url: &str, config: NatsConfig) -> Result<Self> {
        config.check()?;
        if url.trim().is_empty() {
            return Err(QueueError::configuration(
                BACKEND,
                "the NATS URL is empty; set NATS_URL=nats://host:4222",
            ));
        }
        Ok(Nats {
            settings: Arc::new(Settings {
                url: url.to_owned(),
                shown: redact_url(url),
                config,
            }),
        })
    }

    /// A client for the URL in `NATS_URL`.
    pub fn from_env() -> Result<Self> {
        let url = std::env::var(URL_ENV).map_err(|_| {
            QueueError::configuration(BACKEND, format!("set {URL_ENV}=nats://host:4222"))
        })?;
        Self::new(&url)
    }

    /// The server's address without credentials.
    pub fn address(&self) -> &str {
        &self.settings.shown
    }

    /// The configuration in use.
    pub fn config(&self) -> &NatsConfig {
        &self.settings.config
    }

    /// Opens the queue `name`. Creates nothing on the server: the queue's
    /// work-queue stream, durable pull consumer and dead-letter stream are
    /// created by its first push or pop when they do not exist yet, and
    /// `stats`, dead-letter listing and purges of a queue that does not
    /// exist answer as for an empty queue, creating nothing.
    pub async fn open(&self, name: &str, options: QueueOptions) -> Result<NatsQueue> {
        validate_queue_name(name)?;
        NatsQueue::open(self.settings.clone(), name, options).await
    }

    /// Creates the queue `name` now: its work-queue stream, its durable
    /// pull consumer (with `options.lease` as its `ack_wait`) and its
    /// dead-letter stream. Idempotent: what exists is left as it is.
    pub async fn create_queue(&self, name: &str, options: QueueOptions) -> Result<()> {
        validate_queue_name(name)?;
        if options.lease < std::time::Duration::from_millis(1) {
            return Err(QueueError::configuration(
                BACKEND,
                "the lease must be at least 1 ms",
            ));
        }
        let client = queue::connect(&self.settings, &format!("create/{name}")).await?;
        let js = queue::jetstream(&client, &self.settings.config);
        let server_schedules = schedule::supported(&client.server_info().version);
        let created = error::timed(
            "create",
            self.settings.config.operation_timeout,
            queue::create(
                &js,
                &self.settings.config,
                name,
                server_schedules,
                options.lease,
            ),
        )
        .await;
        let _ = client.drain().await;
        created.map(|_| ())
    }

    /// The names of the queues on the server (those with a work-queue
    /// stream `FTQ_<name>`), sorted. Dead-letter streams are not listed.
    pub async fn queue_names(&self) -> Result<Vec<String>> {
        let client = queue::connect(&self.settings, "list").await?;
        let js = queue::jetstream(&client, &self.settings.config);
        let names = error::timed(
            "stream names",
            self.settings.config.operation_timeout,
            queue::queue_names(&js),
        )
        .await;
        let _ = client.drain().await;
        names
    }

    /// Deletes the queue `name`: its stream (with its consumer and delayed
    /// messages) and its dead-letter stream. A queue that does not exist is
    /// skipped.
    pub async fn drop_queue(&self, name: &str) -> Result<()> {
        validate_queue_name(name)?;
        let client = queue::connect(&self.settings, &format!("drop/{name}")).await?;
        let js = queue::jetstream(&client, &self.settings.config);
        let result = queue::drop_streams(&js, &self.settings.config, name).await;
        let _ = client.drain().await;
        result
    }
}
