//! Enqueueing: checks a message, turns it into a row, inserts rows in multi-row INSERTs (alone, in chunks, or inside your transaction).

use std::{borrow::Borrow, sync::Arc};

use flextide_queue_core::{
    BatchFailure, Message, MessageId, Pushed, QueueError, Result, backend::check_payload,
};
use flextide_queue_sql::{
    check_delay, copy_error,
    dedup::{
        ExpiredSweep, SWEEP_LIMIT, UniqueBatch, check_dedup_id, claim_outcome, dedup_window_ms,
    },
    detach, headers_text,
};
use sqlx::{AssertSqlSafe, MySqlConnection, Transaction, mysql::MySql};

use crate::{
    BACKEND, MySqlQueue,
    error::map_err,
    queue::MAX_BATCH,
    sql::{
        DEDUP_CLAIM_PREFIX, DEDUP_CLAIM_ROW, DEDUP_CLAIM_SUFFIX, DEDUP_EXPIRED_SQL, INSERT_PREFIX,
        INSERT_ROW, dedup_claimed_sql, dedup_delete_sql,
    },
    tx::{begin, retry_lock_conflicts},
};

pub(crate) async fn push_unique(q: &MySqlQueue, message: Message) -> Result<Pushed> {
    let row = q.prepare(message)?;
    if row.dedup_id.is_some() {
        let mut pushed = q.push_unique_rows(vec![row]).await?;
        return Ok(pushed.pop().expect("one outcome per message"));
    }
    let (pool, name, rows) = (&q.pool, &*q.name, std::slice::from_ref(&row));
    retry_lock_conflicts(|| async move {
        let mut conn = pool.acquire().await.map_err(map_err)?;
        insert_rows(&mut conn, name, rows).await
    })
    .await?;
    q.notify.notify_waiters();
    Ok(Pushed::Enqueued(row.id))
}

pub(crate) async fn push_batch(q: &MySqlQueue, messages: Vec<Message>) -> Result<Vec<MessageId>> {
    let mut failures = Vec::new();
    let mut rows = Vec::with_capacity(messages.len());
    for (index, message) in messages.into_iter().enumerate() {
        match q.prepare(message) {
            Ok(row) => rows.push((index, row)),
            Err(error) => failures.push(BatchFailure { index, error }),
        }
    }
    if rows.iter().any(|(_, row)| row.dedup_id.is_some()) {
        // One transaction for the whole batch: its dedup ids are claimed
        // with the inserts.
        let (indexes, rows): (Vec<usize>, Vec<NewRow>) = rows.into_iter().unzip();
        let ids = match q.push_unique_rows(rows).await {
            Ok(pushed) => pushed.into_iter().map(Pushed::into_id).collect(),
            Err(error) => {
                failures.extend(indexes.iter().map(|&index| BatchFailure {
                    index,
                    error: copy_error(BACKEND, &error),
                }));
                Vec::new()
            }
        };
        failures.sort_by_key(|f| f.index);
        return flextide_queue_core::backend::batch_result(BACKEND, ids, failures);
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
        let (pool, name, rows) = (&q.pool, &*q.name, batch.as_slice());
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
        q.notify.notify_waiters();
    }
    flextide_queue_core::backend::batch_result(BACKEND, ids, failures)
}

impl MySqlQueue {
    /// Enqueues a message inside your transaction: it becomes visible when
    /// you commit and vanishes if you roll back, so a workflow step and the
    /// task it schedules commit together. Waiting pops in this process see it
    /// at their next poll (at most 500 ms); call
    /// [`MySqlQueue::notify_pushed`] after committing to wake them at once.
    /// A message with a dedup id claims it in your transaction (see
    /// [`MySqlQueue::push_unique_in_tx`]); a duplicate is not inserted and
    /// the first message's id is returned.
    pub async fn push_in_tx(
        &self,
        tx: &mut Transaction<'_, MySql>,
        message: Message,
    ) -> Result<MessageId> {
        self.push_unique_in_tx(tx, message)
            .await
            .map(Pushed::into_id)
    }

