//! The dead letters: the sweep of expired leases, listing, replay,
//! deleting chosen ones, purge.

use flextide_queue_core::{DeadLetter, Replay};
use flextide_queue_core::{
    MessageId, Result,
    backend::{self},
};
use flextide_queue_sql::decode::dead_letter;
use sqlx::{QueryBuilder, Sqlite, sqlite::SqliteConnection};

use crate::sql::SWEEP_CHECK_SQL;
use crate::{BACKEND, SqliteQueue, error};

pub(crate) async fn dead_letters(q: &SqliteQueue, limit: usize) -> Result<Vec<DeadLetter>> {
    q.sweep(backend::now_millis()).await?;
    let rows = sqlx::query(
        "SELECT id, payload, headers, priority, ordering_key, enqueued_at, dedup_id, attempts, reason, dead_lettered_at \
         FROM flextide_queue_dead_letters WHERE queue = ? ORDER BY dseq LIMIT ?",
    )
    .bind(q.inner.name.as_str())
    .bind(i64::try_from(limit).unwrap_or(i64::MAX))
    .fetch_all(&q.inner.pool)
    .await
    .map_err(error::map)?;
    rows.iter()
        .map(|row| dead_letter::<_, i64, i64>(BACKEND, row).map_err(error::map))
        .collect()
}

pub(crate) async fn replay_dead_letters(q: &SqliteQueue, which: Replay) -> Result<u64> {
    let mut tx = q
        .inner
        .pool
        .begin_with("BEGIN IMMEDIATE")
        .await
        .map_err(error::map)?;
    let moved = match &which {
        Replay::All => q.replay_selected(&mut tx, Selection::All).await?,
        Replay::Oldest(0) => 0,
        Replay::Oldest(n) => {
            q.replay_selected(
                &mut tx,
                Selection::Oldest(i64::try_from(*n).unwrap_or(i64::MAX)),
            )
            .await?
        }
        Replay::Ids(ids) => {
            let mut moved = 0;
            for chunk in ids.chunks(REPLAY_CHUNK) {
                moved += q.replay_selected(&mut tx, Selection::Ids(chunk)).await?;
            }
            moved
        }
    };
    tx.commit().await.map_err(error::map)?;
    if moved > 0 {
        q.inner.wake.notify_waiters();
    }
    Ok(moved)
}

pub(crate) async fn delete_dead_letters(q: &SqliteQueue, ids: &[MessageId]) -> Result<u64> {
    let pool = &q.inner.pool;
    flextide_queue_sql::delete_dead_letters(
        "flextide_queue_dead_letters",
        q.inner.name.as_str(),
        ids,
        |mut sql: QueryBuilder<Sqlite>| async move {
            let done = sql.build().execute(pool).await.map_err(error::map)?;
            Ok(done.rows_affected())
        },
    )
    .await
}

pub(crate) async fn purge_dead_letters(q: &SqliteQueue) -> Result<u64> {
    Ok(
        sqlx::query("DELETE FROM flextide_queue_dead_letters WHERE queue = ?")
            .bind(q.inner.name.as_str())
            .execute(&q.inner.pool)
            .await
            .map_err(error::map)?
            .rows_affected(),
    )
}

impl SqliteQueue {
    /// Moves expired leases past max attempts to the dead letters and drops
    /// expired leases of purged messages. A cheap read finds out whether
    /// there is anything to do, so the common case takes no write lock.
    pub(crate) async fn sweep(&self, now: i64) -> Result<()> {
        let needed: bool = sqlx::query_scalar(SWEEP_CHECK_SQL)
            .bind(self.inner.name.as_str())
            .bind(now)
            .bind(self.max_attempts())
            .fetch_one(&self.inner.pool)
            .await
            .map_err(error::map)?;
        if !needed {
            return Ok(());
        }
        let mut tx = self
            .inner
            .pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(error::map)?;
        sqlx::query(
            "INSERT INTO flextide_queue_dead_letters \
             (queue, id, payload, headers, priority, ordering_key, enqueued_at, dedup_id, attempts, reason, dead_lettered_at) \
             SELECT queue, id, payload, headers, priority, ordering_key, enqueued_at, dedup_id, attempts, ?4, ?2 \
             FROM flextide_queue_messages \
             WHERE queue = ?1 AND token IS NOT NULL AND visible_at <= ?2 AND purged = 0 AND attempts >= ?3 \
             ORDER BY seq",
        )
        .bind(self.inner.name.as_str())
        .bind(now)
        .bind(self.max_attempts())
        .bind(self.max_attempts_reason())
        .execute(&mut *tx)
        .await
        .map_err(error::map)?;
        sqlx::query(
            "DELETE FROM flextide_queue_messages \
             WHERE queue = ?1 AND token IS NOT NULL AND visible_at <= ?2 AND (purged = 1 OR attempts >= ?3)",
        )
        .bind(self.inner.name.as_str())
        .bind(now)
        .bind(self.max_attempts())
        .execute(&mut *tx)
        .await
        .map_err(error::map)?;
        tx.commit().await.map_err(error::map)?;
        Ok(())
    }

    pub(crate) async fn replay_selected(
        &self,
        tx: &mut SqliteConnection,
        selection: Selection<'_>,
    ) -> Result<u64> {
        let now = backend::now_millis();
        let mut insert = QueryBuilder::<Sqlite>::new(
            "INSERT INTO flextide_queue_messages \
             (queue, id, payload, headers, priority, ordering_key, enqueued_at, dedup_id, visible_at) \
             SELECT queue, id, payload, headers, priority, ordering_key, enqueued_at, dedup_id, ",
        );
        insert
            .push_bind(now)
            .push(" FROM flextide_queue_dead_letters WHERE ");
        selection.push(&mut insert, &self.inner.name);
        insert.push(" ORDER BY dseq");
        let moved = insert
            .build()
            .execute(&mut *tx)
            .await
            .map_err(error::map)?
            .rows_affected();
        let mut delete =
            QueryBuilder::<Sqlite>::new("DELETE FROM flextide_queue_dead_letters WHERE ");
        selection.push(&mut delete, &self.inner.name);
        delete.build().execute(&mut *tx).await.map_err(error::map)?;
        Ok(moved)
    }
}

/// Ids per replay statement.
pub(crate) const REPLAY_CHUNK: usize = 2000;

/// Which dead letters a replay statement takes.
#[derive(Clone, Copy)]
pub(crate) enum Selection<'a> {
    All,
    Oldest(i64),
    Ids(&'a [MessageId]),
}

impl Selection<'_> {
    fn push(self, q: &mut QueryBuilder<Sqlite>, queue: &str) {
        q.push("queue = ").push_bind(queue.to_owned());
        match self {
            Selection::All => {}
            Selection::Oldest(n) => {
                q.push(" AND dseq IN (SELECT dseq FROM flextide_queue_dead_letters WHERE queue = ")
                    .push_bind(queue.to_owned())
                    .push(" ORDER BY dseq LIMIT ")
                    .push_bind(n)
                    .push(")");
            }
            Selection::Ids(ids) => {
                q.push(" AND id IN (");
                let mut list = q.separated(", ");
                for id in ids {
                    list.push_bind(id.as_str().to_owned());
                }
                q.push(")");
            }
        }
    }
}
