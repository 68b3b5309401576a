//! `MySqlQueue`: one named queue in the shared tables.

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
    DeleteBatch, Wanted, check_delay, copy_error,
    decode::{
        Columns, dead_letter, foreign_id_prefix, in_delivery_order, lease_deadline, sort_claimed,
    },
    decode_receipt, detach, headers_text,
};
use sqlx::{
    AssertSqlSafe, MySqlConnection, Row, Transaction,
    mysql::{MySql, MySqlConnectOptions, MySqlPool, MySqlPoolOptions},
};
use tokio::{sync::Notify, time::Instant};

use crate::{
    BACKEND,
    error::{DIALECT, is_lock_conflict, map_err},
};

/// Most messages one `pop_batch` leases, and the largest chunk `push_batch`,
/// `delete_batch` and replays send in one statement (larger batches are split).
pub const MAX_BATCH: usize = 1000;

/// Default payload limit: 8 MiB, well under the default `max_allowed_packet`
/// of MySQL 8 (64 MiB) and MariaDB (16 MiB). Change it with
/// [`MySqlQueue::with_max_payload_bytes`] if your server allows more.
pub const DEFAULT_MAX_PAYLOAD_BYTES: usize = 8 * 1024 * 1024;

/// Payload bytes per multi-row INSERT before a batch is split further.
const PUSH_CHUNK_BYTES: usize = 8 * 1024 * 1024;
/// Longest message id and ordering key, in characters (the columns' size).
const MAX_KEY_CHARS: usize = 255;
/// Polling inside a `pop` wait: from 10 ms, doubling to 500 ms.
const MIN_POLL: Duration = Duration::from_millis(10);
const MAX_POLL: Duration = Duration::from_millis(500);
/// Rows dead-lettered per transaction when expired leases run out of attempts.
const SWEEP_CHUNK: usize = 500;

/// Columns that rebuild a `Message`, in this order, from either table.
macro_rules! message_columns {
    () => {
        "id, payload, headers, priority, ordering_key, enqueued_at"
    };
}

/// The claim: the first `n` deliverable rows in priority-then-push order,
/// locked with SKIP LOCKED so concurrent claimers never wait on each other.
/// A row with an ordering key is deliverable only at the head of its key
/// (no older row of the key exists, leased or delayed or not): the
/// `NOT EXISTS` is a plain, non-locking read, so a head that another claimer
/// holds locked still blocks the rest of its key.
const CLAIM_SQL: &str = concat!(
    "SELECT m.seq, m.attempts, ",
    now_ms!(),
    " AS now, m.",
    "id, m.payload, m.headers, m.priority, m.ordering_key, m.enqueued_at",
    " FROM flextide_queue_messages m FORCE INDEX (flextide_queue_messages_claim)
    WHERE m.queue = ? AND m.visible_at <= ",
    now_ms!(),
    " AND (m.ordering_key IS NULL OR NOT EXISTS (
        SELECT 1 FROM flextide_queue_messages e FORCE INDEX (flextide_queue_messages_key)
        WHERE e.queue = m.queue AND e.ordering_key = m.ordering_key AND e.seq < m.seq))
    ORDER BY m.pri_inv, m.seq
    LIMIT ?
    FOR UPDATE SKIP LOCKED"
);

const INSERT_PREFIX: &str = "INSERT INTO flextide_queue_messages \
    (queue, id, payload, headers, priority, ordering_key, enqueued_at, visible_at) VALUES ";
const INSERT_ROW: &str = concat!("(?, ?, ?, ?, ?, ?, ", now_ms!(), ", ", now_ms!(), " + ?)");

/// A queue stored in MySQL 8.0+ or MariaDB 10.6+ (see the crate docs).
///
/// Cheap to clone; every clone and every queue opened on the same pool share
/// its connections. Create the tables once with [`migrate`](crate::migrate).
#[derive(Clone)]
pub struct MySqlQueue {
    pool: MySqlPool,
    name: Arc<str>,
    options: QueueOptions,
    lease_ms: i64,
    max_payload: usize,
    notify: Arc<Notify>,
}

impl fmt::Debug for MySqlQueue {
    // The pool's options hold the connection settings (and password): leave them out.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MySqlQueue")
            .field("name", &self.name)
            .field("options", &self.options)
            .field("max_payload", &self.max_payload)
            .finish_non_exhaustive()
    }
}

/// A validated message, ready to bind.
struct NewRow {
    id: MessageId,
    payload: Vec<u8>,
    headers: String,
    priority: u8,
    ordering_key: Option<String>,
    delay_ms: i64,
}

