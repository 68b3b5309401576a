//! Settling a delivery by its receipt: delete (one or a batch), nack, extend, dead-letter.

use std::time::Duration;

use flextide_queue_core::{QueueError, Receipt};
use flextide_queue_core::{
    Result,
    backend::{self},
};
use flextide_queue_sql::{DeleteBatch, millis};

use crate::{BACKEND, SqliteQueue, error, sql};

pub(crate) async fn delete(q: &SqliteQueue, receipt: &Receipt) -> Result<()> {
    let (seq, token) = q.decode(receipt)?;
    let deleted = sqlx::query(
        "DELETE FROM flextide_queue_messages WHERE seq = ? AND queue = ? AND token = ?",
    )
    .bind(seq)
    .bind(q.inner.name.as_str())
    .bind(token)
    .execute(&q.inner.pool)
    .await
    .map_err(error::map)?
    .rows_affected();
    if deleted == 0 {
        return Err(SqliteQueue::stale());
    }
    // The next message of its ordering key may be free now.
    q.inner.wake.notify_waiters();
    Ok(())
}

pub(crate) async fn delete_batch(q: &SqliteQueue, receipts: &[Receipt]) -> Result<()> {
    let mut batch = DeleteBatch::new(BACKEND, receipts);
    let wanted = batch.wanted().to_vec();
    for chunk in wanted.chunks(DELETE_CHUNK) {
        let rows = chunk.iter().map(|w| (w.seq, w.token.as_str()));
        match sql::delete_batch(&q.inner.name, rows)
            .build_query_as::<(i64, String)>()
            .fetch_all(&q.inner.pool)
            .await
        {
            Ok(deleted) => batch.settled(chunk, &deleted),
            Err(e) => batch.failed(chunk, error::map(e)),
        }
    }
    q.inner.wake.notify_waiters();
    batch.finish()
}

pub(crate) async fn nack(q: &SqliteQueue, receipt: &Receipt, delay: Duration) -> Result<()> {
    let (seq, token) = q.decode(receipt)?;
    let visible_at = backend::now_millis().saturating_add(millis(delay));
    // The common case is one statement: give the message back unless it
    // is out of attempts (or purged), which the transaction below handles.
    let updated = sqlx::query(
        "UPDATE flextide_queue_messages SET token = NULL, visible_at = ?1 \
         WHERE seq = ?2 AND queue = ?3 AND token = ?4 AND purged = 0 AND attempts < ?5",
    )
    .bind(visible_at)
    .bind(seq)
    .bind(q.inner.name.as_str())
    .bind(token)
    .bind(q.max_attempts())
    .execute(&q.inner.pool)
    .await
    .map_err(error::map)?
    .rows_affected();
    if updated == 0
        && !q
            .move_to_dead_letters(seq, token, &q.max_attempts_reason(), true)
            .await?
    {
        return Err(SqliteQueue::stale());
    }
    q.inner.wake.notify_waiters();
    Ok(())
}

pub(crate) async fn extend(q: &SqliteQueue, receipt: &Receipt, by: Duration) -> Result<()> {
    let (seq, token) = q.decode(receipt)?;
    let visible_at = backend::now_millis().saturating_add(millis(by));
    let updated =
        sqlx::query("UPDATE flextide_queue_messages SET visible_at = ? WHERE seq = ? AND queue = ? AND token = ?")
            .bind(visible_at)
            .bind(seq)
            .bind(q.inner.name.as_str())
            .bind(token)
            .execute(&q.inner.pool)
            .await
            .map_err(error::map)?
            .rows_affected();
    if updated == 0 {
        Err(SqliteQueue::stale())
    } else {
        Ok(())
    }
}

pub(crate) async fn dead_letter(q: &SqliteQueue, receipt: &Receipt, reason: &str) -> Result<()> {
    let (seq, token) = q.decode(receipt)?;
    if !q.move_to_dead_letters(seq, token, reason, false).await? {
        return Err(SqliteQueue::stale());
    }
    q.inner.wake.notify_waiters();
    Ok(())
}

impl SqliteQueue {
    pub(crate) fn decode<'r>(&self, receipt: &'r Receipt) -> Result<(i64, &'r str)> {
        flextide_queue_sql::decode_receipt(BACKEND, receipt)
    }

    pub(crate) fn stale() -> QueueError {
        flextide_queue_sql::stale(BACKEND)
    }

    /// Moves the message of a live receipt to the dead letters in one
    /// transaction; `only_exhausted` limits it to messages past max attempts
    /// (dropping purged ones instead). Returns whether the receipt matched.
    pub(crate) async fn move_to_dead_letters(
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
             (queue, id, payload, headers, priority, ordering_key, enqueued_at, dedup_id, attempts, reason, dead_lettered_at) \
             SELECT queue, id, payload, headers, priority, ordering_key, enqueued_at, dedup_id, attempts, ?4, ?5 \
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
}

/// Receipts per batch DELETE (2 variables each).
pub(crate) const DELETE_CHUNK: usize = 2000;
