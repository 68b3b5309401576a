//! Settling a delivery by its receipt: delete, nack, extend, dead-letter.

use std::time::Duration;

use flextide_queue_core::{QueueError, Receipt, Result};
use flextide_queue_sql::{DeleteBatch, MAX_DELAY, check_delay, millis};
use sqlx::{AssertSqlSafe, Row};

use crate::{BACKEND, PostgresQueue, error::map_err};

pub(crate) async fn delete(q: &PostgresQueue, receipt: &Receipt) -> Result<()> {
    let (seq, token) = flextide_queue_sql::decode_receipt(BACKEND, receipt)?;
    let done = sqlx::query(AssertSqlSafe(q.sql().delete.clone()))
        .bind(seq)
        .bind(token)
        .bind(&*q.name)
        .execute(q.pool())
        .await
        .map_err(map_err)?;
    if done.rows_affected() == 0 {
        Err(stale())
    } else {
        Ok(())
    }
}

pub(crate) async fn delete_batch(q: &PostgresQueue, receipts: &[Receipt]) -> Result<()> {
    let mut batch = DeleteBatch::new(BACKEND, receipts);
    let wanted = batch.wanted().to_vec();
    if !wanted.is_empty() {
        let (seqs, tokens) = DeleteBatch::columns(&wanted);
        let deleted: Vec<(i64, String)> =
            sqlx::query_as(AssertSqlSafe(q.sql().delete_batch.clone()))
                .bind(seqs)
                .bind(tokens)
                .bind(&*q.name)
                .fetch_all(q.pool())
                .await
                .map_err(map_err)?;
        batch.settled(&wanted, &deleted);
    }
    batch.finish()
}

pub(crate) async fn nack(q: &PostgresQueue, receipt: &Receipt, delay: Duration) -> Result<()> {
    let (seq, token) = flextide_queue_sql::decode_receipt(BACKEND, receipt)?;
    let delay_ms = check_delay(BACKEND, delay)?;
    let row = sqlx::query(AssertSqlSafe(q.sql().nack.clone()))
        .bind(seq)
        .bind(token)
        .bind(&*q.name)
        .bind(q.max_attempts)
        .bind(&q.exhausted_reason)
        .bind(delay_ms)
        .bind(q.channel())
        .fetch_one(q.pool())
        .await
        .map_err(map_err)?;
    let settled: i64 = row.try_get("settled").map_err(map_err)?;
    if settled == 0 { Err(stale()) } else { Ok(()) }
}

pub(crate) async fn extend(q: &PostgresQueue, receipt: &Receipt, by: Duration) -> Result<()> {
    let (seq, token) = flextide_queue_sql::decode_receipt(BACKEND, receipt)?;
    let done = sqlx::query(AssertSqlSafe(q.sql().extend.clone()))
        .bind(seq)
        .bind(token)
        .bind(&*q.name)
        .bind(millis(by.min(MAX_DELAY)))
        .execute(q.pool())
        .await
        .map_err(map_err)?;
    if done.rows_affected() == 0 {
        Err(stale())
    } else {
        Ok(())
    }
}

pub(crate) async fn dead_letter(q: &PostgresQueue, receipt: &Receipt, reason: &str) -> Result<()> {
    let (seq, token) = flextide_queue_sql::decode_receipt(BACKEND, receipt)?;
    let n: i64 = sqlx::query_scalar(AssertSqlSafe(q.sql().dead_letter.clone()))
        .bind(seq)
        .bind(token)
        .bind(&*q.name)
        .bind(reason)
        .fetch_one(q.pool())
        .await
        .map_err(map_err)?;
    if n == 0 { Err(stale()) } else { Ok(()) }
}

fn stale() -> QueueError {
    flextide_queue_sql::stale(BACKEND)
}
