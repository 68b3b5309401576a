//! The backend handle and the `QueueProvider` implementation.

use std::{fmt, sync::Arc, time::Duration};

use async_trait::async_trait;
use flextide_queue_core::{
    BatchFailure, Capabilities, DeadLetter, Delivery, Message, MessageId, QueueError, QueueOptions,
    QueueProvider, QueueStats, Receipt, Replay, Result,
    backend::{
        Decoded, PollBackoff, check_payload, max_attempts_reason, new_token, wait_for_deliveries,
    },
    validate_queue_name,
};
use flextide_queue_sql::{
    DeleteBatch, MAX_DELAY, check_delay,
    decode::{
        Columns, dead_letter, foreign_id_prefix, in_delivery_order, lease_deadline, sort_claimed,
    },
    headers_text, millis,
};
use sqlx::{AssertSqlSafe, PgConnection, PgPool, Row, postgres::PgPoolOptions};
use tokio::{sync::Notify, time::Instant};

use crate::{
    BACKEND, PostgresConfig,
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
    inner: Arc<Shared>,
}

struct Shared {
    pool: PgPool,
    config: PostgresConfig,
    sql: Statements,
    notifier: Arc<Notifier>,
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
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options)
            .await
            .map_err(|e| DIALECT.map_connect(&target, e))?;
        Self::with_pool(pool, config).await
    }

    /// Uses your pool (and migrates first when the config asks for it).
    pub async fn with_pool(pool: PgPool, config: PostgresConfig) -> Result<Self> {
        config.validate()?;
        if config.migrate_on_connect {
            migrate_with(&pool, &config).await?;
        }
        Ok(Self::build(pool, config))
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

    /// Removes every message and dead letter of queue `name`; returns how
    /// many rows went. For tests and tooling: leased messages go too.
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
    backend: PostgresBackend,
    name: Arc<str>,
    wake: Arc<Notify>,
    options: QueueOptions,
    lease_ms: i64,
    max_attempts: i32,
    exhausted_reason: String,
}

impl fmt::Debug for PostgresQueue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresQueue")
            .field("name", &self.name)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

