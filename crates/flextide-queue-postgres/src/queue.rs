//! The queue handle and its `QueueProvider` implementation, which hands each
//! operation to the file of its job (push, claim, settle, dead, stats).

use std::{fmt, sync::Arc};

use flextide_queue_core::{Capabilities, QueueOptions, Result, validate_queue_name};
use sqlx::PgPool;
use tokio::sync::Notify;

use crate::{BACKEND, PostgresBackend, PostgresConfig, sql::Statements};

/// One named queue in PostgreSQL: rows of shared tables, claimed with
/// `FOR UPDATE SKIP LOCKED`, woken by LISTEN/NOTIFY.
///
/// ```no_run
/// # async fn demo() -> flextide_queue_core::Result<()> {
/// use std::time::Duration;
/// use flextide_queue_core::{Message, QueueOptions, QueueProvider};
/// use flextide_queue_postgres::PostgresQueue;
///
/// let queue = PostgresQueue::connect("postgres://localhost/app", "emails", QueueOptions::default()).await?;
/// flextide_queue_postgres::migrate(queue.pool()).await?;
/// queue.push(Message::new("hello")).await?;
/// if let Some(d) = queue.pop(Duration::from_secs(5)).await? {
///     queue.delete(&d.receipt).await?;
/// }
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct PostgresQueue {
    pub(crate) backend: PostgresBackend,
    pub(crate) name: Arc<str>,
    pub(crate) wake: Arc<Notify>,
    pub(crate) options: QueueOptions,
    pub(crate) lease_ms: i64,
    pub(crate) max_attempts: i32,
    pub(crate) exhausted_reason: String,
}

impl fmt::Debug for PostgresQueue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresQueue")
            .field("name", &self.name)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl PostgresQueue {
    /// Opens a pool on `url` and the queue `name` on it. To open many
    /// queues on one pool, use [`PostgresBackend`].
    pub async fn connect(url: &str, name: &str, options: QueueOptions) -> Result<Self> {
        validate_queue_name(name)?;
        PostgresBackend::connect(url, PostgresConfig::default())
            .await?
            .queue(name, options)
    }

    /// Opens queue `name` on your pool with the default settings. Queues
    /// opened this way each start their own listener connection when they
    /// first wait; [`PostgresBackend::queue`] shares one.
    pub fn from_pool(pool: PgPool, name: &str, options: QueueOptions) -> Result<Self> {
        PostgresBackend::from_pool(pool, PostgresConfig::default())?.queue(name, options)
    }

    /// The backend this queue belongs to.
    pub fn backend(&self) -> &PostgresBackend {
        &self.backend
    }

    /// The pool.
    pub fn pool(&self) -> &PgPool {
        &self.backend.inner.pool
    }

    /// The options the queue was opened with.
    pub fn options(&self) -> &QueueOptions {
        &self.options
    }

    pub(crate) fn sql(&self) -> &Statements {
        &self.backend.inner.sql
    }

    pub(crate) fn channel(&self) -> &str {
        &self.backend.inner.config.channel
    }

    /// Removes every message and dead letter of this queue (see
    /// [`PostgresBackend::drop_queue`]).
    pub async fn drop_queue(&self) -> Result<u64> {
        self.backend.drop_queue(&self.name).await
    }
}

flextide_queue_sql::queue_provider! {
    PostgresQueue in crate {
        backend: BACKEND,
        name: |q| &q.name,
        capabilities: |q| Capabilities {
            max_payload_bytes: q.backend.inner.config.max_payload_bytes,
            dedup_window: Some(flextide_queue_sql::dedup::dedup_window(&q.options)),
            ..flextide_queue_sql::CAPABILITIES
        },
    }
}
