#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

mod codec;
mod config;
mod connector;
mod error;
mod layout;
mod ledger;
mod offsets;
mod queue;
mod receipt;

use std::{
    collections::HashMap,
    fmt,
    sync::{Arc, Mutex, OnceLock, Weak},
};

use flextide_queue_core::{Result, validate_queue_name};
use rdkafka::{ClientConfig, producer::FutureProducer};

pub use config::{ENV_PREFIXES, KafkaConfig};
pub use connector::KafkaConnector;
pub use flextide_queue_core::{
    Capabilities, Connector, DeadLetter, Delivery, Message, QueueError, QueueOptions,
    QueueProvider, QueueStats, Receipt, Replay,
};
pub use queue::{KafkaQueue, MAX_PAYLOAD_BYTES};

use config::Endpoint;

/// The backend's short name, used in errors and logs.
pub const BACKEND: &str = "kafka";

/// The URL schemes this backend opens (`kafkas://` asks for TLS).
pub const SCHEMES: &[&str] = &["kafka", "kafkas"];

/// The environment variables [`Kafka::from_env`] reads the brokers from, in
/// order: `KAFKA_BROKERS` (a broker list, `host:9092,host2:9092`, or a
/// `kafka://` URL), then `KAFKA_URL`.
pub const URL_ENV: &[&str] = &["KAFKA_BROKERS", "KAFKA_URL"];

/// What every queue of one client shares.
pub(crate) struct Client {
    pub(crate) endpoint: Endpoint,
    pub(crate) config: KafkaConfig,
    producer: OnceLock<FutureProducer>,
    pub(crate) admin: OnceLock<queue::admin::Admin>,
    /// One consumer engine per queue name, shared by the handles this
    /// client opened on it (so leases hold across them).
    engines: Mutex<HashMap<String, Weak<queue::Engine>>>,
    /// Consumers of dropped handles still leaving their group, by queue:
    /// waited for before the queue's topics are deleted (a consumer that
    /// fetches from a deleted topic can crash librdkafka on tansu; see
    /// the README).
    pub(crate) closing: Mutex<Vec<(String, std::thread::JoinHandle<()>)>>,
}

impl Client {
    /// Waits until the consumers of `queue` that dropped handles left
    /// behind have closed.
    pub(crate) async fn wait_closed(&self, queue: &str) {
        let mine: Vec<std::thread::JoinHandle<()>> = {
            let mut closing = self.closing.lock().expect("closing lock");
            let (mine, rest): (Vec<_>, Vec<_>) = closing.drain(..).partition(|(q, _)| q == queue);
            *closing = rest;
            mine.into_iter().map(|(_, h)| h).collect()
        };
        if !mine.is_empty() {
            let _ = tokio::task::spawn_blocking(move || {
                for h in mine {
                    let _ = h.join();
                }
            })
            .await;
        }
    }
}

impl Client {
    /// A librdkafka configuration with the brokers and the passed-through
    /// properties.
    pub(crate) fn base_config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.endpoint.brokers);
        // librdkafka backs off reconnecting up to 10 s by default, so a
        // broker that restarts in two seconds could wait ten more for its
        // first push; 2 s at most here (passed-through properties win).
        c.set("reconnect.backoff.max.ms", "2000");
        for (k, v) in self
            .endpoint
            .properties
            .iter()
            .chain(&self.config.properties)
        {
            c.set(k, v);
        }
        c
    }

    /// The client's producer: `acks=all`, idempotence on.
    pub(crate) fn producer(&self) -> Result<&FutureProducer> {
        if let Some(p) = self.producer.get() {
            return Ok(p);
        }
        let timeout = self.config.operation_timeout.as_millis().max(1).to_string();
        let p: FutureProducer = self
            .base_config()
            .set("acks", "all")
            .set("enable.idempotence", "true")
            .set("linger.ms", "1")
            .set("message.timeout.ms", &timeout)
            .set("request.timeout.ms", &timeout)
            .create()
            .map_err(|e| error::map("create producer", e))?;
        Ok(self.producer.get_or_init(|| p))
    }
}

/// A Kafka cluster (or a Kafka-compatible broker): opens queues on it.
///
/// Handles opened by one `Kafka` on the same queue share one consumer (one
/// member of the queue's consumer group) and its leases; separate `Kafka`
/// values, like separate processes, are separate members and split the
/// queue's partitions between them. Credentials never appear in errors,
/// logs or `Debug` output.
#[derive(Clone)]
pub struct Kafka {
    client: Arc<Client>,
}