/// A message's columns, checked and encoded for binding.
struct Encoded<'m> {
    id: &'m str,
    payload: &'m [u8],
    headers: String,
    priority: i16,
    ordering_key: Option<&'m str>,
    delay_ms: i64,
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

    fn sql(&self) -> &Statements {
        &self.backend.inner.sql
    }

    fn channel(&self) -> &str {
        &self.backend.inner.config.channel
    }

    fn encode<'m>(&self, m: &'m Message) -> Result<Encoded<'m>> {
        check_payload(
            BACKEND,
            m.payload.len(),
            self.backend.inner.config.max_payload_bytes,
        )?;
        if m.dedup_id.is_some() {
            return Err(QueueError::unsupported(BACKEND, "dedup_id"));
        }
        let delay_ms = check_delay(BACKEND, m.delay.unwrap_or_default())?;
        Ok(Encoded {
            id: m.id.as_str(),
            payload: &m.payload,
            headers: headers_text(m),
            priority: i16::from(m.priority),
            ordering_key: m.ordering_key.as_deref(),
            delay_ms,
        })
    }

    /// Enqueues `message` inside your transaction (or on any connection), so
    /// it becomes visible only if and when that transaction commits; the
    /// wake-up notification is sent at commit too.
    ///
    /// ```no_run
    /// # async fn demo(queue: flextide_queue_postgres::PostgresQueue) -> Result<(), Box<dyn std::error::Error>> {
    /// let mut tx = queue.pool().begin().await?;
    /// // ... your own writes on &mut *tx ...
    /// queue.push_in_tx(&mut tx, flextide_queue_core::Message::new("next step")).await?;
    /// tx.commit().await?;
    /// # Ok(()) }
    /// ```
    pub async fn push_in_tx(&self, conn: &mut PgConnection, message: Message) -> Result<MessageId> {
        self.push_on(conn, &message).await?;
        Ok(message.id)
    }

    /// Enqueues several messages inside your transaction, in one statement.
    pub async fn push_batch_in_tx(
        &self,
        conn: &mut PgConnection,
        messages: Vec<Message>,
    ) -> Result<Vec<MessageId>> {
        self.push_batch_on(conn, &messages).await?;
        Ok(messages.into_iter().map(|m| m.id).collect())
    }

    async fn push_on<'c, E>(&self, conn: E, message: &Message) -> Result<()>
    where
        E: sqlx::Executor<'c, Database = sqlx::Postgres>,
    {
        let e = self.encode(message)?;
        sqlx::query(AssertSqlSafe(self.sql().push.clone()))
            .bind(&*self.name)
            .bind(e.id)
            .bind(e.payload)
            .bind(e.headers)
            .bind(e.priority)
            .bind(e.ordering_key)
            .bind(e.delay_ms)
            .bind(self.channel())
            .execute(conn)
            .await
            .map_err(map_err)?;
        Ok(())
    }

    async fn push_batch_on<'c, E>(&self, conn: E, messages: &[Message]) -> Result<()>
    where
        E: sqlx::Executor<'c, Database = sqlx::Postgres>,
    {
        if messages.is_empty() {
            return Ok(());
        }
        let mut failures = Vec::new();
        let mut ids = Vec::with_capacity(messages.len());
        let mut payloads = Vec::with_capacity(messages.len());
        let mut headers = Vec::with_capacity(messages.len());
        let mut priorities = Vec::with_capacity(messages.len());
        let mut keys = Vec::with_capacity(messages.len());
        let mut delays = Vec::with_capacity(messages.len());
        for (index, m) in messages.iter().enumerate() {
            match self.encode(m) {
                Ok(e) => {
                    ids.push(e.id);
                    payloads.push(e.payload);
                    headers.push(e.headers);
                    priorities.push(e.priority);
                    keys.push(e.ordering_key);
                    delays.push(e.delay_ms);
                }
                Err(error) => failures.push(BatchFailure { index, error }),
            }
        }
        if !ids.is_empty() {
            sqlx::query(AssertSqlSafe(self.sql().push_batch.clone()))
                .bind(&*self.name)
                .bind(ids)
                .bind(payloads)
                .bind(headers)
                .bind(priorities)
                .bind(keys)
                .bind(delays)
                .bind(self.channel())
                .execute(conn)
                .await
                .map_err(map_err)?;
        }
        flextide_queue_core::backend::batch_result(BACKEND, (), failures)
    }

    /// Leases up to `max` ready messages in one statement.
    async fn claim(&self, max: usize) -> Result<Vec<Delivery>> {
        let token = new_token();
        let started = Instant::now();
        // Planned for each call, never from a cached generic plan: a queue
        // table swings from empty to millions of rows, and a generic plan
        // chosen while it was small (or never analyzed) stays with the
        // pooled connection. Seen here with autovacuum off: a claim on a
        // 56,000-message queue ran for minutes on such a plan, 7 ms planned
        // afresh. Planning costs a fraction of a millisecond per batch.
        let rows = sqlx::query(AssertSqlSafe(self.sql().claim.clone()))
            .persistent(false)
            .bind(&*self.name)
            .bind(self.max_attempts)
            .bind(&self.exhausted_reason)
            .bind(i64::try_from(max).unwrap_or(i64::MAX))
            .bind(self.lease_ms)
            .bind(&token)
            .bind(foreign_id_prefix(BACKEND))
            .fetch_all(self.pool())
            .await
            .map_err(map_err)?;
        let mut claimed = Vec::with_capacity(rows.len());
        for row in &rows {
            let attempts: i32 = row.try_get("attempts").map_err(map_err)?;
            let columns = Columns::read::<_, i16>(row, true).map_err(map_err)?;
            claimed.push((columns, u32::try_from(attempts).unwrap_or(0)));
        }
        let deadline = lease_deadline(started, self.lease_ms);
        let Decoded { ok, undecodable } = sort_claimed(BACKEND, claimed, &token, deadline);
        for (seq, reason) in undecodable {
            self.dead_letter_undecodable(seq, &token, &reason).await;
        }
        Ok(in_delivery_order(ok))
    }

    /// Moves a row the claim just leased but could not decode (another
    /// producer's, contract clause 12) to the dead letters, by itself. A
    /// failure only logs: the pop goes on with the rest of the batch, and the
    /// row comes back when its lease ends.
    async fn dead_letter_undecodable(&self, seq: i64, token: &str, reason: &str) {
        let moved = sqlx::query_scalar::<_, i64>(AssertSqlSafe(self.sql().dead_letter.clone()))
            .bind(seq)
            .bind(token)
            .bind(&*self.name)
            .bind(reason)
            .fetch_one(self.pool())
            .await;
        match moved {
            Ok(_) => {
                tracing::warn!(queue = %self.name, seq, reason, "flextide-queue-postgres: undecodable row moved to the dead letters")
            }
            Err(e) => {
                tracing::warn!(queue = %self.name, seq, reason, error = %map_err(e), "flextide-queue-postgres: could not move an undecodable row to the dead letters; it comes back after its lease")
            }
        }
    }

    /// Moves expired, exhausted leases to the dead letters now.
    async fn sweep(&self) -> Result<u64> {
        let n: i64 = sqlx::query_scalar(AssertSqlSafe(self.sql().sweep.clone()))
            .bind(&*self.name)
            .bind(self.max_attempts)
            .bind(&self.exhausted_reason)
            .fetch_one(self.pool())
            .await
            .map_err(map_err)?;
        Ok(n as u64)
    }

    /// Removes every message and dead letter of this queue (see
    /// [`PostgresBackend::drop_queue`]).
    pub async fn drop_queue(&self) -> Result<u64> {
        self.backend.drop_queue(&self.name).await
    }
}

