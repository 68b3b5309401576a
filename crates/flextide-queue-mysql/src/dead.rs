//! The dead letters: the sweep of exhausted leases, listing, replay,
//! deleting chosen ones, purge.

use flextide_queue_core::{DeadLetter, MessageId, Replay, Result, backend::max_attempts_reason};
use flextide_queue_sql::{decode::dead_letter, detach};
use sqlx::{AssertSqlSafe, MySql, MySqlConnection, QueryBuilder};

use crate::{BACKEND, MySqlQueue, error::map_err, sql::SWEEP_PROBE_SQL};

use crate::{queue::MAX_BATCH, sql::placeholders, stats::delete_in_chunks, tx::begin};

pub(crate) async fn dead_letters(q: &MySqlQueue, limit: usize) -> Result<Vec<DeadLetter>> {
    q.sweep_exhausted().await?;
    if limit == 0 {
        return Ok(Vec::new());
    }
    let rows = sqlx::query(concat!(
        "SELECT ",
        message_columns!(),
        ", attempts, reason, dead_at AS dead_lettered_at FROM flextide_queue_dead_letters WHERE queue = ? ORDER BY dseq LIMIT ?"
    ))
    .bind(&*q.name)
    .bind(limit as u64)
    .fetch_all(&q.pool)
    .await
    .map_err(map_err)?;
    rows.iter()
        .map(|row| dead_letter::<_, u8, u32>(BACKEND, row).map_err(map_err))
        .collect()
}

pub(crate) async fn replay_dead_letters(q: &MySqlQueue, which: Replay) -> Result<u64> {
    let mut moved = 0;
    match which {
        Replay::Ids(ids) => {
            for chunk in ids.chunks(MAX_BATCH) {
                moved += q.replay_chunk(Some(chunk), 0).await?;
            }
        }
        Replay::Oldest(mut n) => {
            while n > 0 {
                let done = q.replay_chunk(None, n.min(MAX_BATCH)).await?;
                if done == 0 {
                    break;
                }
                moved += done;
                n = n.saturating_sub(done as usize);
            }
        }
        Replay::All => loop {
            let done = q.replay_chunk(None, MAX_BATCH).await?;
            moved += done;
            if done < MAX_BATCH as u64 {
                break;
            }
        },
    }
    if moved > 0 {
        q.notify.notify_waiters();
    }
    Ok(moved)
}

pub(crate) async fn delete_dead_letters(q: &MySqlQueue, ids: &[MessageId]) -> Result<u64> {
    let pool = &q.pool;
    flextide_queue_sql::delete_dead_letters(
        "flextide_queue_dead_letters",
        &q.name,
        ids,
        |mut sql: QueryBuilder<MySql>| async move {
            let done = sql.build().execute(pool).await.map_err(map_err)?;
            Ok(done.rows_affected())
        },
    )
    .await
}

pub(crate) async fn purge_dead_letters(q: &MySqlQueue) -> Result<u64> {
    delete_in_chunks(
        &q.pool,
        "DELETE FROM flextide_queue_dead_letters WHERE queue = ? LIMIT 5000",
        &q.name,
    )
    .await
}

impl MySqlQueue {
    /// Dead-letters messages whose lease ran out after their last allowed
    /// attempt. The claim does this for the rows it reaches; this catches the
    /// rest, so a pop, stats or dead-letter listing never shows them as live.
    pub(crate) async fn sweep_exhausted(&self) -> Result<()> {
        let Some(limit) = self.options.max_attempts else {
            return Ok(());
        };
        let q = self.clone();
        detach(BACKEND, async move { q.sweep_exhausted_tx(limit).await }).await
    }

    pub(crate) async fn sweep_exhausted_tx(&self, limit: u32) -> Result<()> {
        let reason = max_attempts_reason(limit);
        loop {
            // A cheap non-locking probe on the lease index; usually empty.
            let candidates: Vec<i64> = sqlx::query_scalar(SWEEP_PROBE_SQL)
                .bind(&*self.name)
                .bind(limit)
                .fetch_all(&self.pool)
                .await
                .map_err(map_err)?;
            if candidates.is_empty() {
                return Ok(());
            }
            let mut tx = begin(&self.pool).await?;
            let sql = format!(
                concat!(
                    "SELECT seq FROM flextide_queue_messages WHERE seq IN ({}) AND queue = ? AND leased = 1 AND visible_at <= ",
                    now_ms!(),
                    " AND attempts >= ? FOR UPDATE SKIP LOCKED"
                ),
                placeholders(candidates.len())
            );
            let mut lock = sqlx::query_scalar::<_, i64>(AssertSqlSafe(sql));
            for seq in &candidates {
                lock = lock.bind(*seq);
            }
            let locked = lock
                .bind(&*self.name)
                .bind(limit)
                .fetch_all(&mut *tx)
                .await
                .map_err(map_err)?;
            if !locked.is_empty() {
                move_to_dead_letters(&mut tx, &locked, &reason).await?;
            }
            tx.commit().await.map_err(map_err)?;
            if candidates.len() < SWEEP_CHUNK || locked.len() < candidates.len() {
                return Ok(());
            }
        }
    }

