#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

mod connect;
mod connector;
mod error;
mod schema;

use std::{fmt, sync::Arc, time::Duration};

use async_trait::async_trait;
use flextide_queue_core::{
    BatchFailure, MessageId, Result,
    backend::{self, PollBackoff},
    validate_queue_name,
};
use flextide_queue_sql::{
    DeleteBatch,
    decode::{Columns, dead_letter, foreign_id_prefix, in_delivery_order, sort_claimed},
    headers_text, millis,
};
use sqlx::{QueryBuilder, Row, Sqlite};
use tokio::{sync::Notify, time::Instant};

pub use connect::{PoolSettings, connect_pool, connect_pool_with};
pub use connector::SqliteConnector;
// The core types this crate hands out, so users need no direct dependency.
pub use flextide_queue_core::{
    Capabilities, Connector, DeadLetter, Delivery, Message, QueueError, QueueOptions,
    QueueProvider, QueueStats, Receipt, Replay,
};
pub use schema::{
    MIGRATIONS, Migration, SCHEMA_VERSION, current_version, drop_queue, list_queues, migrate,
};
/// The sqlx crate this backend is built on, so you can name its types
/// (transactions, pool options) without depending on it yourself.
pub use sqlx;
pub use sqlx::sqlite::{SqliteConnection, SqlitePool, SqliteSynchronous};

/// The backend's name in errors, logs and metrics.
pub const BACKEND: &str = "sqlite";

/// The URL schemes [`SqliteConnector`] opens.
pub const SCHEMES: &[&str] = &["sqlite"];

/// What the SQLite backend supports: everything but deduplication.
pub const CAPABILITIES: Capabilities = Capabilities {
    fifo: true,
    ordering_key: true,
    priority: true,
    delay: true,
    max_delay: None,
    // SQLite refuses values over SQLITE_MAX_LENGTH (1 GB by default) with
    // InvalidMessage; there is no smaller limit of our own.
    max_payload_bytes: None,
    // Batches are split below SQLite's bound-variable limit internally.
    max_batch: None,
    extend_lease: true,
    fenced_receipts: true,
    dead_letters: true,
    dedup: false,
    exact_stats: true,
    peek: true,
    purge: true,
};

/// Rows per multi-row INSERT: 8 variables each, well below SQLite's limit of
/// 32 766 bound variables.
const PUSH_CHUNK: usize = 1000;
/// Receipts per batch DELETE (2 variables each).
const DELETE_CHUNK: usize = 2000;
/// Ids per replay statement.
const REPLAY_CHUNK: usize = 2000;
/// First and longest pause between polls inside a `pop` wait.
const POLL_MIN: Duration = Duration::from_millis(5);
const POLL_MAX: Duration = Duration::from_millis(250);

/// A queue stored in a SQLite database, file or in-memory.
///
/// Every queue of a database shares two tables, told apart by a `queue`
/// column, so any number of queues can share one pool and one file, and
/// several processes can work on one file at once: claiming is one atomic
/// `UPDATE … RETURNING` statement and every delivery gets a fresh fencing
/// token. Cloning is cheap and shares the pool.
///
/// ```no_run
/// # async fn demo() -> flextide_queue_core::Result<()> {
/// use std::time::Duration;
/// use flextide_queue_core::{Message, QueueOptions, QueueProvider};
/// use flextide_queue_sqlite::SqliteQueue;
///
/// let queue = SqliteQueue::connect("sqlite://flextide.db", "emails", QueueOptions::default()).await?;
/// queue.push(Message::new("hello")).await?;
/// if let Some(delivery) = queue.pop(Duration::from_secs(1)).await? {
///     queue.delete(&delivery.receipt).await?;
/// }
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct SqliteQueue {
    inner: Arc<Inner>,
}

struct Inner {
    name: String,
    pool: SqlitePool,
    options: QueueOptions,
    /// Shared by every handle on this queue of this database in the process.
    wake: Arc<Notify>,
}

impl fmt::Debug for SqliteQueue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteQueue")
            .field("name", &self.inner.name)
            .field("options", &self.inner.options)
            .finish()
    }
}

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
    name: String,
    options: QueueOptions,
    source: Source,
    migrate: bool,
    settings: PoolSettings,
}