    /// [`MySqlQueue::push_in_tx`], saying whether the message was enqueued
    /// or dropped as a duplicate (see `QueueProvider::push_unique`). The
    /// dedup id is claimed in your transaction: a rollback forgets it, and a
    /// concurrent push of the same id waits for your commit (InnoDB row
    /// lock). A deadlock or lock wait timeout rolls your transaction back.
    pub async fn push_unique_in_tx(
        &self,
        tx: &mut Transaction<'_, MySql>,
        message: Message,
    ) -> Result<Pushed> {
        let row = self.prepare(message)?;
        if row.dedup_id.is_some() {
            let window = dedup_window_ms(&self.options);
            let mut pushed =
                insert_unique(&mut *tx, &self.name, std::slice::from_ref(&row), window).await?;
            return Ok(pushed.pop().expect("one outcome per message"));
        }
        insert_rows(&mut *tx, &self.name, std::slice::from_ref(&row)).await?;
        Ok(Pushed::Enqueued(row.id))
    }

    /// Checked rows, some with dedup ids, in one transaction of their own
    /// (run to the end even if the caller is cut short: contract clause 13;
    /// again after a deadlock), then a sweep of expired dedup rows when due.
    async fn push_unique_rows(&self, rows: Vec<NewRow>) -> Result<Vec<Pushed>> {
        let rows = Arc::new(rows);
        let window = dedup_window_ms(&self.options);
        let pushed = retry_lock_conflicts(|| {
            let (q, rows) = (self.clone(), Arc::clone(&rows));
            detach(BACKEND, async move {
                let mut tx = begin(&q.pool).await?;
                let pushed = insert_unique(&mut tx, &q.name, &rows, window).await?;
                tx.commit().await.map_err(map_err)?;
                Ok(pushed)
            })
        })
        .await?;
        if self.dedup_sweep.due() {
            self.sweep_dedup().await;
        }
        if pushed.iter().any(|p| !p.is_duplicate()) {
            self.notify.notify_waiters();
        }
        Ok(pushed)
    }

    /// Deletes up to `SWEEP_LIMIT` expired dedup rows (of any queue) that no
    /// other transaction holds; a failure only logs.
    async fn sweep_dedup(&self) {
        let q = self.clone();
        let swept = detach(BACKEND, async move {
            let mut tx = begin(&q.pool).await?;
            let keys: Vec<(String, Vec<u8>)> = sqlx::query_as(DEDUP_EXPIRED_SQL)
                .bind(SWEEP_LIMIT)
                .fetch_all(&mut *tx)
                .await
                .map_err(map_err)?;
            if !keys.is_empty() {
                let mut delete = sqlx::query(AssertSqlSafe(dedup_delete_sql(keys.len())));
                for (queue, key) in &keys {
                    delete = delete.bind(queue.as_str()).bind(key.as_slice());
                }
                delete.execute(&mut *tx).await.map_err(map_err)?;
            }
            tx.commit().await.map_err(map_err)?;
            Ok(keys.len() as u64)
        })
        .await;
        ExpiredSweep::report(BACKEND, swept);
    }

    /// Wakes the pops of this queue waiting in this process (after you
    /// committed a [`MySqlQueue::push_in_tx`]).
    pub fn notify_pushed(&self) {
        self.notify.notify_waiters();
    }

    /// Checks a message against the capabilities and turns it into a row.
    pub(crate) fn prepare(&self, message: Message) -> Result<NewRow> {
        check_payload(BACKEND, message.payload.len(), Some(self.max_payload))?;
        check_dedup_id(BACKEND, &message)?;
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
            dedup_id: message.dedup_id,
        })
    }
}

/// Payload bytes per multi-row INSERT before a batch is split further.
pub(crate) const PUSH_CHUNK_BYTES: usize = 8 * 1024 * 1024;

/// Longest message id and ordering key, in characters (the columns' size).
pub(crate) const MAX_KEY_CHARS: usize = 255;

