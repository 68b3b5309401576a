#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

mod codec;
mod config;
mod conn;
mod connector;
mod error;
mod names;
mod queue;
mod receipt;

use std::{fmt, sync::Arc};

use flextide_queue_core::{Result, validate_queue_name};

pub use config::{EMULATOR_ENV, PROJECT_VARS, PUBSUB_MAX_BATCH, PubSubConfig};
pub use connector::PubSubConnector;
pub use flextide_queue_core::{
    Capabilities, Connector, DeadLetter, Delivery, Message, QueueError, QueueOptions,
    QueueProvider, QueueStats, Receipt, Replay,
};
pub use queue::PubSubQueue;

/// The backend's short name, used in errors and logs.
pub const BACKEND: &str = "pubsub";

/// The URL scheme this backend opens.
pub const SCHEMES: &[&str] = &["pubsub"];

/// A Google Cloud project's Pub/Sub (or an emulator): opens queues on it.
///
/// A queue is a topic and one pull subscription, named after the queue
/// (`ftq-<name>`), plus a dead-letter topic and subscription
/// (`ftq-<name>.dlq`). Each opened [`PubSubQueue`] has gRPC connections
/// of its own. Credentials come from Google's standard chain
/// (`GOOGLE_APPLICATION_CREDENTIALS`, the metadata server, gcloud's
/// application-default credentials) and never appear in errors, logs or
/// `Debug` output.
#[derive(Clone)]
pub struct PubSub {
    config: Arc<PubSubConfig>,
}

impl fmt::Debug for PubSub {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PubSub")
            .field("project", &self.config.project)
            .field("emulator", &self.config.emulator)
            .field("exactly_once", &self.config.exactly_once)
            .field("prefix", &self.config.prefix)
            .finish()
    }
}

impl PubSub {
    /// A client for the project and emulator a `pubsub:` URL names
    /// (`pubsub://PROJECT?emulator=HOST:PORT&exactly_once=true`), filling in
    /// what it leaves out from `GOOGLE_CLOUD_PROJECT` and
    /// `PUBSUB_EMULATOR_HOST`. Nothing is connected until a queue is opened.
    pub fn new(url: &str) -> Result<Self> {
        Self::with_config(PubSubConfig::from_url(url)?)
    }

    /// A client with the given configuration.
    pub fn with_config(config: PubSubConfig) -> Result<Self> {
        config.check()?;
        Ok(PubSub {
            config: Arc::new(config),
        })
    }

    /// A client for `pubsub:`: the project and emulator from the environment.
    pub fn from_env() -> Result<Self> {
        Self::new("pubsub:")
    }

    /// The configuration in use.
    pub fn config(&self) -> &PubSubConfig {
        &self.config
    }

    /// Opens the queue `name`. Creates nothing: the topics and
    /// subscriptions are created by the queue's first push or pop when they
    /// do not exist yet, and read-only calls on a queue that does not exist
    /// answer as for an empty one.
    pub async fn open(&self, name: &str, options: QueueOptions) -> Result<PubSubQueue> {
        validate_queue_name(name)?;
        PubSubQueue::open(self.config.clone(), name, options).await
    }

    /// Creates the queue `name` now (`ensure_queue`): its topic, its
    /// dead-letter topic and subscription, and its subscription with the
    /// lease as ack deadline and the dead-letter policy. Idempotent: what
    /// exists is left as it is.
    pub async fn create_queue(&self, name: &str, options: QueueOptions) -> Result<()> {
        let q = self.open(name, options).await?;
        q.create().await
    }

    /// Deletes the queue `name`: its subscriptions and topics. Parts that
    /// do not exist are skipped.
    pub async fn drop_queue(&self, name: &str) -> Result<()> {
        let q = self.open(name, QueueOptions::default()).await?;
        QueueProvider::drop_queue(&q).await
    }

    /// The names of the queues in the project: the subscriptions named
    /// `<prefix><name>` (dead-letter subscriptions are not listed), sorted.
    pub async fn queue_names(&self) -> Result<Vec<String>> {
        let conn = conn::Conn::open(&self.config).await?;
        let project = match (&self.config.project, &conn.project) {
            (Some(p), _) | (None, Some(p)) => p.clone(),
            (None, None) => self.config.project()?.to_owned(),
        };
        conn.list_subscription_names(&self.config, &names::Names::project_paths(&project))
            .await
    }
}
