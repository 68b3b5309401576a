#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

mod codec;
mod config;
mod connector;
mod delay;
mod error;
mod link;
mod queue;

use std::{
    fmt,
    str::FromStr,
    sync::{Arc, atomic::AtomicUsize},
};

use flextide_queue_core::{Result, validate_queue_name};
use lapin::uri::AMQPUri;

pub use config::{QueueType, RabbitMqConfig};
pub use connector::RabbitMqConnector;
pub use flextide_queue_core::{
    Capabilities, Connector, DeadLetter, Delivery, Message, QueueError, QueueOptions,
    QueueProvider, QueueStats, Receipt, Replay,
};
pub use queue::RabbitMqQueue;

/// The backend's short name, used in errors and logs.
pub const BACKEND: &str = "rabbitmq";

/// The URL schemes this backend opens.
pub const SCHEMES: &[&str] = &["amqp", "amqps"];

/// The environment variable [`RabbitMq::from_env`] reads the broker URL
/// from: the one AMQP tools and hosting platforms already set.
pub const URL_ENV: &str = "AMQP_URL";

/// What every handle of one client shares: the parsed URL (with its
/// password: never printed), a printable form without credentials, the
/// configuration, and the client's live handles.
pub(crate) struct Settings {
    /// The nodes of the broker (one, or several of a cluster, from a
    /// comma-separated URL list), tried in turn when connecting.
    pub(crate) uris: Vec<AMQPUri>,
    /// The node the next connection tries first: connections spread over a
    /// cluster's nodes, and a connection lost with its node moves on.
    pub(crate) next_node: AtomicUsize,
    /// `amqp://host:port/vhost` (comma-separated for a cluster), safe to show.
    pub(crate) shown: String,
    pub(crate) config: RabbitMqConfig,
    pub(crate) handles: queue::Handles,
}

/// A RabbitMQ broker: opens queues on it.
///
/// Each opened [`RabbitMqQueue`] has its own AMQP connection (one publishing
/// and one consuming channel), which it re-establishes by itself after the
/// connection drops. A receipt can be settled through any handle of its
/// queue opened by the same client (or a clone of it): the client knows its
/// handles. The URL's password never appears in errors, logs or `Debug`
/// output.
#[derive(Clone)]
pub struct RabbitMq {
    settings: Arc<Settings>,
}

impl fmt::Debug for RabbitMq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RabbitMq")
            .field("url", &self.settings.shown)
            .field("config", &self.settings.config)
            .finish()
    }
}

impl RabbitMq {
    /// A client for the broker at `url` (`amqp://user:password@host:5672/%2f`),
    /// with the default configuration. Nothing is connected until a queue is opened.
    ///
    /// For a cluster, `url` may list several nodes separated by commas
    /// (`amqp://u:p@host1:5672/%2f,amqp://u:p@host2:5672/%2f`): each
    /// connection tries them in turn, starting with the next node in the
    /// list, so a handle whose node dies reconnects to another one.
    pub fn new(url: &str) -> Result<Self> {
        Self::with_config(url, RabbitMqConfig::default())
    }

    /// A client with the given configuration.
    pub fn with_config(url: &str, config: RabbitMqConfig) -> Result<Self> {
        let mut uris = Vec::new();
        let mut shown = Vec::new();
        for one in url.split(',').map(str::trim) {
            let (uri, one_shown) = parse_uri(one)?;
            uris.push(uri);
            shown.push(one_shown);
        }
        let shown = shown.join(",");
        if config.max_batch == 0 || config.max_prefetch == 0 {
            return Err(QueueError::configuration(
                BACKEND,
                "max_batch and max_prefetch must be at least 1",
            ));
        }
        Ok(RabbitMq {
            settings: Arc::new(Settings {
                uris,
                next_node: AtomicUsize::new(0),
                shown,
                config,
                handles: queue::Handles::default(),
            }),
        })
    }

    /// A client for the URL in `AMQP_URL`.
    pub fn from_env() -> Result<Self> {
        let url = std::env::var(URL_ENV).map_err(|_| {
            QueueError::configuration(
                BACKEND,
                format!("set {URL_ENV}=amqp://user:password@host:5672/%2f"),
            )
        })?;
        Self::new(&url)
    }

    /// The broker's address without credentials.
    pub fn address(&self) -> &str {
        &self.settings.shown
    }

    /// The configuration in use.
    pub fn config(&self) -> &RabbitMqConfig {
        &self.settings.config
    }

    /// Opens the queue `name`, declaring it (durable; quorum unless
    /// configured otherwise) and its dead-letter queue `<name>.dlq` when
    /// they do not exist yet.
    pub async fn open(&self, name: &str, options: QueueOptions) -> Result<RabbitMqQueue> {
        validate_queue_name(name)?;
        RabbitMqQueue::open(self.settings.clone(), name, options).await
    }

    /// Opens the queue `name` to look at it, creating nothing: a queue
    /// that does not exist fails with `QueueNotFound` (one passive
    /// declaration) instead of being created. Opening never declares
    /// anything anyway (the first write or pop does); this adds the check,
    /// so `flextide stats -q typo` says the queue does not exist.
    pub async fn open_existing(&self, name: &str, options: QueueOptions) -> Result<RabbitMqQueue> {
        let queue = self.open(name, options).await?;
        if queue.exists().await? {
            return Ok(queue);
        }
        let _ = QueueProvider::close(&queue).await;
        Err(QueueError::QueueNotFound {
            backend: BACKEND,
            queue: name.to_owned(),
        })
    }

    /// Deletes the queue `name`, its dead-letter queue, its delay holding
    /// queues and their index, with every message in them, on a connection
    /// of its own. Queues that do not exist are skipped. Handles open on the
    /// queue must not be used afterwards (a write through one declares the
    /// queue again, empty); [`QueueProvider::drop_queue`] on a handle also
    /// forgets what that handle held.
    pub async fn drop_queue(&self, name: &str) -> Result<()> {
        validate_queue_name(name)?;
        queue::delete_with_own_connection(&self.settings, name).await
    }
}

/// Parses one node's URL; returns it with a printable form without
/// credentials. The parser's message never echoes the URL, so it cannot
/// leak the password.
fn parse_uri(url: &str) -> Result<(AMQPUri, String)> {
    let mut uri = AMQPUri::from_str(url)
        .map_err(|e| QueueError::configuration(BACKEND, format!("invalid AMQP URL: {e}")))?;
    // A dead peer is noticed after two missed heartbeats; the broker's
    // default (60 s) leaves calls hanging too long.
    uri.query.heartbeat.get_or_insert(15);
    let shown = format!(
        "{}://{}:{}/{}",
        if url.starts_with("amqps") {
            "amqps"
        } else {
            "amqp"
        },
        uri.authority.host,
        uri.authority.port,
        uri.vhost.replace('%', "%25").replace('/', "%2f")
    );
    Ok((uri, shown))
}

#[cfg(test)]
mod url_tests {
    use super::*;

    #[test]
    fn a_url_list_names_every_node_without_passwords() {
        let rabbit =
            RabbitMq::new("amqp://u:s3cret@a:5672/%2f, amqp://u:s3cret@b:5673/%2f").unwrap();
        assert_eq!(rabbit.settings.uris.len(), 2);
        assert_eq!(rabbit.address(), "amqp://a:5672/%2f,amqp://b:5673/%2f");
        assert!(!format!("{rabbit:?}").contains("s3cret"));
        assert!(RabbitMq::new("amqp://a:5672/%2f,").is_err());
    }
}
