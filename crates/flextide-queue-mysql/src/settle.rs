//! Settling a delivery by its receipt: delete (one or a batch), nack, extend, dead-letter.

use std::time::Duration;

use flextide_queue_core::{QueueError, Receipt, Result, backend::max_attempts_reason};
use flextide_queue_sql::{DeleteBatch, Wanted, check_delay, decode_receipt, detach};
use sqlx::AssertSqlSafe;

use crate::{
    BACKEND, MySqlQueue,
    error::map_err,
    queue::MAX_BATCH,
    sql::{delete_seqs_sql, lock_for_delete_sql},
    tx::{begin, retry_lock_conflicts},
};

pub(crate) async fn delete(q: &MySqlQueue, receipt: &Receipt) -> Result<()> {
    let (seq, token) = decode_receipt(BACKEND, receipt)?;
    let deleted = sqlx::query(
        "DELETE FROM flextide_queue_messages WHERE seq = ? AND queue = ? AND token = ?",
    )
    .bind(seq)
    .bind(&*q.name)
    .bind(token)
    .execute(&q.pool)
    .await
    .map_err(map_err)?
    .rows_affected();
    if deleted == 1 {
        Ok(())
    } else {
        Err(QueueError::StaleReceipt { backend: BACKEND })
    }
}

pub(crate) async fn delete_batch(q: &MySqlQueue, receipts: &[Receipt]) -> Result<()> {
    let mut batch = DeleteBatch::new(BACKEND, receipts);
    let wanted = batch.wanted().to_vec();
    for chunk in wanted.chunks(MAX_BATCH) {
        match retry_lock_conflicts(|| q.delete_chunk(chunk)).await {
            Ok(deleted) => batch.settled(chunk, &deleted),
            Err(error) => batch.failed(chunk, error),
        }
    }
    batch.finish()
}

pub(crate) async fn nack(q: &MySqlQueue, receipt: &Receipt, delay: Duration) -> Result<()> {
    let (seq, token) = decode_receipt(BACKEND, receipt)?;
    let delay = check_delay(BACKEND, delay)?;
    let limit = q.options.max_attempts.map_or(i64::MAX, i64::from);
    let released = sqlx::query(concat!(
        "UPDATE flextide_queue_messages SET leased = 0, token = NULL, visible_at = ",
        now_ms!(),
        " + ? WHERE seq = ? AND queue = ? AND token = ? AND attempts < ?"
    ))
    .bind(delay)
    .bind(seq)
    .bind(&*q.name)
    .bind(token)
    .bind(limit)
    .execute(&q.pool)
    .await
    .map_err(map_err)?
    .rows_affected();
    if released == 1 {
        if delay == 0 {
            q.notify.notify_waiters();
        }
        return Ok(());
    }
    match q.options.max_attempts {
        // Either stale, or this was the last allowed attempt.
        Some(limit) => {
            q.dead_letter_delivery(seq, token, &max_attempts_reason(limit))
                .await
        }
        None => Err(QueueError::StaleReceipt { backend: BACKEND }),
    }
}

pub(crate) async fn extend(q: &MySqlQueue, receipt: &Receipt, by: Duration) -> Result<()> {
    let (seq, token) = decode_receipt(BACKEND, receipt)?;
    let by = check_delay(BACKEND, by)?;
    let extended = sqlx::query(concat!(
        "UPDATE flextide_queue_messages SET visible_at = ",
        now_ms!(),
        " + ? WHERE seq = ? AND queue = ? AND token = ?"
    ))
    .bind(by)
    .bind(seq)
    .bind(&*q.name)
    .bind(token)
    .execute(&q.pool)
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

pub(crate) async fn dead_letter(q: &MySqlQueue, receipt: &Receipt, reason: &str) -> Result<()> {
    let (seq, token) = decode_receipt(BACKEND, receipt)?;
    q.dead_letter_delivery(seq, token, reason).await
}

impl MySqlQueue {
    /// Moves the delivery `seq`/`token` to the dead letters, or fails with
    /// `StaleReceipt` when the token no longer holds it.
    pub(crate) async fn dead_letter_delivery(
        &self,
        seq: i64,
        token: &str,
        reason: &str,
    ) -> Result<()> {
        let (q, token, reason) = (self.clone(), token.to_owned(), reason.to_owned());
        detach(BACKEND, async move {
            q.dead_letter_delivery_tx(seq, &token, &reason).await
        })
        .await
    }

    pub(crate) async fn dead_letter_delivery_tx(
        &self,
        seq: i64,
        token: &str,
        reason: &str,
    ) -> Result<()> {
        let mut tx = begin(&self.pool).await?;
        let copied = sqlx::query(concat!(
            "INSERT INTO flextide_queue_dead_letters
                (queue, id, payload, headers, priority, ordering_key, enqueued_at, dedup_id, attempts, reason, dead_at)
             SELECT queue, id, payload, headers, priority, ordering_key, enqueued_at, dedup_id, attempts, ?, ",
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
    pub(crate) async fn delete_chunk(&self, keys: &[Wanted]) -> Result<Vec<(i64, String)>> {
        let (q, keys) = (self.clone(), keys.to_vec());
        detach(BACKEND, async move { q.delete_chunk_tx(&keys).await }).await
    }

    pub(crate) async fn delete_chunk_tx(&self, keys: &[Wanted]) -> Result<Vec<(i64, String)>> {
        let mut tx = begin(&self.pool).await?;
        let sql = lock_for_delete_sql(keys.len());
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
            let mut query = sqlx::query(AssertSqlSafe(delete_seqs_sql(held.len())));
            for (seq, _) in &held {
                query = query.bind(*seq);
            }
            query.execute(&mut *tx).await.map_err(map_err)?;
        }
        tx.commit().await.map_err(map_err)?;
        Ok(held)
    }
}