impl MySqlQueue {
    /// Connects with a pool of its own (sqlx defaults, up to 10 connections)
    /// and opens the queue `name`. The URL is `mysql://user:pass@host:3306/db`;
    /// it never appears in errors. Run [`migrate`](crate::migrate) once first.
    /// To share connections between queues, build a pool and use
    /// [`MySqlQueue::from_pool`].
    pub async fn connect(url: &str, name: &str, options: QueueOptions) -> Result<Self> {
        validate_queue_name(name)?;
        let connect: MySqlConnectOptions = url.parse().map_err(map_err)?;
        if connect.get_database().is_none() {
            return Err(QueueError::configuration(
                BACKEND,
                "the MySQL URL names no database: mysql://user:password@host:3306/DATABASE",
            ));
        }
        let target = format!("{}:{}", connect.get_host(), connect.get_port());
        let pool = MySqlPoolOptions::new()
            .connect_with(connect)
            .await
            .map_err(|e| DIALECT.map_connect(&target, e))?;
        Self::from_pool(pool, name, options)
    }

    /// Opens the queue `name` on an existing pool. Queues are rows keyed by
    /// name in shared tables, so opening one creates nothing; the name is
    /// validated and always sent as a bound parameter.
    pub fn from_pool(pool: MySqlPool, name: &str, options: QueueOptions) -> Result<Self> {
        validate_queue_name(name)?;
        let lease_ms = i64::try_from(options.lease.as_millis())
            .unwrap_or(i64::MAX / 4)
            .max(1);
        Ok(MySqlQueue {
            pool,
            name: name.into(),
            options,
            lease_ms,
            max_payload: DEFAULT_MAX_PAYLOAD_BYTES,
            notify: flextide_queue_sql::waker(name),
        })
    }

    /// Changes the largest payload accepted (default
    /// [`DEFAULT_MAX_PAYLOAD_BYTES`]). Keep it below the server's
    /// `max_allowed_packet`.
    pub fn with_max_payload_bytes(mut self, max: usize) -> Self {
        self.max_payload = max;
        self
    }

    /// The pool this queue uses.
    pub fn pool(&self) -> &MySqlPool {
        &self.pool
    }

    /// The options the queue was opened with.
    pub fn options(&self) -> &QueueOptions {
        &self.options
    }

    /// Enqueues a message inside your transaction: it becomes visible when
    /// you commit and vanishes if you roll back, so a workflow step and the
    /// task it schedules commit together. Waiting pops in this process see it
    /// at their next poll (at most 500 ms); call
    /// [`MySqlQueue::notify_pushed`] after committing to wake them at once.
    pub async fn push_in_tx(
        &self,
        tx: &mut Transaction<'_, MySql>,
        message: Message,
    ) -> Result<MessageId> {
        let row = self.prepare(message)?;
        insert_rows(&mut *tx, &self.name, std::slice::from_ref(&row)).await?;
        Ok(row.id)
    }

    /// Wakes the pops of this queue waiting in this process (after you
    /// committed a [`MySqlQueue::push_in_tx`]).
    pub fn notify_pushed(&self) {
        self.notify.notify_waiters();
    }

    /// Removes every message and dead letter of this queue (tests, the CLI).
    /// Returns how many rows were deleted.
    pub async fn drop_queue(&self) -> Result<u64> {
        drop_queue(&self.pool, &self.name).await
    }

    /// Checks a message against the capabilities and turns it into a row.
    fn prepare(&self, message: Message) -> Result<NewRow> {
        check_payload(BACKEND, message.payload.len(), Some(self.max_payload))?;
        if message.dedup_id.is_some() {
            return Err(QueueError::unsupported(BACKEND, "dedup"));
        }
        if message.id.as_str().chars().count() > MAX_KEY_CHARS {
            return Err(QueueError::invalid_message(
                BACKEND,
                format!("message id longer than {MAX_KEY_CHARS} characters"),
            ));
        }
        if message
            .ordering_key
            .as_ref()
            .is_some_and(|k| k.chars().count() > MAX_KEY_CHARS)
        {
            return Err(QueueError::invalid_message(
                BACKEND,
                format!("ordering key longer than {MAX_KEY_CHARS} characters"),
            ));
        }
        let delay_ms = check_delay(BACKEND, message.delay.unwrap_or_default())?;
        Ok(NewRow {
            headers: headers_text(&message),
            id: message.id,
            payload: message.payload.to_vec(),
            priority: message.priority,
            ordering_key: message.ordering_key,
            delay_ms,
        })
    }

    /// Leases up to `max` messages in one short transaction: BEGIN, the
    /// locking SELECT (which reads every column needed), one UPDATE, COMMIT.
    /// Rows that ran out of attempts are dead-lettered instead, in the same
    /// transaction; the flag says some were (so the caller claims again).
    async fn claim(&self, max: usize) -> Result<(Vec<Delivery>, bool)> {
        let q = self.clone();
        detach(BACKEND, async move { q.claim_tx(max).await }).await
    }