enum Source {
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

impl SqliteQueue {
    /// Starts building a queue named `name`; see [`SqliteQueueBuilder`].
    pub fn builder(name: impl Into<String>) -> SqliteQueueBuilder {
        SqliteQueueBuilder {
            name: name.into(),
            options: QueueOptions::default(),
            source: Source::None,
            migrate: true,
            settings: PoolSettings::default(),
        }
    }

    /// Opens the queue `name` in the database at `url` (`sqlite://path/to/file.db`,
    /// a plain path, or `sqlite::memory:`) with a pool of its own, creating
    /// the file and the tables when missing. To share one pool between
    /// queues, open it with [`connect_pool`] and use [`SqliteQueue::from_pool`].
    pub async fn connect(url: &str, name: &str, options: QueueOptions) -> Result<Self> {
        Self::builder(name).url(url).options(options).open().await
    }

    /// The queue `name` on an existing pool. Does not touch the database:
    /// run [`migrate`] on the pool once before using it. For an in-memory
    /// database the pool must have exactly one connection (as
    /// [`connect_pool`] makes it), or each connection sees its own database.
    pub fn from_pool(pool: SqlitePool, name: &str, options: QueueOptions) -> Result<Self> {
        validate_queue_name(name)?;
        Ok(Self::new_unchecked(pool, name.to_owned(), options))
    }

    fn new_unchecked(pool: SqlitePool, name: String, options: QueueOptions) -> Self {
        let key = format!("{}\0{name}", connect::database_key(&pool).display());
        let wake = flextide_queue_sql::waker(&key);
        SqliteQueue {
            inner: Arc::new(Inner {
                name,
                pool,
                options,
                wake,
            }),
        }
    }

    /// The pool this queue uses, to start a transaction for
    /// [`SqliteQueue::push_in_tx`] or to open more queues on it.
    pub fn pool(&self) -> &SqlitePool {
        &self.inner.pool
    }

    /// The options the queue was opened with.
    pub fn options(&self) -> &QueueOptions {
        &self.inner.options
    }

    /// Enqueues `message` inside your own transaction, so it commits or rolls
    /// back with the rest of your work (a workflow step and its next task).
    /// Pass `&mut *tx`. Begin the transaction with
    /// `pool.begin_with("BEGIN IMMEDIATE")` when it reads before writing, so
    /// SQLite waits for the write lock instead of failing with "database is
    /// locked". Once committed, call [`SqliteQueue::notify_pushed`] to wake
    /// waiting pops in this process at once (they find it by polling anyway).
    /// On an in-memory database the pool has one connection, which your
    /// transaction holds: call no other queue operation until it ends.
    ///
    /// ```no_run
    /// # async fn demo(queue: flextide_queue_sqlite::SqliteQueue) -> flextide_queue_core::Result<()> {
    /// use flextide_queue_core::Message;
    /// let mut tx = queue.pool().begin_with("BEGIN IMMEDIATE").await.unwrap();
    /// // ... your own writes on &mut *tx ...
    /// queue.push_in_tx(&mut tx, Message::new("next step")).await?;
    /// tx.commit().await.unwrap();
    /// queue.notify_pushed();
    /// # Ok(()) }
    /// ```
    pub async fn push_in_tx(
        &self,
        conn: &mut SqliteConnection,
        message: Message,
    ) -> Result<MessageId> {
        self.check_message(&message)?;
        let id = message.id.clone();
        self.insert_one(&mut *conn, &message).await?;
        Ok(id)
    }

    /// Wakes the pops waiting on this queue in this process, after a
    /// [`SqliteQueue::push_in_tx`] transaction committed.
    pub fn notify_pushed(&self) {
        self.inner.wake.notify_waiters();
    }

    /// Removes this queue and everything it stored; see [`drop_queue`].
    pub async fn drop_queue(&self) -> Result<u64> {
        drop_queue(&self.inner.pool, &self.inner.name).await
    }

    fn check_message(&self, message: &Message) -> Result<()> {
        if message.dedup_id.is_some() {
            return Err(QueueError::unsupported(BACKEND, "push with dedup_id"));
        }
        backend::check_payload(
            BACKEND,
            message.payload.len(),
            CAPABILITIES.max_payload_bytes,
        )
    }