    /// Replays up to `limit` dead letters (oldest first, or those with these
    /// ids) in one transaction; returns how many moved.
    pub(crate) async fn replay_chunk(
        &self,
        ids: Option<&[MessageId]>,
        limit: usize,
    ) -> Result<u64> {
        let (q, ids) = (self.clone(), ids.map(<[MessageId]>::to_vec));
        detach(BACKEND, async move {
            q.replay_chunk_tx(ids.as_deref(), limit).await
        })
        .await
    }

    pub(crate) async fn replay_chunk_tx(
        &self,
        ids: Option<&[MessageId]>,
        limit: usize,
    ) -> Result<u64> {
        let mut tx = begin(&self.pool).await?;
        let dseqs: Vec<i64> = match ids {
            Some(ids) => {
                let sql = format!(
                    "SELECT dseq FROM flextide_queue_dead_letters WHERE queue = ? AND id IN ({}) ORDER BY dseq FOR UPDATE",
                    placeholders(ids.len())
                );
                let mut query = sqlx::query_scalar(AssertSqlSafe(sql)).bind(&*self.name);
                for id in ids {
                    query = query.bind(id.as_str());
                }
                query.fetch_all(&mut *tx).await.map_err(map_err)?
            }
            None => sqlx::query_scalar(
                "SELECT dseq FROM flextide_queue_dead_letters WHERE queue = ? ORDER BY dseq LIMIT ? FOR UPDATE",
            )
            .bind(&*self.name)
            .bind(limit as u64)
            .fetch_all(&mut *tx)
            .await
            .map_err(map_err)?,
        };
        if dseqs.is_empty() {
            tx.commit().await.map_err(map_err)?;
            return Ok(0);
        }
        let list = placeholders(dseqs.len());
        let insert = format!(
            concat!(
                "INSERT INTO flextide_queue_messages
                    (queue, id, payload, headers, priority, ordering_key, dedup_id, enqueued_at, visible_at)
                 SELECT queue, id, payload, headers, priority, ordering_key, dedup_id, ",
                now_ms!(),
                ", ",
                now_ms!(),
                " FROM flextide_queue_dead_letters WHERE dseq IN ({}) ORDER BY dseq"
            ),
            list
        );
        let mut query = sqlx::query(AssertSqlSafe(insert));
        for dseq in &dseqs {
            query = query.bind(*dseq);
        }
        query.execute(&mut *tx).await.map_err(map_err)?;
        let delete = format!("DELETE FROM flextide_queue_dead_letters WHERE dseq IN ({list})");
        let mut query = sqlx::query(AssertSqlSafe(delete));
        for dseq in &dseqs {
            query = query.bind(*dseq);
        }
        query.execute(&mut *tx).await.map_err(map_err)?;
        tx.commit().await.map_err(map_err)?;
        Ok(dseqs.len() as u64)
    }
}

/// Rows dead-lettered per transaction when expired leases run out of attempts.
pub(crate) const SWEEP_CHUNK: usize = 500;

/// Copies rows (locked by the caller) to the dead letters and deletes them.
pub(crate) async fn move_to_dead_letters(
    conn: &mut MySqlConnection,
    seqs: &[i64],
    reason: &str,
) -> Result<()> {
    let list = placeholders(seqs.len());
    let insert = format!(
        concat!(
            "INSERT INTO flextide_queue_dead_letters
                (queue, id, payload, headers, priority, ordering_key, enqueued_at, dedup_id, attempts, reason, dead_at)
             SELECT queue, id, payload, headers, priority, ordering_key, enqueued_at, dedup_id, attempts, ?, ",
            now_ms!(),
            " FROM flextide_queue_messages WHERE seq IN ({}) ORDER BY seq"
        ),
        list
    );
    let mut query = sqlx::query(AssertSqlSafe(insert)).bind(reason);
    for seq in seqs {
        query = query.bind(*seq);
    }
    query.execute(&mut *conn).await.map_err(map_err)?;
    let delete = format!("DELETE FROM flextide_queue_messages WHERE seq IN ({list})");
    let mut query = sqlx::query(AssertSqlSafe(delete));
    for seq in seqs {
        query = query.bind(*seq);
    }
    query.execute(&mut *conn).await.map_err(map_err)?;
    Ok(())
}