    async fn claim_tx(&self, max: usize) -> Result<(Vec<Delivery>, bool)> {
        let started = Instant::now();
        let mut tx = begin(&self.pool).await?;
        let rows = sqlx::query(CLAIM_SQL)
            .bind(&*self.name)
            .bind(max as u64)
            .fetch_all(&mut *tx)
            .await
            .map_err(map_err)?;
        if rows.is_empty() {
            tx.commit().await.map_err(map_err)?;
            return Ok((Vec::new(), false));
        }
        let now: i64 = rows[0].try_get("now").map_err(map_err)?;
        let token = new_token();
        let mut claimed = Vec::with_capacity(rows.len());
        let mut exhausted = Vec::new();
        for row in &rows {
            let seq: i64 = row.try_get("seq").map_err(map_err)?;
            let attempts: u32 = row.try_get("attempts").map_err(map_err)?;
            match self.options.max_attempts {
                Some(limit) if attempts >= limit => exhausted.push(seq),
                _ => claimed.push((
                    Columns::read::<_, u8>(row, true).map_err(map_err)?,
                    attempts.saturating_add(1),
                )),
            }
        }
        if let Some(limit) = self.options.max_attempts
            && !exhausted.is_empty()
        {
            move_to_dead_letters(&mut tx, &exhausted, &max_attempts_reason(limit)).await?;
        }
        // Rows another producer wrote that are no message (clause 12) go to
        // the dead letters alone, in this transaction, before any attempt.
        let deadline = lease_deadline(started, self.lease_ms);
        let Decoded {
            ok: deliver,
            undecodable,
        } = sort_claimed(BACKEND, claimed, &token, deadline);
        for (seq, reason) in &undecodable {
            // Its foreign id first, so the dead letter can be replayed by id.
            sqlx::query(
                "UPDATE flextide_queue_messages SET id = CONCAT(?, seq) WHERE seq = ? AND id = ''",
            )
            .bind(foreign_id_prefix(BACKEND))
            .bind(*seq)
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
            move_to_dead_letters(&mut tx, &[*seq], reason).await?;
        }
        if !deliver.is_empty() {
            // A row inserted by hand with an empty id gets its stable
            // foreign id on its first claim.
            let sql = format!(
                "UPDATE flextide_queue_messages SET leased = 1, token = ?, attempts = attempts + 1, visible_at = ?, \
                 id = IF(id = '', CONCAT(?, seq), id) WHERE seq IN ({})",
                placeholders(deliver.len())
            );
            let mut update = sqlx::query(AssertSqlSafe(sql))
                .bind(&token)
                .bind(now.saturating_add(self.lease_ms))
                .bind(foreign_id_prefix(BACKEND));
            for (seq, _) in &deliver {
                update = update.bind(*seq);
            }
            update.execute(&mut *tx).await.map_err(map_err)?;
        }
        tx.commit().await.map_err(map_err)?;
        let deliveries = in_delivery_order(deliver);
        Ok((deliveries, !exhausted.is_empty() || !undecodable.is_empty()))
    }

    /// Dead-letters messages whose lease ran out after their last allowed
    /// attempt. The claim does this for the rows it reaches; this catches the
    /// rest, so a pop, stats or dead-letter listing never shows them as live.
    async fn sweep_exhausted(&self) -> Result<()> {
        let Some(limit) = self.options.max_attempts else {
            return Ok(());
        };
        let q = self.clone();
        detach(BACKEND, async move { q.sweep_exhausted_tx(limit).await }).await
    }

    async fn sweep_exhausted_tx(&self, limit: u32) -> Result<()> {
        let reason = max_attempts_reason(limit);
        loop {
            // A cheap non-locking probe on the lease index; usually empty.
            let candidates: Vec<i64> = sqlx::query_scalar(concat!(
                "SELECT seq FROM flextide_queue_messages FORCE INDEX (flextide_queue_messages_lease)
                 WHERE queue = ? AND leased = 1 AND visible_at <= ",
                now_ms!(),
                " AND attempts >= ? LIMIT 500"
            ))
            .bind(&*self.name)
            .bind(limit)
            .fetch_all(&self.pool)
            .await
            .map_err(map_err)?;
            if candidates.is_empty() {
                return Ok(());
            }
            let mut tx = begin(&self.pool).await?;
            let sql = format!(
                concat!(
                    "SELECT seq FROM flextide_queue_messages WHERE seq IN ({}) AND queue = ? AND leased = 1 AND visible_at <= ",
                    now_ms!(),
                    " AND attempts >= ? FOR UPDATE SKIP LOCKED"
                ),
                placeholders(candidates.len())
            );
            let mut lock = sqlx::query_scalar::<_, i64>(AssertSqlSafe(sql));
            for seq in &candidates {
                lock = lock.bind(*seq);
            }
            let locked = lock
                .bind(&*self.name)
                .bind(limit)
                .fetch_all(&mut *tx)
                .await
                .map_err(map_err)?;
            if !locked.is_empty() {
                move_to_dead_letters(&mut tx, &locked, &reason).await?;
            }
            tx.commit().await.map_err(map_err)?;
            if candidates.len() < SWEEP_CHUNK || locked.len() < candidates.len() {
                return Ok(());
            }
        }
    }