    fn max_attempts(&self) -> i64 {
        self.inner.options.max_attempts.map_or(i64::MAX, i64::from)
    }

    fn max_attempts_reason(&self) -> String {
        backend::max_attempts_reason(self.inner.options.max_attempts.unwrap_or(u32::MAX))
    }

    /// One multi-row INSERT of up to [`PUSH_CHUNK`] messages.
    async fn insert_chunk<'e, E>(&self, executor: E, chunk: &[&Message], now: i64) -> Result<()>
    where
        E: sqlx::Executor<'e, Database = Sqlite>,
    {
        let mut insert = QueryBuilder::<Sqlite>::new(
            "INSERT INTO flextide_queue_messages \
             (queue, id, payload, headers, priority, ordering_key, enqueued_at, visible_at) ",
        );
        insert.push_values(chunk, |mut row, m| {
            row.push_bind(self.inner.name.as_str())
                .push_bind(m.id.as_str())
                .push_bind(m.payload.as_ref())
                .push_bind(headers_text(m))
                .push_bind(i64::from(m.priority))
                .push_bind(m.ordering_key.as_deref())
                .push_bind(now)
                .push_bind(now.saturating_add(millis(m.delay.unwrap_or_default())));
        });
        insert.build().execute(executor).await.map_err(error::map)?;
        Ok(())
    }

    async fn insert_one(&self, conn: &mut SqliteConnection, message: &Message) -> Result<()> {
        let now = backend::now_millis();
        sqlx::query(
            "INSERT INTO flextide_queue_messages \
             (queue, id, payload, headers, priority, ordering_key, enqueued_at, visible_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(self.inner.name.as_str())
        .bind(message.id.as_str())
        .bind(message.payload.as_ref())
        .bind(headers_text(message))
        .bind(i64::from(message.priority))
        .bind(message.ordering_key.as_deref())
        .bind(now)
        .bind(now.saturating_add(millis(message.delay.unwrap_or_default())))
        .execute(conn)
        .await
        .map_err(error::map)?;
        Ok(())
    }

    /// Moves expired leases past max attempts to the dead letters and drops
    /// expired leases of purged messages. A cheap read finds out whether
    /// there is anything to do, so the common case takes no write lock.
    async fn sweep(&self, now: i64) -> Result<()> {
        let needed: bool = sqlx::query_scalar(SWEEP_CHECK_SQL)
            .bind(self.inner.name.as_str())
            .bind(now)
            .bind(self.max_attempts())
            .fetch_one(&self.inner.pool)
            .await
            .map_err(error::map)?;
        if !needed {
            return Ok(());
        }
        let mut tx = self
            .inner
            .pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(error::map)?;
        sqlx::query(
            "INSERT INTO flextide_queue_dead_letters \
             (queue, id, payload, headers, priority, ordering_key, enqueued_at, attempts, reason, dead_lettered_at) \
             SELECT queue, id, payload, headers, priority, ordering_key, enqueued_at, attempts, ?4, ?2 \
             FROM flextide_queue_messages \
             WHERE queue = ?1 AND token IS NOT NULL AND visible_at <= ?2 AND purged = 0 AND attempts >= ?3 \
             ORDER BY seq",
        )
        .bind(self.inner.name.as_str())
        .bind(now)
        .bind(self.max_attempts())
        .bind(self.max_attempts_reason())
        .execute(&mut *tx)
        .await
        .map_err(error::map)?;
        sqlx::query(
            "DELETE FROM flextide_queue_messages \
             WHERE queue = ?1 AND token IS NOT NULL AND visible_at <= ?2 AND (purged = 1 OR attempts >= ?3)",
        )
        .bind(self.inner.name.as_str())
        .bind(now)
        .bind(self.max_attempts())
        .execute(&mut *tx)
        .await
        .map_err(error::map)?;
        tx.commit().await.map_err(error::map)?;
        Ok(())
    }

    /// Leases up to `max` available messages in one atomic statement.
    async fn claim(&self, max: usize) -> Result<Vec<Delivery>> {
        let started = Instant::now();
        let now = backend::now_millis();
        self.sweep(now).await?;
        let token = backend::new_token();
        let lease = self.inner.options.lease;
        let rows = sqlx::query(CLAIM_SQL)
            .bind(&token)
            .bind(now.saturating_add(millis(lease)))
            .bind(self.inner.name.as_str())
            .bind(now)
            .bind(self.max_attempts())
            .bind(i64::try_from(max).unwrap_or(i64::MAX))
            .bind(foreign_id_prefix(BACKEND))
            .fetch_all(&self.inner.pool)
            .await
            .map_err(error::map)?;
        let mut claimed = Vec::with_capacity(rows.len());
        for row in &rows {
            let attempts: i64 = row.try_get("attempts").map_err(error::map)?;
            claimed.push((
                Columns::read::<_, i64>(row, true).map_err(error::map)?,
                u32::try_from(attempts).unwrap_or(u32::MAX),
            ));
        }
        let backend::Decoded { ok, undecodable } =
            sort_claimed(BACKEND, claimed, &token, started + lease);
        for (seq, reason) in undecodable {
            self.dead_letter_undecodable(seq, &token, &reason).await;
        }
        Ok(in_delivery_order(ok))
    }

    /// [`SqliteQueue::claim`] in a task of its own, run to the end even when
    /// the pop is cut short (contract clause 13): sqlx closes a connection
    /// whose statement was dropped half-way, and the one connection of an
    /// in-memory database takes the database with it.
    async fn claim_detached(&self, max: usize) -> Result<Vec<Delivery>> {
        let q = self.clone();
        flextide_queue_sql::detach(BACKEND, async move { q.claim(max).await }).await
    }

    /// Moves a row the claim just leased but could not decode (another
    /// producer's, contract clause 12) to the dead letters, by itself. A
    /// failure only logs: the pop goes on with the rest of the batch, and the
    /// row comes back when its lease ends.
    async fn dead_letter_undecodable(&self, seq: i64, token: &str, reason: &str) {
        match self.move_to_dead_letters(seq, token, reason, false).await {
            Ok(_) => {
                tracing::warn!(queue = %self.inner.name, seq, reason, "flextide-queue-sqlite: undecodable row moved to the dead letters")
            }
            Err(e) => {
                tracing::warn!(queue = %self.inner.name, seq, reason, error = %e, "flextide-queue-sqlite: could not move an undecodable row to the dead letters; it comes back after its lease")
            }
        }
    }

    fn decode<'r>(&self, receipt: &'r Receipt) -> Result<(i64, &'r str)> {
        flextide_queue_sql::decode_receipt(BACKEND, receipt)
    }

