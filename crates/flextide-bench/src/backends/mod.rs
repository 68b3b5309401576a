//! One module per backend: how to reach it, its library queue, its raw-client
//! baseline and what the report records about its server.

use std::{sync::Arc, time::Duration};

use async_trait::async_trait;
use flextide_queue_core::{QueueOptions, QueueProvider};

use crate::driver::{Driver, LibDriver, Res};

#[cfg(feature = "kafka")]
pub(crate) mod kafka;
pub(crate) mod memory;
#[cfg(feature = "mysql")]
pub(crate) mod mysql;
#[cfg(feature = "nats")]
pub(crate) mod nats;
#[cfg(feature = "postgres")]
pub(crate) mod postgres;
#[cfg(feature = "pubsub")]
pub(crate) mod pubsub;
#[cfg(feature = "rabbitmq")]
pub(crate) mod rabbitmq;
#[cfg(feature = "redis")]
pub(crate) mod redis;
mod registered;
#[cfg(feature = "sqlite")]
pub(crate) mod sqlite;
#[cfg(feature = "sqs")]
pub(crate) mod sqs;

/// Every backend name, in report order: the facade's list of the
/// repository's backends, then any other the registry holds.
pub(crate) fn all() -> Vec<&'static str> {
    let mut names: Vec<&'static str> = flextide_queue::IN_TREE.iter().map(|(n, _)| *n).collect();
    for n in flextide_queue::registry().names() {
        if !names.contains(&n) {
            names.push(n);
        }
    }
    names
}

/// The options of every benchmark queue: a lease long enough that nothing is
/// redelivered during a run.
pub(crate) fn options() -> QueueOptions {
    QueueOptions::default().lease(Duration::from_secs(120))
}

/// A reachable backend.
#[async_trait]
pub(crate) trait Backend: Send + Sync {
    /// Short name, as in `--backend`.
    fn name(&self) -> &'static str;
    /// Server version and durability settings, as `(key, value)` pairs.
    async fn info(&self) -> Vec<(String, String)>;
    /// Opens the library queue `queue`.
    async fn library(&self, queue: &str) -> Res<Arc<dyn QueueProvider>>;
    /// Removes the library queue `queue` and its dead letters.
    async fn drop_library(&self, queue: &str) -> Res<()>;
    /// The raw-client baseline on `queue`, if this backend has one.
    async fn raw(&self, queue: &str) -> Res<Option<Arc<dyn Driver>>>;
    /// Whether the raw baseline has a server-side waiting pop (for W4).
    fn raw_waits(&self) -> bool {
        true
    }
    /// The library's largest payload, to leave sweep sizes above it out.
    fn max_payload(&self) -> Option<usize> {
        None
    }
    /// Housekeeping between two runs, so one run's leftovers do not slow
    /// the next (PostgreSQL: `VACUUM`, which this server's autovacuum,
    /// when off, never does).
    async fn maintain(&self) -> Res<()> {
        Ok(())
    }
    /// The broker's own figures of what it holds (memory, keys, queues,
    /// table sizes), for `--many-queues`. Default: none.
    async fn footprint(&self) -> Vec<(String, String)> {
        Vec::new()
    }
    /// The same backend on fresh connections, for a run whose commits are
    /// counted (PostgreSQL: on a database of the bench's own, so only this
    /// run moves its counter). `None` where the server counts no commits.
    async fn commit_db(&self) -> Option<Res<Arc<dyn Backend>>> {
        None
    }
    /// What [`Backend::commits`] reads, for the report.
    fn commit_counter_name(&self) -> String {
        String::new()
    }
    /// The server's commit counter for runs on [`Backend::commit_db`].
    async fn commits(&self) -> Res<u64> {
        Err("this backend counts no commits".into())
    }
    /// Closes this handle's connections (so the server has counted all
    /// they did). Default: nothing to do.
    async fn close(&self) {}
    /// Backends measured differently (SQS: request counts, not speed)
    /// return their rows here instead of running the common workloads.
    async fn special(&self, _plan: &crate::plan::Plan) -> Option<Vec<crate::run::Row>> {
        None
    }
}