    /// Moves the delivery `seq`/`token` to the dead letters, or fails with
    /// `StaleReceipt` when the token no longer holds it.
    async fn dead_letter_delivery(&self, seq: i64, token: &str, reason: &str) -> Result<()> {
        let (q, token, reason) = (self.clone(), token.to_owned(), reason.to_owned());
        detach(BACKEND, async move {
            q.dead_letter_delivery_tx(seq, &token, &reason).await
        })
        .await
    }

    async fn dead_letter_delivery_tx(&self, seq: i64, token: &str, reason: &str) -> Result<()> {
        let mut tx = begin(&self.pool).await?;
        let copied = sqlx::query(concat!(
            "INSERT INTO flextide_queue_dead_letters
                (queue, id, payload, headers, priority, ordering_key, enqueued_at, attempts, reason, dead_at)
             SELECT queue, id, payload, headers, priority, ordering_key, enqueued_at, attempts, ?, ",
            now_ms!(),
            " FROM flextide_queue_messages WHERE seq = ? AND queue = ? AND token = ?"
        ))
        .bind(reason)
        .bind(seq)
        .bind(&*self.name)
        .bind(token)
        .execute(&mut *tx)
        .await
        .map_err(map_err)?
        .rows_affected();
        if copied != 1 {
            tx.rollback().await.map_err(map_err)?;
            return Err(QueueError::StaleReceipt { backend: BACKEND });
        }
        // The copy did not lock the row: a claim may have re-leased it since.
        let deleted = sqlx::query(
            "DELETE FROM flextide_queue_messages WHERE seq = ? AND queue = ? AND token = ?",
        )
        .bind(seq)
        .bind(&*self.name)
        .bind(token)
        .execute(&mut *tx)
        .await
        .map_err(map_err)?
        .rows_affected();
        if deleted != 1 {
            tx.rollback().await.map_err(map_err)?;
            return Err(QueueError::StaleReceipt { backend: BACKEND });
        }
        tx.commit().await.map_err(map_err)
    }

    /// Deletes one chunk of receipts in one transaction, returning the
    /// rows (seq and token) it deleted.
    async fn delete_chunk(&self, keys: &[Wanted]) -> Result<Vec<(i64, String)>> {
        let (q, keys) = (self.clone(), keys.to_vec());
        detach(BACKEND, async move { q.delete_chunk_tx(&keys).await }).await
    }

    async fn delete_chunk_tx(&self, keys: &[Wanted]) -> Result<Vec<(i64, String)>> {
        let mut tx = begin(&self.pool).await?;
        let sql = format!(
            "SELECT seq, token FROM flextide_queue_messages WHERE seq IN ({}) AND queue = ? FOR UPDATE",
            placeholders(keys.len())
        );
        let mut select = sqlx::query_as::<_, (i64, Option<String>)>(AssertSqlSafe(sql));
        for key in keys {
            select = select.bind(key.seq);
        }
        let held: Vec<(i64, String)> = select
            .bind(&*self.name)
            .fetch_all(&mut *tx)
            .await
            .map_err(map_err)?
            .into_iter()
            .filter_map(|(seq, token)| {
                let token = token?;
                keys.iter()
                    .any(|k| k.seq == seq && k.token == token)
                    .then_some((seq, token))
            })
            .collect();
        if !held.is_empty() {
            let sql = format!(
                "DELETE FROM flextide_queue_messages WHERE seq IN ({})",
                placeholders(held.len())
            );
            let mut query = sqlx::query(AssertSqlSafe(sql));
            for (seq, _) in &held {
                query = query.bind(*seq);
            }
            query.execute(&mut *tx).await.map_err(map_err)?;
        }
        tx.commit().await.map_err(map_err)?;
        Ok(held)
    }

    /// Replays up to `limit` dead letters (oldest first, or those with these
    /// ids) in one transaction; returns how many moved.
    async fn replay_chunk(&self, ids: Option<&[MessageId]>, limit: usize) -> Result<u64> {
        let (q, ids) = (self.clone(), ids.map(<[MessageId]>::to_vec));
        detach(BACKEND, async move {
            q.replay_chunk_tx(ids.as_deref(), limit).await
        })
        .await
    }