    fn stale() -> QueueError {
        flextide_queue_sql::stale(BACKEND)
    }

    /// Moves the message of a live receipt to the dead letters in one
    /// transaction; `only_exhausted` limits it to messages past max attempts
    /// (dropping purged ones instead). Returns whether the receipt matched.
    async fn move_to_dead_letters(
        &self,
        seq: i64,
        token: &str,
        reason: &str,
        only_exhausted: bool,
    ) -> Result<bool> {
        let now = backend::now_millis();
        let limit = if only_exhausted {
            self.max_attempts()
        } else {
            0
        };
        let mut tx = self
            .inner
            .pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(error::map)?;
        sqlx::query(
            "INSERT INTO flextide_queue_dead_letters \
             (queue, id, payload, headers, priority, ordering_key, enqueued_at, attempts, reason, dead_lettered_at) \
             SELECT queue, id, payload, headers, priority, ordering_key, enqueued_at, attempts, ?4, ?5 \
             FROM flextide_queue_messages \
             WHERE seq = ?1 AND queue = ?2 AND token = ?3 AND attempts >= ?6 AND (purged = 0 OR ?7 = 0)",
        )
        .bind(seq)
        .bind(self.inner.name.as_str())
        .bind(token)
        .bind(reason)
        .bind(now)
        .bind(limit)
        .bind(only_exhausted)
        .execute(&mut *tx)
        .await
        .map_err(error::map)?;
        let removed = sqlx::query(
            "DELETE FROM flextide_queue_messages \
             WHERE seq = ?1 AND queue = ?2 AND token = ?3 AND (attempts >= ?4 OR purged = 1)",
        )
        .bind(seq)
        .bind(self.inner.name.as_str())
        .bind(token)
        .bind(limit)
        .execute(&mut *tx)
        .await
        .map_err(error::map)?
        .rows_affected();
        tx.commit().await.map_err(error::map)?;
        Ok(removed > 0)
    }

