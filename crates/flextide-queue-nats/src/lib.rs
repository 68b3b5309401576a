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
    ///
    /// For a cluster, `url` may list several servers separated by commas
    /// (`nats://h1:4222,nats://h2:4222`; the client also learns the others
    /// from the server it reaches) and end with `?replicas=N`, the number of
    /// servers each new stream is replicated on ([`NatsConfig::replicas`]).
    pub fn new(url: &str) -> Result<Self> {
        Self::with_config(url, NatsConfig::default())
    }

    /// A client with the given configuration; a `?replicas=N` at the end of
    /// the URL overrides [`NatsConfig::replicas`].
    pub fn with_config(url: &str, config: NatsConfig) -> Result<Self> {
        let (url, replicas) = url_options(url)?;
        let mut config = config;
        if let Some(replicas) = replicas {
            config.replicas = replicas;
        }
        config.check()?;
        if url.trim().is_empty() {
            return Err(QueueError::configuration(
                BACKEND,
                "the NATS URL is empty; set NATS_URL=nats://host:4222",
            ));
        }
        // Each server of a list is shown without its own credentials.
        let shown: Vec<String> = url.split(',').map(redact_url).collect();
        Ok(Nats {
            settings: Arc::new(Settings {
                url: url.to_owned(),
                shown: shown.join(","),
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
    /// pull consumer (with `options.lease` as its `ack_wait`;
    /// `options.dedup_window` is the stream's duplicate window) and its
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
                options.dedup_window,
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
    /// messages), its dead-letter stream and its dedup records. A queue
    /// that does not exist is skipped.
    pub async fn drop_queue(&self, name: &str) -> Result<()> {
        validate_queue_name(name)?;
        let client = queue::connect(&self.settings, &format!("drop/{name}")).await?;
        let js = queue::jetstream(&client, &self.settings.config);
        let result = queue::drop_streams(&js, &self.settings.config, name).await;
        let _ = client.drain().await;
        result
    }
}

/// Splits the backend's own options off the end of the URL: `?replicas=N`
/// (the only one). The text after the last `@` is searched, so a password
/// holding `?` is left alone; the client library gets the URL without it.
fn url_options(url: &str) -> Result<(&str, Option<usize>)> {
    let after_credentials = url.rfind('@').map_or(0, |at| at + 1);
    let Some(q) = url[after_credentials..].find('?') else {
        return Ok((url, None));
    };
    let q = after_credentials + q;
    let mut replicas = None;
    for pair in url[q + 1..].split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("replicas", n)) => {
                let n = n.parse().map_err(|_| {
                    QueueError::configuration(
                        BACKEND,
                        format!("replicas={n} in the NATS URL is not a number; write replicas=3"),
                    )
                })?;
                replicas = Some(n);
            }
            _ => {
                let key = pair.split('=').next().unwrap_or_default();
                return Err(QueueError::configuration(
                    BACKEND,
                    format!(
                        "the NATS URL has an unknown option `{key}`; the only one is replicas=N"
                    ),
                ));
            }
        }
    }
    Ok((&url[..q], replicas))
}

#[cfg(test)]
mod url_tests {
    use super::*;

    #[test]
    fn replicas_come_from_the_url_and_leave_it() {
        let nats = Nats::new("nats://a:1,nats://u:p?w@b:2?replicas=3").unwrap();
        assert_eq!(nats.config().replicas, 3);
        assert_eq!(nats.settings.url, "nats://a:1,nats://u:p?w@b:2");
        assert!(!nats.address().contains("p?w"), "{}", nats.address());
        assert_eq!(Nats::new("nats://a:1").unwrap().config().replicas, 1);
    }

    #[test]
    fn bad_options_say_what_to_write() {
        let e = Nats::new("nats://a:1?replicas=x").unwrap_err().to_string();
        assert!(e.contains("replicas=3"), "{e}");
        let e = Nats::new("nats://a:1?foo=1").unwrap_err().to_string();
        assert!(e.contains("unknown option `foo`"), "{e}");
        let e = Nats::new("nats://a:1?replicas=9").unwrap_err().to_string();
        assert!(e.contains("between 1 and 5"), "{e}");
    }

    #[test]
    fn every_server_of_a_list_is_shown_without_its_password() {
        let nats = Nats::new("nats://u:s3cret@a:1,nats://v:s3cret2@b:2").unwrap();
        assert!(!format!("{nats:?}").contains("s3cret"), "{nats:?}");
    }
}