    async fn replay_chunk_tx(&self, ids: Option<&[MessageId]>, limit: usize) -> Result<u64> {
        let mut tx = begin(&self.pool).await?;
        let dseqs: Vec<i64> = match ids {
            Some(ids) => {
                let sql = format!(
                    "SELECT dseq FROM flextide_queue_dead_letters WHERE queue = ? AND id IN ({}) ORDER BY dseq FOR UPDATE",
                    placeholders(ids.len())
                );
                let mut query = sqlx::query_scalar(AssertSqlSafe(sql)).bind(&*self.name);
                for id in ids {
                    query = query.bind(id.as_str());
                }
                query.fetch_all(&mut *tx).await.map_err(map_err)?
            }
            None => sqlx::query_scalar(
                "SELECT dseq FROM flextide_queue_dead_letters WHERE queue = ? ORDER BY dseq LIMIT ? FOR UPDATE",
            )
            .bind(&*self.name)
            .bind(limit as u64)
            .fetch_all(&mut *tx)
            .await
            .map_err(map_err)?,
        };
        if dseqs.is_empty() {
            tx.commit().await.map_err(map_err)?;
            return Ok(0);
        }
        let list = placeholders(dseqs.len());
        let insert = format!(
            concat!(
                "INSERT INTO flextide_queue_messages
                    (queue, id, payload, headers, priority, ordering_key, enqueued_at, visible_at)
                 SELECT queue, id, payload, headers, priority, ordering_key, ",
                now_ms!(),
                ", ",
                now_ms!(),
                " FROM flextide_queue_dead_letters WHERE dseq IN ({}) ORDER BY dseq"
            ),
            list
        );
        let mut query = sqlx::query(AssertSqlSafe(insert));
        for dseq in &dseqs {
            query = query.bind(*dseq);
        }
        query.execute(&mut *tx).await.map_err(map_err)?;
        let delete = format!("DELETE FROM flextide_queue_dead_letters WHERE dseq IN ({list})");
        let mut query = sqlx::query(AssertSqlSafe(delete));
        for dseq in &dseqs {
            query = query.bind(*dseq);
        }
        query.execute(&mut *tx).await.map_err(map_err)?;
        tx.commit().await.map_err(map_err)?;
        Ok(dseqs.len() as u64)
    }
}

#[async_trait]
impl QueueProvider for MySqlQueue {
    fn queue_name(&self) -> &str {
        &self.name
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            fifo: true,
            ordering_key: true,
            priority: true,
            delay: true,
            max_delay: None,
            max_payload_bytes: Some(self.max_payload),
            max_batch: Some(MAX_BATCH),
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
        let row = self.prepare(message)?;
        let (pool, name, rows) = (&self.pool, &*self.name, std::slice::from_ref(&row));
        retry_lock_conflicts(|| async move {
            let mut conn = pool.acquire().await.map_err(map_err)?;
            insert_rows(&mut conn, name, rows).await
        })
        .await?;
        self.notify.notify_waiters();
        Ok(row.id)
    }

    async fn push_batch(&self, messages: Vec<Message>) -> Result<Vec<MessageId>> {
        let mut failures = Vec::new();
        let mut rows = Vec::with_capacity(messages.len());
        for (index, message) in messages.into_iter().enumerate() {
            match self.prepare(message) {
                Ok(row) => rows.push((index, row)),
                Err(error) => failures.push(BatchFailure { index, error }),
            }
        }
        let mut ids = Vec::with_capacity(rows.len());
        let mut chunk: Vec<(usize, NewRow)> = Vec::new();
        let mut chunk_bytes = 0;
        let mut rows = rows.into_iter().peekable();
        while let Some((index, row)) = rows.next() {
            chunk_bytes += row.payload.len();
            chunk.push((index, row));
            let full = chunk.len() >= MAX_BATCH
                || rows
                    .peek()
                    .is_none_or(|(_, next)| chunk_bytes + next.payload.len() > PUSH_CHUNK_BYTES);
            if !full {
                continue;
            }
            let (indexes, batch): (Vec<usize>, Vec<NewRow>) =
                std::mem::take(&mut chunk).into_iter().unzip();
            chunk_bytes = 0;
            let (pool, name, rows) = (&self.pool, &*self.name, batch.as_slice());
            let outcome = retry_lock_conflicts(|| async move {
                let mut conn = pool.acquire().await.map_err(map_err)?;
                insert_rows(&mut conn, name, rows).await
            })
            .await;
            match outcome {
                Ok(()) => ids.extend(batch.into_iter().map(|row| row.id)),
                Err(error) => {
                    failures.extend(indexes.iter().map(|&index| BatchFailure {
                        index,
                        error: copy_error(BACKEND, &error),
                    }));
                }
            }
        }
        if !ids.is_empty() {
            self.notify.notify_waiters();
        }
        flextide_queue_core::backend::batch_result(BACKEND, ids, failures)
    }

