//! The list of backends this program can open, and how one is chosen.
//!
//! Every backend crate exports one [`Connector`]; the registry holds the
//! ones compiled in (one cargo feature each) plus any a third party adds
//! with [`register`], and picks one by name (`QUEUE_PROVIDER`) or by the
//! URL's scheme.
//!
//! ```no_run
//! # async fn run() -> Result<(), flextide_queue::QueueError> {
//! use flextide_queue::QueueOptions;
//! // Any registered backend, by the URL's scheme.
//! let queue = flextide_queue::open("sqlite://tasks.db?mode=rwc", "emails", QueueOptions::default()).await?;
//! # let _ = queue; Ok(()) }
//! ```

use std::sync::{Arc, LazyLock, RwLock};

use flextide_queue_core::{
    Connector, QueueError, QueueOptions, QueueProvider, redact_url, url_scheme,
};

const BACKEND: &str = "config";

/// The backends of this repository: name, cargo feature of this crate,
/// and URL schemes. A backend that is not compiled in is still recognised,
/// so the error can say which feature to turn on.
pub const IN_TREE: &[(&str, &[&str])] = &[
    ("memory", &["memory"]),
    ("sqlite", &["sqlite"]),
    ("postgres", &["postgres", "postgresql"]),
    ("mysql", &["mysql", "mariadb"]),
    ("redis", &["redis", "rediss"]),
    ("rabbitmq", &["amqp", "amqps"]),
    ("sqs", &["sqs"]),
    ("nats", &["nats", "tls"]),
    ("pubsub", &["pubsub"]),
    ("kafka", &["kafka", "kafkas"]),
    // A connection string, no scheme (`Endpoint=sb://…`).
    ("servicebus", &[]),
];

/// The connectors compiled into this build: one line per backend feature.
#[allow(
    unused_mut,
    clippy::vec_init_then_push,
    reason = "one line per backend feature, each behind its cfg"
)]
fn built_in() -> Vec<Arc<dyn Connector>> {
    let mut list: Vec<Arc<dyn Connector>> = Vec::new();
    #[cfg(feature = "memory")]
    list.push(Arc::new(flextide_queue_memory::MemoryConnector));
    #[cfg(feature = "sqlite")]
    list.push(Arc::new(flextide_queue_sqlite::SqliteConnector));
    #[cfg(feature = "postgres")]
    list.push(Arc::new(flextide_queue_postgres::PostgresConnector));
    #[cfg(feature = "mysql")]
    list.push(Arc::new(flextide_queue_mysql::MySqlConnector));
    #[cfg(feature = "redis")]
    list.push(Arc::new(flextide_queue_redis::RedisConnector));
    #[cfg(feature = "rabbitmq")]
    list.push(Arc::new(flextide_queue_rabbitmq::RabbitMqConnector));
    #[cfg(feature = "sqs")]
    list.push(Arc::new(flextide_queue_sqs::SqsConnector));
    #[cfg(feature = "nats")]
    list.push(Arc::new(flextide_queue_nats::NatsConnector));
    #[cfg(feature = "pubsub")]
    list.push(Arc::new(flextide_queue_pubsub::PubSubConnector));
    #[cfg(feature = "kafka")]
    list.push(Arc::new(flextide_queue_kafka::KafkaConnector));
    #[cfg(feature = "servicebus")]
    list.push(Arc::new(flextide_queue_servicebus::ServiceBusConnector));
    list
}

/// Backends to choose from, by name or URL scheme.
#[derive(Debug, Clone)]
pub struct Registry {
    connectors: Vec<Arc<dyn Connector>>,
}

impl Default for Registry {
    fn default() -> Self {
        Registry::builtin()
    }
}

impl Registry {
    /// The backends compiled into this build (the crate's features).
    pub fn builtin() -> Self {
        Registry {
            connectors: built_in(),
        }
    }

    /// No backend at all (add them with [`Registry::register`]).
    pub fn empty() -> Self {
        Registry {
            connectors: Vec::new(),
        }
    }

    /// Adds a backend. One registered later wins over an earlier one with
    /// the same name or scheme, so a program can replace a built-in one.
    pub fn register(&mut self, connector: Arc<dyn Connector>) {
        self.connectors.insert(0, connector);
    }