fn stale() -> QueueError {
    flextide_queue_sql::stale(BACKEND)
}

#[async_trait]
impl QueueProvider for PostgresQueue {
    fn queue_name(&self) -> &str {
        &self.name
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            fifo: true,
            ordering_key: true,
            priority: true,
            delay: true,
            max_delay: Some(MAX_DELAY),
            max_payload_bytes: self.backend.inner.config.max_payload_bytes,
            max_batch: None,
            extend_lease: true,
            fenced_receipts: true,
            dead_letters: true,
            dedup: false,
            exact_stats: true,
            peek: true,
            purge: true,
        }
    }

    async fn push(&self, message: Message) -> Result<MessageId> {
        self.push_on(self.pool(), &message).await?;
        Ok(message.id)
    }

    async fn push_batch(&self, messages: Vec<Message>) -> Result<Vec<MessageId>> {
        self.push_batch_on(self.pool(), &messages).await?;
        Ok(messages.into_iter().map(|m| m.id).collect())
    }

    async fn pop_batch(&self, max: usize, wait: Duration) -> Result<Vec<Delivery>> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let config = &self.backend.inner.config;
        let backoff = PollBackoff::new(wait, config.poll_min, config.poll_max);
        if !wait.is_zero() {
            self.backend.inner.notifier.ensure_started();
        }
        wait_for_deliveries(&self.wake, backoff, |_| self.claim(max)).await
    }

    async fn delete(&self, receipt: &Receipt) -> Result<()> {
        let (seq, token) = flextide_queue_sql::decode_receipt(BACKEND, receipt)?;
        let done = sqlx::query(AssertSqlSafe(self.sql().delete.clone()))
            .bind(seq)
            .bind(token)
            .bind(&*self.name)
            .execute(self.pool())
            .await
            .map_err(map_err)?;
        if done.rows_affected() == 0 {
            Err(stale())
        } else {
            Ok(())
        }
    }

    async fn delete_batch(&self, receipts: &[Receipt]) -> Result<()> {
        let mut batch = DeleteBatch::new(BACKEND, receipts);
        let wanted = batch.wanted().to_vec();
        if !wanted.is_empty() {
            let (seqs, tokens) = DeleteBatch::columns(&wanted);
            let deleted: Vec<(i64, String)> =
                sqlx::query_as(AssertSqlSafe(self.sql().delete_batch.clone()))
                    .bind(seqs)
                    .bind(tokens)
                    .bind(&*self.name)
                    .fetch_all(self.pool())
                    .await
                    .map_err(map_err)?;
            batch.settled(&wanted, &deleted);
        }
        batch.finish()
    }

    async fn nack(&self, receipt: &Receipt, delay: Duration) -> Result<()> {
        let (seq, token) = flextide_queue_sql::decode_receipt(BACKEND, receipt)?;
        let delay_ms = check_delay(BACKEND, delay)?;
        let row = sqlx::query(AssertSqlSafe(self.sql().nack.clone()))
            .bind(seq)
            .bind(token)
            .bind(&*self.name)
            .bind(self.max_attempts)
            .bind(&self.exhausted_reason)
            .bind(delay_ms)
            .bind(self.channel())
            .fetch_one(self.pool())
            .await
            .map_err(map_err)?;
        let settled: i64 = row.try_get("settled").map_err(map_err)?;
        if settled == 0 { Err(stale()) } else { Ok(()) }
    }

    async fn extend(&self, receipt: &Receipt, by: Duration) -> Result<()> {
        let (seq, token) = flextide_queue_sql::decode_receipt(BACKEND, receipt)?;
        let done = sqlx::query(AssertSqlSafe(self.sql().extend.clone()))
            .bind(seq)
            .bind(token)
            .bind(&*self.name)
            .bind(millis(by.min(MAX_DELAY)))
            .execute(self.pool())
            .await
            .map_err(map_err)?;
        if done.rows_affected() == 0 {
            Err(stale())
        } else {
            Ok(())
        }
    }

    async fn dead_letter(&self, receipt: &Receipt, reason: &str) -> Result<()> {
        let (seq, token) = flextide_queue_sql::decode_receipt(BACKEND, receipt)?;
        let n: i64 = sqlx::query_scalar(AssertSqlSafe(self.sql().dead_letter.clone()))
            .bind(seq)
            .bind(token)
            .bind(&*self.name)
            .bind(reason)
            .fetch_one(self.pool())
            .await
            .map_err(map_err)?;
        if n == 0 { Err(stale()) } else { Ok(()) }
    }

    async fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>> {
        self.sweep().await?;
        let rows = sqlx::query(AssertSqlSafe(self.sql().dead_letters.clone()))
            .bind(&*self.name)
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .fetch_all(self.pool())
            .await
            .map_err(map_err)?;
        rows.iter()
            .map(|row| dead_letter::<_, i16, i32>(BACKEND, row).map_err(map_err))
            .collect()
    }

    async fn replay_dead_letters(&self, which: Replay) -> Result<u64> {
        let (ids, limit): (Option<Vec<String>>, Option<i64>) = match which {
            Replay::Ids(ids) if ids.is_empty() => return Ok(0),
            Replay::Ids(ids) => (
                Some(ids.into_iter().map(|id| id.as_str().to_owned()).collect()),
                None,
            ),
            Replay::Oldest(0) => return Ok(0),
            Replay::Oldest(n) => (None, Some(i64::try_from(n).unwrap_or(i64::MAX))),
            Replay::All => (None, None),
        };
        let row = sqlx::query(AssertSqlSafe(self.sql().replay.clone()))
            .bind(&*self.name)
            .bind(ids)
            .bind(limit)
            .bind(self.channel())
            .fetch_one(self.pool())
            .await
            .map_err(map_err)?;
        let moved: i64 = row.try_get("moved").map_err(map_err)?;
        Ok(moved as u64)
    }

    async fn purge_dead_letters(&self) -> Result<u64> {
        let done = sqlx::query(AssertSqlSafe(self.sql().purge_dead_letters.clone()))
            .bind(&*self.name)
            .execute(self.pool())
            .await
            .map_err(map_err)?;
        Ok(done.rows_affected())
    }

    async fn peek(&self, limit: usize) -> Result<Vec<Message>> {
        // Exhausted expired leases would be dead-lettered by the next pop: do not show them.
        self.sweep().await?;
        let rows = sqlx::query(AssertSqlSafe(self.sql().peek.clone()))
            .bind(&*self.name)
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .fetch_all(self.pool())
            .await
            .map_err(map_err)?;
        // A row that cannot be decoded is not shown: the next pop moves it to
        // the dead letters.
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            let columns = Columns::read::<_, i16>(row, true).map_err(map_err)?;
            if let Ok(message) = columns.message(BACKEND) {
                out.push(message);
            }
        }
        Ok(out)
    }

    async fn purge(&self) -> Result<u64> {
        let n: i64 = sqlx::query_scalar(AssertSqlSafe(self.sql().purge.clone()))
            .bind(&*self.name)
            .fetch_one(self.pool())
            .await
            .map_err(map_err)?;
        Ok(n as u64)
    }

    async fn stats(&self) -> Result<QueueStats> {
        self.sweep().await?;
        let row = sqlx::query(AssertSqlSafe(self.sql().stats.clone()))
            .bind(&*self.name)
            .fetch_one(self.pool())
            .await
            .map_err(map_err)?;
        let count = |col: &str| -> Result<u64> {
            Ok(row.try_get::<i64, _>(col).map_err(map_err)?.max(0) as u64)
        };
        let oldest: Option<i64> = row.try_get("oldest").map_err(map_err)?;
        let now: i64 = row.try_get("now").map_err(map_err)?;
        Ok(QueueStats::default()
            .with_depth(count("depth")?)
            .with_in_flight(count("in_flight")?)
            .with_delayed(count("delayed")?)
            .with_dead_lettered(count("dead")?)
            .with_oldest_age(oldest.map(|t| Duration::from_millis((now - t).max(0) as u64))))
    }

    fn backend_name(&self) -> &'static str {
        BACKEND
    }
}
