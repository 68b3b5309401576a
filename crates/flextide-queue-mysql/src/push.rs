//! Enqueueing: checks a message, turns it into a row, inserts rows in multi-row INSERTs (alone, in chunks, or inside your transaction).

use flextide_queue_core::{
    BatchFailure, Message, MessageId, QueueError, Result, backend::check_payload,
};
use flextide_queue_sql::{check_delay, copy_error, headers_text};
use sqlx::{AssertSqlSafe, MySqlConnection, Transaction, mysql::MySql};

use crate::{
    BACKEND, MySqlQueue,
    error::map_err,
    queue::MAX_BATCH,
    sql::{INSERT_PREFIX, INSERT_ROW},
    tx::retry_lock_conflicts,
};

pub(crate) async fn push(q: &MySqlQueue, message: Message) -> Result<MessageId> {
    let row = q.prepare(message)?;
    let (pool, name, rows) = (&q.pool, &*q.name, std::slice::from_ref(&row));
    retry_lock_conflicts(|| async move {
        let mut conn = pool.acquire().await.map_err(map_err)?;
        insert_rows(&mut conn, name, rows).await
    })
    .await?;
    q.notify.notify_waiters();
    Ok(row.id)
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

    /// Checks a message against the capabilities and turns it into a row.
    pub(crate) fn prepare(&self, message: Message) -> Result<NewRow> {
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
}

/// One multi-row INSERT of already validated rows.
pub(crate) async fn insert_rows(
    conn: &mut MySqlConnection,
    queue: &str,
    rows: &[NewRow],
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
