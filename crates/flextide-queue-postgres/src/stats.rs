//! Looking at a queue without taking from it: peek and stats; and purge.

use std::time::Duration;

use flextide_queue_core::{Message, QueueStats, Result};
use flextide_queue_sql::decode::Columns;
use sqlx::{AssertSqlSafe, Row};

use crate::{BACKEND, PostgresQueue, error::map_err};

pub(crate) async fn peek(q: &PostgresQueue, limit: usize) -> Result<Vec<Message>> {
    // Exhausted expired leases would be dead-lettered by the next pop: do not show them.
    q.sweep().await?;
    let rows = sqlx::query(AssertSqlSafe(q.sql().peek.clone()))
        .bind(&*q.name)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(q.pool())
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

pub(crate) async fn purge(q: &PostgresQueue) -> Result<u64> {
    let n: i64 = sqlx::query_scalar(AssertSqlSafe(q.sql().purge.clone()))
        .bind(&*q.name)
        .fetch_one(q.pool())
        .await
        .map_err(map_err)?;
    Ok(n as u64)
}

pub(crate) async fn stats(q: &PostgresQueue) -> Result<QueueStats> {
    q.sweep().await?;
    let row = sqlx::query(AssertSqlSafe(q.sql().stats.clone()))
        .bind(&*q.name)
        .fetch_one(q.pool())
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
