//! Looking at a queue without taking from it (peek, stats), and emptying it (purge).

use std::time::Duration;

use flextide_queue_core::{Message, QueueStats};
use flextide_queue_core::{
    Result,
    backend::{self},
};
use flextide_queue_sql::decode::Columns;
use sqlx::Row;

use crate::{BACKEND, SqliteQueue, error};

pub(crate) async fn peek(q: &SqliteQueue, limit: usize) -> Result<Vec<Message>> {
    let now = backend::now_millis();
    q.sweep(now).await?;
    let rows = sqlx::query(
        "SELECT seq, id, payload, headers, priority, ordering_key, enqueued_at, dedup_id FROM flextide_queue_messages \
         WHERE queue = ?1 AND visible_at <= ?2 AND purged = 0 AND (token IS NULL OR attempts < ?3) \
         ORDER BY priority DESC, seq LIMIT ?4",
    )
    .bind(q.inner.name.as_str())
    .bind(now)
    .bind(q.max_attempts())
    .bind(i64::try_from(limit).unwrap_or(i64::MAX))
    .fetch_all(&q.inner.pool)
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

pub(crate) async fn purge(q: &SqliteQueue) -> Result<u64> {
    let now = backend::now_millis();
    q.sweep(now).await?;
    let mut tx = q
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
    .bind(q.inner.name.as_str())
    .bind(now)
    .execute(&mut *tx)
    .await
    .map_err(error::map)?
    .rows_affected();
    sqlx::query(
        "UPDATE flextide_queue_messages SET purged = 1 WHERE queue = ?1 AND token IS NOT NULL",
    )
    .bind(q.inner.name.as_str())
    .execute(&mut *tx)
    .await
    .map_err(error::map)?;
    tx.commit().await.map_err(error::map)?;
    Ok(removed)
}

pub(crate) async fn stats(q: &SqliteQueue) -> Result<QueueStats> {
    let now = backend::now_millis();
    q.sweep(now).await?;
    let row = sqlx::query(
        "SELECT \
           COALESCE(SUM(visible_at <= ?2 AND purged = 0), 0) AS depth, \
           COALESCE(SUM(token IS NOT NULL AND visible_at > ?2), 0) AS in_flight, \
           COALESCE(SUM(token IS NULL AND visible_at > ?2), 0) AS delayed, \
           MIN(CASE WHEN token IS NOT NULL OR visible_at <= ?2 THEN enqueued_at END) AS oldest, \
           (SELECT COUNT(*) FROM flextide_queue_dead_letters WHERE queue = ?1) AS dead \
         FROM flextide_queue_messages WHERE queue = ?1",
    )
    .bind(q.inner.name.as_str())
    .bind(now)
    .fetch_one(&q.inner.pool)
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
        .with_oldest_age(
            oldest.map(|at| {
                Duration::from_millis(u64::try_from(now.saturating_sub(at)).unwrap_or(0))
            }),
        ))
}