    async fn replay_selected(
        &self,
        tx: &mut SqliteConnection,
        selection: Selection<'_>,
    ) -> Result<u64> {
        let now = backend::now_millis();
        let mut insert = QueryBuilder::<Sqlite>::new(
            "INSERT INTO flextide_queue_messages \
             (queue, id, payload, headers, priority, ordering_key, enqueued_at, visible_at) \
             SELECT queue, id, payload, headers, priority, ordering_key, enqueued_at, ",
        );
        insert
            .push_bind(now)
            .push(" FROM flextide_queue_dead_letters WHERE ");
        selection.push(&mut insert, &self.inner.name);
        insert.push(" ORDER BY dseq");
        let moved = insert
            .build()
            .execute(&mut *tx)
            .await
            .map_err(error::map)?
            .rows_affected();
        let mut delete =
            QueryBuilder::<Sqlite>::new("DELETE FROM flextide_queue_dead_letters WHERE ");
        selection.push(&mut delete, &self.inner.name);
        delete.build().execute(&mut *tx).await.map_err(error::map)?;
        Ok(moved)
    }
}

/// Which dead letters a replay statement takes.
#[derive(Clone, Copy)]
enum Selection<'a> {
    All,
    Oldest(i64),
    Ids(&'a [MessageId]),
}

impl Selection<'_> {
    fn push(self, q: &mut QueryBuilder<Sqlite>, queue: &str) {
        q.push("queue = ").push_bind(queue.to_owned());
        match self {
            Selection::All => {}
            Selection::Oldest(n) => {
                q.push(" AND dseq IN (SELECT dseq FROM flextide_queue_dead_letters WHERE queue = ")
                    .push_bind(queue.to_owned())
                    .push(" ORDER BY dseq LIMIT ")
                    .push_bind(n)
                    .push(")");
            }
            Selection::Ids(ids) => {
                q.push(" AND id IN (");
                let mut list = q.separated(", ");
                for id in ids {
                    list.push_bind(id.as_str().to_owned());
                }
                q.push(")");
            }
        }
    }
}

/// Leases up to ?6 available messages in one atomic statement. Only the head
/// (lowest seq) of an ordering key is claimable, so a key is blocked while
/// its head is leased or not yet due. Binds: token, lease end, queue, now,
/// max attempts, limit, foreign id prefix. A row another producer inserted
/// with an empty id gets its stable foreign id (`sqlite-<seq>`) here.
const CLAIM_SQL: &str = "UPDATE flextide_queue_messages SET token = ?1, attempts = attempts + 1, visible_at = ?2, \
     id = CASE WHEN id = '' THEN ?7 || seq ELSE id END \
     WHERE seq IN ( \
       SELECT m.seq FROM flextide_queue_messages AS m \
       WHERE m.queue = ?3 AND m.visible_at <= ?4 AND m.purged = 0 \
         AND (m.token IS NULL OR m.attempts < ?5) \
         AND (m.ordering_key IS NULL OR m.seq = ( \
           SELECT MIN(k.seq) FROM flextide_queue_messages AS k \
           WHERE k.queue = ?3 AND k.ordering_key = m.ordering_key)) \
       ORDER BY m.priority DESC, m.seq \
       LIMIT ?6) \
     RETURNING seq, id, payload, headers, priority, ordering_key, enqueued_at, attempts";

/// Whether any expired lease must be dead-lettered or dropped (purged).
/// Binds: queue, now, max attempts.
const SWEEP_CHECK_SQL: &str = "SELECT EXISTS (SELECT 1 FROM flextide_queue_messages \
     WHERE queue = ?1 AND token IS NOT NULL AND visible_at <= ?2 AND (purged = 1 OR attempts >= ?3))";

#[async_trait]
impl QueueProvider for SqliteQueue {
    fn queue_name(&self) -> &str {
        &self.inner.name
    }

    fn capabilities(&self) -> Capabilities {
        CAPABILITIES
    }

