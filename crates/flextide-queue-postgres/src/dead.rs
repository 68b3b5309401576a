//! The dead letters: the sweep of exhausted leases, listing, replay,
//! deleting chosen ones, purge.

use flextide_queue_core::{DeadLetter, MessageId, Replay, Result};
use flextide_queue_sql::decode::dead_letter;
use sqlx::{AssertSqlSafe, Postgres, QueryBuilder, Row};

use crate::{BACKEND, PostgresQueue, error::map_err};

pub(crate) async fn dead_letters(q: &PostgresQueue, limit: usize) -> Result<Vec<DeadLetter>> {
    q.sweep().await?;
    let rows = sqlx::query(AssertSqlSafe(q.sql().dead_letters.clone()))
        .bind(&*q.name)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(q.pool())
        .await
        .map_err(map_err)?;
    rows.iter()
        .map(|row| dead_letter::<_, i16, i32>(BACKEND, row).map_err(map_err))
        .collect()
}

pub(crate) async fn replay_dead_letters(q: &PostgresQueue, which: Replay) -> Result<u64> {
    let (ids, limit): (Option<Vec<String>>, Option<i64>) = match which {
        Replay::Ids(ids) if ids.is_empty() => return Ok(0),
        Replay::Ids(ids) => (
            Some(ids.into_iter().map(|id| id.as_str().to_owned()).collect()),
            None,
        ),
        Replay::Oldest(0) => return Ok(0),
        Replay::Oldest(n) => (None, Some(i64::try_from(n).unwrap_or(i64::MAX))),
        Replay::All => (None, None),
    };
    let row = sqlx::query(AssertSqlSafe(q.sql().replay.clone()))
        .bind(&*q.name)
        .bind(ids)
        .bind(limit)
        .bind(q.channel())
        .fetch_one(q.pool())
        .await
        .map_err(map_err)?;
    let moved: i64 = row.try_get("moved").map_err(map_err)?;
    Ok(moved as u64)
}

pub(crate) async fn delete_dead_letters(q: &PostgresQueue, ids: &[MessageId]) -> Result<u64> {
    let pool = q.pool();
    flextide_queue_sql::delete_dead_letters(
        &q.sql().dead_letter_table,
        &q.name,
        ids,
        |mut sql: QueryBuilder<Postgres>| async move {
            let done = sql.build().execute(pool).await.map_err(map_err)?;
            Ok(done.rows_affected())
        },
    )
    .await
}

pub(crate) async fn purge_dead_letters(q: &PostgresQueue) -> Result<u64> {
    let done = sqlx::query(AssertSqlSafe(q.sql().purge_dead_letters.clone()))
        .bind(&*q.name)
        .execute(q.pool())
        .await
        .map_err(map_err)?;
    Ok(done.rows_affected())
}

impl PostgresQueue {
    /// Moves expired, exhausted leases to the dead letters now.
    pub(crate) async fn sweep(&self) -> Result<u64> {
        let n: i64 = sqlx::query_scalar(AssertSqlSafe(self.sql().sweep.clone()))
            .bind(&*self.name)
            .bind(self.max_attempts)
            .bind(&self.exhausted_reason)
            .fetch_one(self.pool())
            .await
            .map_err(map_err)?;
        Ok(n as u64)
    }
}