    async fn pop_batch(&self, max: usize, wait: Duration) -> Result<Vec<Delivery>> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let max = max.min(MAX_BATCH);
        self.sweep_exhausted().await?;
        let backoff = PollBackoff::new(wait, MIN_POLL, MAX_POLL);
        wait_for_deliveries(&self.notify, backoff, |_| async move {
            loop {
                let (deliveries, dead_lettered) = retry_lock_conflicts(|| self.claim(max)).await?;
                // A claim that only dead-lettered rows may have left ready
                // ones behind: look again at once.
                if !deliveries.is_empty() || !dead_lettered {
                    return Ok(deliveries);
                }
            }
        })
        .await
    }

    async fn delete(&self, receipt: &Receipt) -> Result<()> {
        let (seq, token) = decode_receipt(BACKEND, receipt)?;
        let deleted = sqlx::query(
            "DELETE FROM flextide_queue_messages WHERE seq = ? AND queue = ? AND token = ?",
        )
        .bind(seq)
        .bind(&*self.name)
        .bind(token)
        .execute(&self.pool)
        .await
        .map_err(map_err)?
        .rows_affected();
        if deleted == 1 {
            Ok(())
        } else {
            Err(QueueError::StaleReceipt { backend: BACKEND })
        }
    }

    async fn delete_batch(&self, receipts: &[Receipt]) -> Result<()> {
        let mut batch = DeleteBatch::new(BACKEND, receipts);
        let wanted = batch.wanted().to_vec();
        for chunk in wanted.chunks(MAX_BATCH) {
            match retry_lock_conflicts(|| self.delete_chunk(chunk)).await {
                Ok(deleted) => batch.settled(chunk, &deleted),
                Err(error) => batch.failed(chunk, error),
            }
        }
        batch.finish()
    }

    async fn nack(&self, receipt: &Receipt, delay: Duration) -> Result<()> {
        let (seq, token) = decode_receipt(BACKEND, receipt)?;
        let delay = check_delay(BACKEND, delay)?;
        let limit = self.options.max_attempts.map_or(i64::MAX, i64::from);
        let released = sqlx::query(concat!(
            "UPDATE flextide_queue_messages SET leased = 0, token = NULL, visible_at = ",
            now_ms!(),
            " + ? WHERE seq = ? AND queue = ? AND token = ? AND attempts < ?"
        ))
        .bind(delay)
        .bind(seq)
        .bind(&*self.name)
        .bind(token)
        .bind(limit)
        .execute(&self.pool)
        .await
        .map_err(map_err)?
        .rows_affected();
        if released == 1 {
            if delay == 0 {
                self.notify.notify_waiters();
            }
            return Ok(());
        }
        match self.options.max_attempts {
            // Either stale, or this was the last allowed attempt.
            Some(limit) => {
                self.dead_letter_delivery(seq, token, &max_attempts_reason(limit))
                    .await
            }
            None => Err(QueueError::StaleReceipt { backend: BACKEND }),
        }
    }

    async fn extend(&self, receipt: &Receipt, by: Duration) -> Result<()> {
        let (seq, token) = decode_receipt(BACKEND, receipt)?;
        let by = check_delay(BACKEND, by)?;
        let extended = sqlx::query(concat!(
            "UPDATE flextide_queue_messages SET visible_at = ",
            now_ms!(),
            " + ? WHERE seq = ? AND queue = ? AND token = ?"
        ))
        .bind(by)
        .bind(seq)
        .bind(&*self.name)
        .bind(token)
        .execute(&self.pool)
        .await
        .map_err(map_err)?
        .rows_affected();
        // sqlx asks for CLIENT_FOUND_ROWS: matched rows count even when the
        // deadline did not change.
        if extended == 1 {
            Ok(())
        } else {
            Err(QueueError::StaleReceipt { backend: BACKEND })
        }
    }

    async fn dead_letter(&self, receipt: &Receipt, reason: &str) -> Result<()> {
        let (seq, token) = decode_receipt(BACKEND, receipt)?;
        self.dead_letter_delivery(seq, token, reason).await
    }

    async fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>> {
        self.sweep_exhausted().await?;
        if limit == 0 {
            return Ok(Vec::new());
        }
        let rows = sqlx::query(concat!(
            "SELECT ",
            message_columns!(),
            ", attempts, reason, dead_at AS dead_lettered_at FROM flextide_queue_dead_letters WHERE queue = ? ORDER BY dseq LIMIT ?"
        ))
        .bind(&*self.name)
        .bind(limit as u64)
        .fetch_all(&self.pool)
        .await
        .map_err(map_err)?;
        rows.iter()
            .map(|row| dead_letter::<_, u8, u32>(BACKEND, row).map_err(map_err))
            .collect()
    }

    async fn replay_dead_letters(&self, which: Replay) -> Result<u64> {
        let mut moved = 0;
        match which {
            Replay::Ids(ids) => {
                for chunk in ids.chunks(MAX_BATCH) {
                    moved += self.replay_chunk(Some(chunk), 0).await?;
                }
            }
            Replay::Oldest(mut n) => {
                while n > 0 {
                    let done = self.replay_chunk(None, n.min(MAX_BATCH)).await?;
                    if done == 0 {
                        break;
                    }
                    moved += done;
                    n = n.saturating_sub(done as usize);
                }
            }
            Replay::All => loop {
                let done = self.replay_chunk(None, MAX_BATCH).await?;
                moved += done;
                if done < MAX_BATCH as u64 {
                    break;
                }
            },
        }
        if moved > 0 {
            self.notify.notify_waiters();
        }
        Ok(moved)
    }

    async fn purge_dead_letters(&self) -> Result<u64> {
        delete_in_chunks(
            &self.pool,
            "DELETE FROM flextide_queue_dead_letters WHERE queue = ? LIMIT 5000",
            &self.name,
        )
        .await
    }

    async fn peek(&self, limit: usize) -> Result<Vec<Message>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let rows = sqlx::query(concat!(
            "SELECT ",
            message_columns!(),
            ", seq FROM flextide_queue_messages FORCE INDEX (flextide_queue_messages_claim)
              WHERE queue = ? AND visible_at <= ",
            now_ms!(),
            " ORDER BY pri_inv, seq LIMIT ?"
        ))
        .bind(&*self.name)
        .bind(limit as u64)
        .fetch_all(&self.pool)
        .await
        .map_err(map_err)?;
        // A row that is no message is not shown: the next pop dead-letters it.
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            let columns = Columns::read::<_, u8>(row, true).map_err(map_err)?;
            if let Ok(message) = columns.message(BACKEND) {
                out.push(message);
            }
        }
        Ok(out)
    }

    async fn purge(&self) -> Result<u64> {
        // Leased rows go too: their lease can then never bring them back.
        delete_in_chunks(
            &self.pool,
            "DELETE FROM flextide_queue_messages WHERE queue = ? LIMIT 5000",
            &self.name,
        )
        .await
    }

    async fn stats(&self) -> Result<QueueStats> {
        self.sweep_exhausted().await?;
        let row = sqlx::query(concat!(
            "SELECT
                CAST(COALESCE(SUM(m.visible_at <= n.now), 0) AS SIGNED),
                CAST(COALESCE(SUM(m.leased = 1 AND m.visible_at > n.now), 0) AS SIGNED),
                CAST(COALESCE(SUM(m.leased = 0 AND m.visible_at > n.now), 0) AS SIGNED),
                MIN(CASE WHEN m.leased = 1 OR m.visible_at <= n.now THEN m.enqueued_at END),
                (SELECT COUNT(*) FROM flextide_queue_dead_letters d WHERE d.queue = ?),
                MAX(n.now)
             FROM (SELECT ",
            now_ms!(),
            " AS now) n
             LEFT JOIN flextide_queue_messages m FORCE INDEX (flextide_queue_messages_lease) ON m.queue = ?"
        ))
        .bind(&*self.name)
        .bind(&*self.name)
        .fetch_one(&self.pool)
        .await
        .map_err(map_err)?;
        let count = |i: usize| -> Result<u64> {
            Ok(row.try_get::<i64, _>(i).map_err(map_err)?.max(0) as u64)
        };
        let oldest: Option<i64> = row.try_get(3).map_err(map_err)?;
        let now: i64 = row.try_get(5).map_err(map_err)?;
        Ok(QueueStats::default()
            .with_depth(count(0)?)
            .with_in_flight(count(1)?)
            .with_delayed(count(2)?)
            .with_dead_lettered(count(4)?)
            .with_oldest_age(
                oldest.map(|at| Duration::from_millis(now.saturating_sub(at).max(0) as u64)),
            ))
    }

    fn backend_name(&self) -> &'static str {
        BACKEND
    }
}

