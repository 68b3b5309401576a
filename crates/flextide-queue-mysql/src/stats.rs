//! Looking at a queue without taking from it (peek, stats), and emptying it (purge, drop_queue).

use std::time::Duration;

use flextide_queue_core::{Message, QueueStats, Result, validate_queue_name};
use flextide_queue_sql::decode::Columns;
use sqlx::{Row, mysql::MySqlPool};

use crate::{BACKEND, MySqlQueue, error::map_err};

pub(crate) async fn peek(q: &MySqlQueue, limit: usize) -> Result<Vec<Message>> {
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
    .bind(&*q.name)
    .bind(limit as u64)
    .fetch_all(&q.pool)
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

pub(crate) async fn purge(q: &MySqlQueue) -> Result<u64> {
    // Leased rows go too: their lease can then never bring them back.
    delete_in_chunks(
        &q.pool,
        "DELETE FROM flextide_queue_messages WHERE queue = ? LIMIT 5000",
        &q.name,
    )
    .await
}

pub(crate) async fn stats(q: &MySqlQueue) -> Result<QueueStats> {
    q.sweep_exhausted().await?;
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
    .bind(&*q.name)
    .bind(&*q.name)
    .fetch_one(&q.pool)
    .await
    .map_err(map_err)?;
    let count =
        |i: usize| -> Result<u64> { Ok(row.try_get::<i64, _>(i).map_err(map_err)?.max(0) as u64) };
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

/// Removes every message and dead letter of the queue `name` from the shared
/// tables, and the dedup ids it remembers (tests, the CLI). Returns how many
/// messages and dead letters were deleted.
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
    delete_in_chunks(
        pool,
        "DELETE FROM flextide_queue_dedup WHERE queue = ? LIMIT 5000",
        name,
    )
    .await?;
    Ok(messages + dead)
}

/// Runs a `DELETE ... LIMIT` until it deletes nothing: short transactions
/// even on a deep queue.
pub(crate) async fn delete_in_chunks(
    pool: &MySqlPool,
    sql: &'static str,
    name: &str,
) -> Result<u64> {
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
