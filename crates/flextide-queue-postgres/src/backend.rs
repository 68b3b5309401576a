//! The backend handle: one pool, the prepared SQL and one listener, shared by its queues.

use std::{fmt, sync::Arc, time::Duration};

use flextide_queue_core::{
    QueueError, QueueOptions, Result, backend::max_attempts_reason, validate_queue_name,
};
use flextide_queue_sql::millis;
use sqlx::{AssertSqlSafe, PgPool, postgres::PgPoolOptions};

use crate::{
    BACKEND, PostgresConfig, PostgresQueue,
    error::{DIALECT, map_err},
    migrate::migrate_with,
    notify::Notifier,
    sql::Statements,
};

/// A connection pool plus everything its queues share: the prepared SQL,
/// the settings and one LISTEN connection for wake-ups.
///
/// Open any number of queues from one backend with [`PostgresBackend::queue`];
/// they share the pool, the tables and the listener. Cloning is cheap.
#[derive(Clone)]
pub struct PostgresBackend {
    pub(crate) inner: Arc<Shared>,
}

pub(crate) struct Shared {
    pub(crate) pool: PgPool,
    pub(crate) config: PostgresConfig,
    pub(crate) sql: Statements,
    pub(crate) notifier: Arc<Notifier>,
    /// When unique pushes sweep expired dedup rows.
    pub(crate) dedup_sweep: flextide_queue_sql::dedup::ExpiredSweep,
}

impl fmt::Debug for PostgresBackend {
    // No connection options here: they would show the password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresBackend")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

impl PostgresBackend {
    /// Opens a pool on `url` (`postgres://user:pass@host/db`) with the
    /// config's pool size and application name.
    pub async fn connect(url: &str, config: PostgresConfig) -> Result<Self> {
        config.validate()?;
        let mut options: sqlx::postgres::PgConnectOptions = url.parse().map_err(|_| {
            QueueError::configuration(BACKEND, "the PostgreSQL connection URL is malformed")
        })?;
        if let Some(app) = &config.application_name {
            options = options.application_name(app);
        }
        let target = format!("{}:{}", options.get_host(), options.get_port());
        let pool = PgPoolOptions::new()
            .max_connections(config.max_connections.max(1))
            .acquire_timeout(Duration::from_secs(10));
        let pool = flextide_queue_sql::open_pool(&DIALECT, &target, pool, options).await?;
        Self::with_pool(pool, config).await
    }

    /// Uses your pool (and migrates first when the config asks for it).
    /// Logs a warning, once per process, when autovacuum will not clean the
    /// queue tables (see [`PostgresBackend::autovacuum_problems`]).
    pub async fn with_pool(pool: PgPool, config: PostgresConfig) -> Result<Self> {
        config.validate()?;
        if config.migrate_on_connect {
            migrate_with(&pool, &config).await?;
        }
        let backend = Self::build(pool, config);
        backend.warn_if_not_vacuumed().await;
        Ok(backend)
    }

    /// Uses your pool with these settings, without touching the database.
    /// The tables must exist: see [`migrate`](crate::migrate).
    pub fn from_pool(pool: PgPool, config: PostgresConfig) -> Result<Self> {
        config.validate()?;
        Ok(Self::build(pool, config))
    }

    fn build(pool: PgPool, config: PostgresConfig) -> Self {
        // The listener gets a private one-connection pool, so waiting never
        // takes a connection from yours.
        let listen_options = (*pool.connect_options()).clone();
        let listen_pool = PgPoolOptions::new()
            .max_connections(1)
            .min_connections(0)
            .max_lifetime(None)
            .idle_timeout(None)
            .connect_lazy_with(listen_options);
        let notifier = Notifier::new(listen_pool, config.channel.clone());
        let sql = Statements::new(&config.table_prefix(), config.durable_settle);
        PostgresBackend {
            inner: Arc::new(Shared {
                pool,
                config,
                sql,
                notifier,
                dedup_sweep: Default::default(),
            }),
        }
    }

    /// The pool, for your own queries and transactions.
    pub fn pool(&self) -> &PgPool {
        &self.inner.pool
    }

    /// The settings.
    pub fn config(&self) -> &PostgresConfig {
        &self.inner.config
    }

    /// Creates or upgrades the tables (see [`migrate`](crate::migrate)).
    pub async fn migrate(&self) -> Result<()> {
        migrate_with(&self.inner.pool, &self.inner.config)
            .await
            .map(drop)
    }

    /// Opens queue `name` (no round trip: queues are rows, not tables).
    pub fn queue(&self, name: &str, options: QueueOptions) -> Result<PostgresQueue> {
        validate_queue_name(name)?;
        let max_attempts = options
            .max_attempts
            .map(|n| n.clamp(1, i32::MAX as u32) as i32);
        Ok(PostgresQueue {
            backend: self.clone(),
            name: name.into(),
            wake: self.inner.notifier.handle(name),
            lease_ms: millis(options.lease).max(1),
            max_attempts: max_attempts.unwrap_or(i32::MAX),
            exhausted_reason: max_attempts_reason(max_attempts.unwrap_or(i32::MAX) as u32),
            options,
        })
    }

    /// Removes every message and dead letter of queue `name`, and the dedup
    /// ids it remembers; returns how many messages and dead letters went.
    /// For tests and tooling: leased messages go too.
    pub async fn drop_queue(&self, name: &str) -> Result<u64> {
        validate_queue_name(name)?;
        let n: i64 = sqlx::query_scalar(AssertSqlSafe(self.inner.sql.drop_queue.clone()))
            .bind(name)
            .fetch_one(&self.inner.pool)
            .await
            .map_err(map_err)?;
        Ok(n as u64)
    }
}