/// Removes every message and dead letter of the queue `name` from the shared
/// tables (tests, the CLI). Returns how many rows were deleted.
pub async fn drop_queue(pool: &MySqlPool, name: &str) -> Result<u64> {
    validate_queue_name(name)?;
    let messages = delete_in_chunks(
        pool,
        "DELETE FROM flextide_queue_messages WHERE queue = ? LIMIT 5000",
        name,
    )
    .await?;
    let dead = delete_in_chunks(
        pool,
        "DELETE FROM flextide_queue_dead_letters WHERE queue = ? LIMIT 5000",
        name,
    )
    .await?;
    Ok(messages + dead)
}

/// Runs a `DELETE ... LIMIT` until it deletes nothing: short transactions
/// even on a deep queue.
async fn delete_in_chunks(pool: &MySqlPool, sql: &'static str, name: &str) -> Result<u64> {
    let mut total = 0;
    loop {
        let n = sqlx::query(sql)
            .bind(name)
            .execute(pool)
            .await
            .map_err(map_err)?
            .rows_affected();
        total += n;
        if n < 5000 {
            return Ok(total);
        }
    }
}

/// A short read-committed transaction: no gap locks, so claims never hold
/// up pushes, and rows a claim skips are not kept locked.
/// Runs `op` again, up to four more times after a short random pause, when
/// InnoDB chose it as a deadlock victim or its lock wait timed out. Each
/// call of `op` is one transaction (or one autocommit statement) that the
/// failure rolled back, so nothing of it took effect and a repeat is safe.
/// Concurrent pushes, claims and batch deletes do deadlock now and then on
/// InnoDB; callers should not see that.
async fn retry_lock_conflicts<T, F, Fut>(mut op: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    let mut attempt = 1u64;
    loop {
        match op().await {
            Err(e) if attempt < 5 && is_lock_conflict(&e) => {
                // Random pause (std's per-instance hasher keys are random).
                use std::hash::{BuildHasher, Hasher};
                let noise = std::collections::hash_map::RandomState::new()
                    .build_hasher()
                    .finish();
                tokio::time::sleep(Duration::from_millis(1 + noise % (5 * attempt))).await;
                attempt += 1;
            }
            other => return other,
        }
    }
}