/// The library queue `queue` of `backend` as a [`Driver`] that drops it on cleanup.
pub(crate) async fn lib_driver(backend: Arc<dyn Backend>, queue: &str) -> Res<Arc<dyn Driver>> {
    let q = backend.library(queue).await?;
    let name = queue.to_owned();
    Ok(Arc::new(LibDriver {
        queue: q,
        dropper: Box::new(move || {
            let (b, n) = (backend.clone(), name.clone());
            Box::pin(async move { b.drop_library(&n).await })
        }),
    }))
}

/// Why a backend is not measured.
#[derive(Debug)]
pub(crate) enum Unavailable {
    /// Left out of this build (its cargo feature is off).
    NotBuilt,
    /// Its server did not answer.
    Unreachable(String),
}

/// The value of `var`, or the local default from `.env.example`.
pub(crate) fn env_or(var: &str, default: &str) -> String {
    std::env::var(var)
        .ok()
        .filter(|v| !v.trim().is_empty())
        .unwrap_or_else(|| default.to_owned())
}

/// Connects to backend `name`.
pub(crate) async fn connect(name: &str) -> Result<Arc<dyn Backend>, Unavailable> {
    let within = Duration::from_secs(10);
    let fut = async {
        match name {
            "memory" => Ok(Arc::new(memory::Memory::default()) as Arc<dyn Backend>),
            #[cfg(feature = "sqlite")]
            "sqlite" => sqlite::Sqlite::connect()
                .await
                .map(|b| Arc::new(b) as Arc<dyn Backend>),
            #[cfg(feature = "postgres")]
            "postgres" => postgres::Pg::connect()
                .await
                .map(|b| Arc::new(b) as Arc<dyn Backend>),
            #[cfg(feature = "mysql")]
            "mysql" => mysql::My::connect()
                .await
                .map(|b| Arc::new(b) as Arc<dyn Backend>),
            #[cfg(feature = "redis")]
            "redis" => redis::Rd::connect()
                .await
                .map(|b| Arc::new(b) as Arc<dyn Backend>),
            #[cfg(feature = "rabbitmq")]
            "rabbitmq" => rabbitmq::Rmq::connect()
                .await
                .map(|b| Arc::new(b) as Arc<dyn Backend>),
            #[cfg(feature = "nats")]
            "nats" => nats::Nt::connect()
                .await
                .map(|b| Arc::new(b) as Arc<dyn Backend>),
            #[cfg(feature = "pubsub")]
            "pubsub" => pubsub::Ps::connect()
                .await
                .map(|b| Arc::new(b) as Arc<dyn Backend>),
            #[cfg(feature = "kafka")]
            "kafka" => kafka::Kf::connect()
                .await
                .map(|b| Arc::new(b) as Arc<dyn Backend>),
            #[cfg(feature = "sqs")]
            "sqs" => sqs::Sqs::connect()
                .await
                .map(|b| Arc::new(b) as Arc<dyn Backend>),
            // No module of its own: the library alone, through the registry.
            other => {
                registered::Registered::connect(other).map(|b| Arc::new(b) as Arc<dyn Backend>)
            }
        }
    };
    match tokio::time::timeout(within, fut).await {
        Ok(Ok(b)) => Ok(b),
        Ok(Err(e)) if e.to_string() == "not built" => Err(Unavailable::NotBuilt),
        Ok(Err(e)) => Err(Unavailable::Unreachable(e.to_string())),
        Err(_) => Err(Unavailable::Unreachable(format!(
            "no answer within {} s",
            within.as_secs()
        ))),
    }
}

/// A unique queue name: `bench-<what>-<random>`.
pub(crate) fn queue_name(what: &str) -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("bench-{what}-{}", &id[..12])
}
