//! [`SqliteQueueBuilder`]: where the database is, the options, pool settings, migrate or not.

use std::{fmt, time::Duration};

use flextide_queue_core::{QueueError, QueueOptions, Result, validate_queue_name};
use sqlx::sqlite::{SqlitePool, SqliteSynchronous};

use crate::{BACKEND, PoolSettings, SqliteQueue, connect, migrate};

/// Builds a [`SqliteQueue`]: where the database is, the queue's options,
/// pool settings, and whether to run [`migrate`] first.
///
/// ```no_run
/// # async fn demo() -> flextide_queue_core::Result<()> {
/// use std::time::Duration;
/// use flextide_queue_core::QueueOptions;
/// use flextide_queue_sqlite::SqliteQueue;
///
/// let queue = SqliteQueue::builder("reports")
///     .url("sqlite://var/queue.db")
///     .options(QueueOptions::default().lease(Duration::from_secs(120)))
///     .busy_timeout(Duration::from_secs(10))
///     .open()
///     .await?;
/// # Ok(()) }
/// ```
pub struct SqliteQueueBuilder {
    pub(crate) name: String,
    pub(crate) options: QueueOptions,
    pub(crate) source: Source,
    pub(crate) migrate: bool,
    pub(crate) settings: PoolSettings,
}

pub(crate) enum Source {
    None,
    Url(String),
    Pool(SqlitePool),
}

impl fmt::Debug for SqliteQueueBuilder {
    // The URL stays out: it is a path on this machine, not needed in logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let source = match self.source {
            Source::None => "none",
            Source::Url(_) => "url",
            Source::Pool(_) => "pool",
        };
        f.debug_struct("SqliteQueueBuilder")
            .field("name", &self.name)
            .field("options", &self.options)
            .field("source", &source)
            .field("migrate", &self.migrate)
            .field("settings", &self.settings)
            .finish()
    }
}

impl SqliteQueueBuilder {
    /// Opens the database at this URL or path (`sqlite://path/to/file.db`,
    /// `path/to/file.db`, `sqlite::memory:`) with a pool of its own.
    pub fn url(mut self, url: impl Into<String>) -> Self {
        self.source = Source::Url(url.into());
        self
    }

    /// Uses an existing pool (several queues can share one).
    pub fn pool(mut self, pool: SqlitePool) -> Self {
        self.source = Source::Pool(pool);
        self
    }

    /// Sets the queue's options (lease, max attempts).
    pub fn options(mut self, options: QueueOptions) -> Self {
        self.options = options;
        self
    }

    /// Whether to run [`migrate`] when opening (default `true`). Turn it off
    /// when you apply the `.sql` files with your own tooling.
    pub fn migrate(mut self, migrate: bool) -> Self {
        self.migrate = migrate;
        self
    }

    /// Sets the pool settings used with [`SqliteQueueBuilder::url`].
    pub fn pool_settings(mut self, settings: PoolSettings) -> Self {
        self.settings = settings;
        self
    }

    /// Sets [`PoolSettings::busy_timeout`] (with [`SqliteQueueBuilder::url`]).
    pub fn busy_timeout(mut self, timeout: Duration) -> Self {
        self.settings.busy_timeout = timeout;
        self
    }

    /// Sets [`PoolSettings::max_connections`] (with [`SqliteQueueBuilder::url`]).
    pub fn max_connections(mut self, max: u32) -> Self {
        self.settings.max_connections = max.max(1);
        self
    }

    /// Sets [`PoolSettings::synchronous`] (with [`SqliteQueueBuilder::url`]).
    pub fn synchronous(mut self, synchronous: SqliteSynchronous) -> Self {
        self.settings.synchronous = synchronous;
        self
    }

    /// Opens the queue: validates its name, connects, and migrates unless
    /// told not to.
    pub async fn open(self) -> Result<SqliteQueue> {
        validate_queue_name(&self.name)?;
        let pool = match self.source {
            Source::Url(url) => connect::connect_pool_with(&url, &self.settings).await?,
            Source::Pool(pool) => pool,
            Source::None => {
                return Err(QueueError::configuration(
                    BACKEND,
                    "no database given: call .url(...) or .pool(...)",
                ));
            }
        };
        if self.migrate {
            migrate(&pool).await?;
        }
        Ok(SqliteQueue::new_unchecked(pool, self.name, self.options))
    }
}