    fn backend_name(&self) -> &'static str {
        BACKEND
    }

    async fn push(&self, message: Message) -> Result<MessageId> {
        self.check_message(&message)?;
        let id = message.id.clone();
        let mut conn = self.inner.pool.acquire().await.map_err(error::map)?;
        self.insert_one(&mut conn, &message).await?;
        drop(conn);
        self.inner.wake.notify_waiters();
        Ok(id)
    }

    async fn push_batch(&self, messages: Vec<Message>) -> Result<Vec<MessageId>> {
        if messages.is_empty() {
            return Ok(Vec::new());
        }
        // Refused items are reported by index; the others are enqueued
        // together in one transaction of multi-row INSERTs.
        let mut failures = Vec::new();
        let mut valid = Vec::with_capacity(messages.len());
        for (index, message) in messages.iter().enumerate() {
            match self.check_message(message) {
                Ok(()) => valid.push(message),
                Err(error) => failures.push(BatchFailure { index, error }),
            }
        }
        if !valid.is_empty() {
            let now = backend::now_millis();
            if valid.len() <= PUSH_CHUNK {
                self.insert_chunk(&self.inner.pool, &valid, now).await?;
            } else {
                let mut tx = self
                    .inner
                    .pool
                    .begin_with("BEGIN IMMEDIATE")
                    .await
                    .map_err(error::map)?;
                for chunk in valid.chunks(PUSH_CHUNK) {
                    self.insert_chunk(&mut *tx, chunk, now).await?;
                }
                tx.commit().await.map_err(error::map)?;
            }
            self.inner.wake.notify_waiters();
        }
        flextide_queue_core::backend::batch_result(
            BACKEND,
            messages.into_iter().map(|m| m.id).collect(),
            failures,
        )
    }

    async fn pop_batch(&self, max: usize, wait: Duration) -> Result<Vec<Delivery>> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let backoff = PollBackoff::new(wait, POLL_MIN, POLL_MAX);
        backend::wait_for_deliveries(&self.inner.wake, backoff, |_| self.claim_detached(max)).await
    }

    async fn delete(&self, receipt: &Receipt) -> Result<()> {
        let (seq, token) = self.decode(receipt)?;
        let deleted = sqlx::query(
            "DELETE FROM flextide_queue_messages WHERE seq = ? AND queue = ? AND token = ?",
        )
        .bind(seq)
        .bind(self.inner.name.as_str())
        .bind(token)
        .execute(&self.inner.pool)
        .await
        .map_err(error::map)?
        .rows_affected();
        if deleted == 0 {
            return Err(Self::stale());
        }
        // The next message of its ordering key may be free now.
        self.inner.wake.notify_waiters();
        Ok(())
    }

    async fn delete_batch(&self, receipts: &[Receipt]) -> Result<()> {
        let mut batch = DeleteBatch::new(BACKEND, receipts);
        let wanted = batch.wanted().to_vec();
        for chunk in wanted.chunks(DELETE_CHUNK) {
            let mut delete =
                QueryBuilder::<Sqlite>::new("DELETE FROM flextide_queue_messages WHERE queue = ");
            delete
                .push_bind(self.inner.name.as_str())
                .push(" AND (seq, token) IN (VALUES ");
            let mut list = delete.separated(", ");
            for w in chunk {
                list.push("(")
                    .push_bind_unseparated(w.seq)
                    .push_unseparated(", ")
                    .push_bind_unseparated(w.token.as_str())
                    .push_unseparated(")");
            }
            delete.push(") RETURNING seq, token");
            match delete
                .build_query_as::<(i64, String)>()
                .fetch_all(&self.inner.pool)
                .await
            {
                Ok(deleted) => batch.settled(chunk, &deleted),
                Err(e) => batch.failed(chunk, error::map(e)),
            }
        }
        self.inner.wake.notify_waiters();
        batch.finish()
    }

    async fn nack(&self, receipt: &Receipt, delay: Duration) -> Result<()> {
        let (seq, token) = self.decode(receipt)?;
        let visible_at = backend::now_millis().saturating_add(millis(delay));
        // The common case is one statement: give the message back unless it
        // is out of attempts (or purged), which the transaction below handles.
        let updated = sqlx::query(
            "UPDATE flextide_queue_messages SET token = NULL, visible_at = ?1 \
             WHERE seq = ?2 AND queue = ?3 AND token = ?4 AND purged = 0 AND attempts < ?5",
        )
        .bind(visible_at)
        .bind(seq)
        .bind(self.inner.name.as_str())
        .bind(token)
        .bind(self.max_attempts())
        .execute(&self.inner.pool)
        .await
        .map_err(error::map)?
        .rows_affected();
        if updated == 0
            && !self
                .move_to_dead_letters(seq, token, &self.max_attempts_reason(), true)
                .await?
        {
            return Err(Self::stale());
        }
        self.inner.wake.notify_waiters();
        Ok(())
    }

    async fn extend(&self, receipt: &Receipt, by: Duration) -> Result<()> {
        let (seq, token) = self.decode(receipt)?;
        let visible_at = backend::now_millis().saturating_add(millis(by));
        let updated =
            sqlx::query("UPDATE flextide_queue_messages SET visible_at = ? WHERE seq = ? AND queue = ? AND token = ?")
                .bind(visible_at)
                .bind(seq)
                .bind(self.inner.name.as_str())
                .bind(token)
                .execute(&self.inner.pool)
                .await
                .map_err(error::map)?
                .rows_affected();
        if updated == 0 {
            Err(Self::stale())
        } else {
            Ok(())
        }
    }

    async fn dead_letter(&self, receipt: &Receipt, reason: &str) -> Result<()> {
        let (seq, token) = self.decode(receipt)?;
        if !self.move_to_dead_letters(seq, token, reason, false).await? {
            return Err(Self::stale());
        }
        self.inner.wake.notify_waiters();
        Ok(())
    }

    async fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>> {
        self.sweep(backend::now_millis()).await?;
        let rows = sqlx::query(
            "SELECT id, payload, headers, priority, ordering_key, enqueued_at, attempts, reason, dead_lettered_at \
             FROM flextide_queue_dead_letters WHERE queue = ? ORDER BY dseq LIMIT ?",
        )
        .bind(self.inner.name.as_str())
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.inner.pool)
        .await
        .map_err(error::map)?;
        rows.iter()
            .map(|row| dead_letter::<_, i64, i64>(BACKEND, row).map_err(error::map))
            .collect()
    }

    async fn replay_dead_letters(&self, which: Replay) -> Result<u64> {
        let mut tx = self
            .inner
            .pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(error::map)?;
        let moved = match &which {
            Replay::All => self.replay_selected(&mut tx, Selection::All).await?,
            Replay::Oldest(0) => 0,
            Replay::Oldest(n) => {
                self.replay_selected(
                    &mut tx,
                    Selection::Oldest(i64::try_from(*n).unwrap_or(i64::MAX)),
                )
                .await?
            }
            Replay::Ids(ids) => {
                let mut moved = 0;
                for chunk in ids.chunks(REPLAY_CHUNK) {
                    moved += self.replay_selected(&mut tx, Selection::Ids(chunk)).await?;
                }
                moved
            }
        };
        tx.commit().await.map_err(error::map)?;
        if moved > 0 {
            self.inner.wake.notify_waiters();
        }
        Ok(moved)
    }

    async fn purge_dead_letters(&self) -> Result<u64> {
        Ok(
            sqlx::query("DELETE FROM flextide_queue_dead_letters WHERE queue = ?")
                .bind(self.inner.name.as_str())
                .execute(&self.inner.pool)
                .await
                .map_err(error::map)?
                .rows_affected(),
        )
    }

    async fn peek(&self, limit: usize) -> Result<Vec<Message>> {
        let now = backend::now_millis();
        self.sweep(now).await?;
        let rows = sqlx::query(
            "SELECT seq, id, payload, headers, priority, ordering_key, enqueued_at FROM flextide_queue_messages \
             WHERE queue = ?1 AND visible_at <= ?2 AND purged = 0 AND (token IS NULL OR attempts < ?3) \
             ORDER BY priority DESC, seq LIMIT ?4",
        )
        .bind(self.inner.name.as_str())
        .bind(now)
        .bind(self.max_attempts())
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.inner.pool)
        .await
        .map_err(error::map)?;
        // A row that is no message is not shown: the next pop dead-letters it.
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            let columns = Columns::read::<_, i64>(row, true).map_err(error::map)?;
            if let Ok(message) = columns.message(BACKEND) {
                out.push(message);
            }
        }
        Ok(out)
    }

    async fn purge(&self) -> Result<u64> {
        let now = backend::now_millis();
        self.sweep(now).await?;
        let mut tx = self
            .inner
            .pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(error::map)?;
        // Leased messages stay until settled or expired (their receipts keep
        // working) but are never delivered again.
        let removed = sqlx::query(
            "DELETE FROM flextide_queue_messages \
             WHERE queue = ?1 AND NOT (token IS NOT NULL AND visible_at > ?2)",
        )
        .bind(self.inner.name.as_str())
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(error::map)?
        .rows_affected();
        sqlx::query(
            "UPDATE flextide_queue_messages SET purged = 1 WHERE queue = ?1 AND token IS NOT NULL",
        )
        .bind(self.inner.name.as_str())
        .execute(&mut *tx)
        .await
        .map_err(error::map)?;
        tx.commit().await.map_err(error::map)?;
        Ok(removed)
    }

    async fn stats(&self) -> Result<QueueStats> {
        let now = backend::now_millis();
        self.sweep(now).await?;
        let row = sqlx::query(
            "SELECT \
               COALESCE(SUM(visible_at <= ?2 AND purged = 0), 0) AS depth, \
               COALESCE(SUM(token IS NOT NULL AND visible_at > ?2), 0) AS in_flight, \
               COALESCE(SUM(token IS NULL AND visible_at > ?2), 0) AS delayed, \
               MIN(CASE WHEN token IS NOT NULL OR visible_at <= ?2 THEN enqueued_at END) AS oldest, \
               (SELECT COUNT(*) FROM flextide_queue_dead_letters WHERE queue = ?1) AS dead \
             FROM flextide_queue_messages WHERE queue = ?1",
        )
        .bind(self.inner.name.as_str())
        .bind(now)
        .fetch_one(&self.inner.pool)
        .await
        .map_err(error::map)?;
        let count = |name: &str| -> Result<u64> {
            let n: i64 = row.try_get(name).map_err(error::map)?;
            Ok(u64::try_from(n).unwrap_or(0))
        };
        let oldest: Option<i64> = row.try_get("oldest").map_err(error::map)?;
        Ok(QueueStats::default()
            .with_depth(count("depth")?)
            .with_in_flight(count("in_flight")?)
            .with_delayed(count("delayed")?)
            .with_dead_lettered(count("dead")?)
            .with_oldest_age(oldest.map(|at| {
                Duration::from_millis(u64::try_from(now.saturating_sub(at)).unwrap_or(0))
            })))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The hot queries walk indexes: no full scan, no sort of the queue.
    #[tokio::test]
    async fn hot_queries_use_indexes() {
        let pool = connect_pool("sqlite::memory:").await.unwrap();
        migrate(&pool).await.unwrap();
        let q = SqliteQueue::from_pool(pool.clone(), "plan", QueueOptions::default()).unwrap();
        let batch = (0..300)
            .map(|i| Message::new(format!("{i}")).with_priority((i % 3) as u8))
            .collect();
        q.push_batch(batch).await.unwrap();
        let explain = |sql: &str| sqlx::AssertSqlSafe(format!("EXPLAIN QUERY PLAN {sql}"));
        let claim: Vec<(i64, i64, i64, String)> = sqlx::query_as(explain(CLAIM_SQL))
            .bind("t")
            .bind(0_i64)
            .bind("plan")
            .bind(1_i64)
            .bind(5_i64)
            .bind(10_i64)
            .fetch_all(&pool)
            .await
            .unwrap();
        let sweep: Vec<(i64, i64, i64, String)> = sqlx::query_as(explain(SWEEP_CHECK_SQL))
            .bind("plan")
            .bind(1_i64)
            .bind(5_i64)
            .fetch_all(&pool)
            .await
            .unwrap();
        for rows in [claim, sweep] {
            let plan: Vec<String> = rows.into_iter().map(|r| r.3).collect();
            for step in &plan {
                assert!(
                    !step.contains("TEMP B-TREE"),
                    "sorts instead of walking an index: {plan:?}"
                );
                assert!(
                    !step.starts_with("SCAN")
                        || step.contains("INDEX")
                        || step == "SCAN CONSTANT ROW",
                    "full table scan: {plan:?}"
                );
            }
            assert!(
                plan.iter().any(|s| s.contains("flextide_queue_messages_")),
                "{plan:?}"
            );
        }
    }
}