    /// Every registered backend, the most recently registered first.
    pub fn connectors(&self) -> &[Arc<dyn Connector>] {
        &self.connectors
    }

    /// The backend called `name` (its name or an alias, case-insensitive).
    pub fn by_name(&self, name: &str) -> Result<&Arc<dyn Connector>, QueueError> {
        let name = name.trim();
        self.connectors
            .iter()
            .find(|c| {
                c.name().eq_ignore_ascii_case(name)
                    || c.aliases().iter().any(|a| a.eq_ignore_ascii_case(name))
            })
            .ok_or_else(|| self.unknown_name(name))
    }

    /// The backend that opens `url`.
    pub fn by_url(&self, url: &str) -> Result<&Arc<dyn Connector>, QueueError> {
        self.connectors
            .iter()
            .find(|c| c.accepts(url))
            .ok_or_else(|| self.unknown_url(url))
    }

    /// Opens the queue `queue` at `url` with the backend its scheme names.
    pub async fn open(
        &self,
        url: &str,
        queue: &str,
        options: QueueOptions,
    ) -> Result<Arc<dyn QueueProvider>, QueueError> {
        flextide_queue_core::validate_queue_name(queue)?;
        self.by_url(url)?.open(url, queue, options).await
    }

    /// The names `QUEUE_PROVIDER` accepts in this build.
    pub fn names(&self) -> Vec<&'static str> {
        let mut names: Vec<&'static str> = self.connectors.iter().map(|c| c.name()).collect();
        names.dedup();
        names
    }

    fn unknown_name(&self, name: &str) -> QueueError {
        if let Some((known, _)) = IN_TREE.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)) {
            return not_built(known);
        }
        QueueError::configuration(
            BACKEND,
            format!(
                "QUEUE_PROVIDER={name:?} is not a backend of this build; choose one of: database, {}",
                self.names().join(", ")
            ),
        )
    }

    fn unknown_url(&self, url: &str) -> QueueError {
        let shown = redact_url(url);
        let Some(scheme) = url_scheme(url) else {
            return QueueError::configuration(
                BACKEND,
                format!(
                    "{shown:?} is not a URL: it must start with a scheme such as postgres:// or redis://"
                ),
            );
        };
        if let Some((known, _)) = IN_TREE
            .iter()
            .find(|(_, schemes)| schemes.iter().any(|s| s.eq_ignore_ascii_case(scheme)))
        {
            return not_built(known);
        }
        let schemes: Vec<String> = self
            .connectors
            .iter()
            .flat_map(|c| c.schemes())
            .map(|s| format!("{s}:"))
            .collect();
        QueueError::configuration(
            BACKEND,
            format!(
                "no backend opens {shown}: its scheme {scheme:?} is not one of {}",
                schemes.join(", ")
            ),
        )
    }
}

fn not_built(name: &str) -> QueueError {
    QueueError::configuration(
        BACKEND,
        format!(
            "this program was built without the {name} backend; rebuild with the `{name}` feature of flextide-queue (for the flextide command: `--features flextide-queue/{name}`)"
        ),
    )
}

static GLOBAL: LazyLock<RwLock<Registry>> = LazyLock::new(|| RwLock::new(Registry::builtin()));

/// Adds a backend to the registry that [`from_env`](crate::from_env),
/// [`open`] and the `flextide` command use, so a third-party crate's
/// scheme opens like a built-in one. Call it before opening queues.
pub fn register(connector: Arc<dyn Connector>) {
    GLOBAL
        .write()
        .unwrap_or_else(|e| e.into_inner())
        .register(connector);
}

/// A copy of the process-wide registry.
pub fn registry() -> Registry {
    GLOBAL.read().unwrap_or_else(|e| e.into_inner()).clone()
}

/// Opens the queue `queue` at `url` with whichever registered backend its
/// scheme names (`sqlite:`, `postgres://`, `redis://`, `amqp://`, `sqs:`,
/// `memory:`, …).
pub async fn open(
    url: &str,
    queue: &str,
    options: QueueOptions,
) -> Result<Arc<dyn QueueProvider>, QueueError> {
    registry().open(url, queue, options).await
}