/// A validated message, ready to bind.
pub(crate) struct NewRow {
    pub(crate) id: MessageId,
    pub(crate) payload: Vec<u8>,
    pub(crate) headers: String,
    pub(crate) priority: u8,
    pub(crate) ordering_key: Option<String>,
    pub(crate) delay_ms: i64,
    pub(crate) dedup_id: Option<String>,
}

/// One multi-row INSERT of already validated rows.
pub(crate) async fn insert_rows<R: Borrow<NewRow>>(
    conn: &mut MySqlConnection,
    queue: &str,
    rows: &[R],
) -> Result<()> {
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
        let row = row.borrow();
        query = query
            .bind(queue)
            .bind(row.id.as_str())
            .bind(row.payload.as_slice())
            .bind(row.headers.as_str())
            .bind(row.priority)
            .bind(row.ordering_key.as_deref())
            .bind(row.delay_ms)
            .bind(row.dedup_id.as_deref());
    }
    query.execute(conn).await.map_err(map_err)?;
    Ok(())
}

/// Dedup ids claimed per statement (4 bound variables each).
const CLAIM_CHUNK: usize = 1000;

/// Claims the dedup ids of `rows` (see `flextide_queue_sql::dedup`) and
/// inserts the rows that won and those without one, on `conn`, which must
/// be inside a transaction: the claimed rows stay locked until it ends.
pub(crate) async fn insert_unique(
    conn: &mut MySqlConnection,
    queue: &str,
    rows: &[NewRow],
    window_ms: i64,
) -> Result<Vec<Pushed>> {
    let mut batch = UniqueBatch::new(BACKEND, rows.iter().map(|r| r.dedup_id.as_deref()));
    let claims: Vec<(String, usize)> = batch
        .claims()
        .into_iter()
        .map(|(key, i)| (key.to_owned(), i))
        .collect();
    for chunk in claims.chunks(CLAIM_CHUNK) {
        let mut sql = String::from(DEDUP_CLAIM_PREFIX);
        sql.push_str(&vec![DEDUP_CLAIM_ROW; chunk.len()].join(", "));
        sql.push_str(DEDUP_CLAIM_SUFFIX);
        let mut claim = sqlx::query(AssertSqlSafe(sql));
        for (key, first) in chunk {
            claim = claim
                .bind(queue)
                .bind(key.as_bytes())
                .bind(rows[*first].id.as_str())
                .bind(window_ms);
        }
        claim.execute(&mut *conn).await.map_err(map_err)?;
        let mut read = sqlx::query_as::<_, (Vec<u8>, String, u64)>(AssertSqlSafe(
            dedup_claimed_sql(chunk.len()),
        ))
        .bind(queue);
        for (key, _) in chunk {
            read = read.bind(key.as_bytes());
        }
        for (key, message_id, duplicates) in read.fetch_all(&mut *conn).await.map_err(map_err)? {
            let key = String::from_utf8_lossy(&key);
            let duplicates = i64::try_from(duplicates).unwrap_or(i64::MAX);
            batch.claimed(&key, claim_outcome(message_id, duplicates));
        }
    }
    // Collected first: an iterator adapter held across an await would keep
    // the future from being Send for `detach`.
    let inserted: Vec<&NewRow> = (0..rows.len())
        .filter(|&i| batch.inserts(i))
        .map(|i| &rows[i])
        .collect();
    let mut chunk: Vec<&NewRow> = Vec::new();
    let mut chunk_bytes = 0;
    for (n, row) in inserted.iter().enumerate() {
        chunk_bytes += row.payload.len();
        chunk.push(row);
        let full = chunk.len() >= MAX_BATCH
            || inserted
                .get(n + 1)
                .is_none_or(|next| chunk_bytes + next.payload.len() > PUSH_CHUNK_BYTES);
        if full {
            insert_rows(&mut *conn, queue, &chunk).await?;
            chunk.clear();
            chunk_bytes = 0;
        }
    }
    rows.iter()
        .enumerate()
        .map(|(i, row)| batch.outcome(i, &row.id))
        .collect()
}