impl fmt::Debug for Kafka {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Kafka")
            .field("brokers", &self.client.endpoint.brokers)
            .field("config", &self.client.config)
            .finish()
    }
}

impl Kafka {
    /// A client for the brokers in `url` (`kafka://host:9092,host2:9092`,
    /// `kafkas://user:password@host:9093?sasl.mechanism=SCRAM-SHA-512`, or
    /// a bare list `host:9092,host2:9092`), with the default configuration.
    /// Nothing is connected until a queue is used.
    pub fn new(url: &str) -> Result<Self> {
        Self::with_config(url, KafkaConfig::default())
    }

    /// A client with the given configuration.
    pub fn with_config(url: &str, config: KafkaConfig) -> Result<Self> {
        config.check()?;
        let endpoint = Endpoint::parse(url)?;
        Ok(Kafka {
            client: Arc::new(Client {
                endpoint,
                config,
                producer: OnceLock::new(),
                admin: OnceLock::new(),
                engines: Mutex::new(HashMap::new()),
                closing: Mutex::new(Vec::new()),
            }),
        })
    }

    /// A client for the brokers in `KAFKA_BROKERS` (or `KAFKA_URL`), with
    /// the librdkafka properties of the `KAFKA_SECURITY_*`, `KAFKA_SASL_*`,
    /// `KAFKA_SSL_*` and `KAFKA_CONFIG_*` variables
    /// ([`KafkaConfig::from_env`]).
    pub fn from_env() -> Result<Self> {
        let url = URL_ENV
            .iter()
            .find_map(|v| std::env::var(v).ok().filter(|s| !s.trim().is_empty()))
            .ok_or_else(|| {
                QueueError::configuration(BACKEND, "set KAFKA_BROKERS=host:9092[,host2:9092]")
            })?;
        Self::with_env(&url)
    }

    /// A client for the brokers in `url` with the librdkafka properties the
    /// environment sets ([`KafkaConfig::from_env`]): what the facade opens.
    pub fn with_env(url: &str) -> Result<Self> {
        Self::with_config(url, KafkaConfig::from_env()?)
    }

    /// The brokers, without credentials.
    pub fn brokers(&self) -> &str {
        &self.client.endpoint.brokers
    }

    /// The configuration in use.
    pub fn config(&self) -> &KafkaConfig {
        &self.client.config
    }

    /// Opens the queue `name`. Creates nothing on the cluster: the queue's
    /// topic and dead-letter topic are created by its first push or pop.
    pub async fn open(&self, name: &str, options: QueueOptions) -> Result<KafkaQueue> {
        validate_queue_name(name)?;
        if options.lease < std::time::Duration::from_millis(1) {
            return Err(QueueError::configuration(
                BACKEND,
                "the lease must be at least 1 ms",
            ));
        }
        let engine = {
            let mut engines = self.client.engines.lock().expect("engines lock");
            engines.retain(|_, w| w.strong_count() > 0);
            match engines.get(name).and_then(Weak::upgrade) {
                Some(e) => e,
                None => {
                    let e = Arc::new(queue::Engine::new(self.client.clone(), name));
                    engines.insert(name.to_owned(), Arc::downgrade(&e));
                    e
                }
            }
        };
        Ok(KafkaQueue::new(self.client.clone(), engine, name, options))
    }

    /// Creates the queue `name` now: its topic (with
    /// [`KafkaConfig::partitions`]) and its dead-letter topic. Idempotent.
    pub async fn create_queue(&self, name: &str) -> Result<()> {
        validate_queue_name(name)?;
        queue::admin::create_topics(&self.client, name).await
    }

    /// The names of the queues on the cluster (topics `ftq.<name>`), sorted.
    pub async fn queue_names(&self) -> Result<Vec<String>> {
        let mut names: Vec<String> = queue::admin::topic_names(&self.client)
            .await?
            .iter()
            .filter_map(|t| layout::queue_of(t).map(str::to_owned))
            .collect();
        names.sort();
        Ok(names)
    }

    /// Deletes the queue `name`: its topic, dead-letter topic and consumer
    /// group. A queue that does not exist is skipped.
    pub async fn drop_queue(&self, name: &str) -> Result<()> {
        validate_queue_name(name)?;
        let engine = self
            .client
            .engines
            .lock()
            .expect("engines lock")
            .get(name)
            .and_then(Weak::upgrade);
        if let Some(e) = engine {
            e.stop().await;
        }
        self.client.wait_closed(name).await;
        queue::admin::drop_all(&self.client, name).await
    }
}