async fn begin(pool: &MySqlPool) -> Result<Transaction<'static, MySql>> {
    pool.begin_with("SET TRANSACTION ISOLATION LEVEL READ COMMITTED; START TRANSACTION")
        .await
        .map_err(map_err)
}

/// One multi-row INSERT of already validated rows.
async fn insert_rows(conn: &mut MySqlConnection, queue: &str, rows: &[NewRow]) -> Result<()> {
    let mut sql = String::with_capacity(INSERT_PREFIX.len() + rows.len() * (INSERT_ROW.len() + 2));
    sql.push_str(INSERT_PREFIX);
    for i in 0..rows.len() {
        if i > 0 {
            sql.push_str(", ");
        }
        sql.push_str(INSERT_ROW);
    }
    let mut query = sqlx::query(AssertSqlSafe(sql));
    for row in rows {
        query = query
            .bind(queue)
            .bind(row.id.as_str())
            .bind(row.payload.as_slice())
            .bind(row.headers.as_str())
            .bind(row.priority)
            .bind(row.ordering_key.as_deref())
            .bind(row.delay_ms);
    }
    query.execute(conn).await.map_err(map_err)?;
    Ok(())
}

/// Copies rows (locked by the caller) to the dead letters and deletes them.
async fn move_to_dead_letters(
    conn: &mut MySqlConnection,
    seqs: &[i64],
    reason: &str,
) -> Result<()> {
    let list = placeholders(seqs.len());
    let insert = format!(
        concat!(
            "INSERT INTO flextide_queue_dead_letters
                (queue, id, payload, headers, priority, ordering_key, enqueued_at, attempts, reason, dead_at)
             SELECT queue, id, payload, headers, priority, ordering_key, enqueued_at, attempts, ?, ",
            now_ms!(),
            " FROM flextide_queue_messages WHERE seq IN ({}) ORDER BY seq"
        ),
        list
    );
    let mut query = sqlx::query(AssertSqlSafe(insert)).bind(reason);
    for seq in seqs {
        query = query.bind(*seq);
    }
    query.execute(&mut *conn).await.map_err(map_err)?;
    let delete = format!("DELETE FROM flextide_queue_messages WHERE seq IN ({list})");
    let mut query = sqlx::query(AssertSqlSafe(delete));
    for seq in seqs {
        query = query.bind(*seq);
    }
    query.execute(&mut *conn).await.map_err(map_err)?;
    Ok(())
}

/// `?, ?, ?` with `n` placeholders (`n` ≥ 1).
fn placeholders(n: usize) -> String {
    let mut s = String::with_capacity(n * 3);
    for i in 0..n {
        if i > 0 {
            s.push_str(", ");
        }
        s.push('?');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholder_lists() {
        assert_eq!(placeholders(1), "?");
        assert_eq!(placeholders(3), "?, ?, ?");
    }

    #[test]
    fn names_are_checked_before_anything_else() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let pool = MySqlPoolOptions::new()
                .connect_lazy("mysql://u:secret@127.0.0.1:1/db")
                .unwrap();
            assert!(matches!(
                MySqlQueue::from_pool(pool.clone(), "bad name", QueueOptions::default()),
                Err(QueueError::InvalidQueueName { .. })
            ));
            let q = MySqlQueue::from_pool(pool, "ok", QueueOptions::default()).unwrap();
            assert!(!format!("{q:?}").contains("secret"));
            let big = Message::new(vec![0u8; DEFAULT_MAX_PAYLOAD_BYTES + 1]);
            assert!(matches!(
                q.push(big).await,
                Err(QueueError::PayloadTooLarge { .. })
            ));
            assert!(matches!(
                q.push(Message::new("x").with_dedup_id("d")).await,
                Err(QueueError::Unsupported { .. })
            ));
        });
    }
}
