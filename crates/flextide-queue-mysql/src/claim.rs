//! The pop path: the claim transaction, which leases ready rows and dead-letters exhausted and undecodable ones.

use std::time::Duration;

use flextide_queue_core::{
    Delivery, Result,
    backend::{Decoded, PollBackoff, max_attempts_reason, new_token, wait_for_deliveries},
};
use flextide_queue_sql::{
    Presence,
    decode::{Columns, foreign_id_prefix, in_delivery_order, lease_deadline, sort_claimed},
    detach_claim, release_claimed,
};
use sqlx::{AssertSqlSafe, Row};
use tokio::time::Instant;

use crate::{
    BACKEND, MySqlQueue,
    dead::move_to_dead_letters,
    error::map_err,
    queue::MAX_BATCH,
    sql::{CLAIM_SQL, RELEASE_SQL, lease_sql},
    tx::{begin_on, retry_lock_conflicts},
};

pub(crate) async fn pop_batch(q: &MySqlQueue, max: usize, wait: Duration) -> Result<Vec<Delivery>> {
    if max == 0 {
        return Ok(Vec::new());
    }
    let max = max.min(MAX_BATCH);
    q.sweep_exhausted().await?;
    let backoff = PollBackoff::new(wait, MIN_POLL, MAX_POLL);
    wait_for_deliveries(&q.notify, backoff, |_| async move {
        loop {
            let (deliveries, dead_lettered) = retry_lock_conflicts(|| q.claim(max)).await?;
            // A claim that only dead-lettered rows may have left ready
            // ones behind: look again at once.
            if !deliveries.is_empty() || !dead_lettered {
                return Ok(deliveries);
            }
        }
    })
    .await
}

impl MySqlQueue {
    /// Makes deliveries nobody received visible again at once, without
    /// counting their attempt. They share one token: one statement.
    async fn release(&self, claimed: Vec<Delivery>) {
        release_claimed(BACKEND, &self.name, &claimed, &self.notify, |token| {
            let release = sqlx::query(RELEASE_SQL)
                .bind(&*self.name)
                .bind(token)
                .execute(&self.pool);
            async move { release.await.map(drop).map_err(map_err) }
        })
        .await
    }

    /// Leases up to `max` messages in one short transaction: BEGIN, the
    /// locking SELECT (which reads every column needed), one UPDATE, COMMIT.
    /// Rows that ran out of attempts are dead-lettered instead, in the same
    /// transaction; the flag says some were (so the caller claims again).
    /// Run detached (contract clause 13); what it leased for a pop that is
    /// gone is given back at once.
    async fn claim(&self, max: usize) -> Result<(Vec<Delivery>, bool)> {
        let (q, back) = (self.clone(), self.clone());
        detach_claim(
            BACKEND,
            move |presence| async move { q.claim_tx(max, &presence).await },
            move |(claimed, _)| {
                let q = back.clone();
                async move { q.release(claimed).await }
            },
        )
        .await
    }

    async fn claim_tx(&self, max: usize, presence: &Presence) -> Result<(Vec<Delivery>, bool)> {
        let started = Instant::now();
        // The wait for a connection is where a pop is most often cut short:
        // a claim for a pop that is gone does not begin.
        let mut conn = self.pool.acquire().await.map_err(map_err)?;
        if presence.is_gone() {
            return Ok((Vec::new(), false));
        }
        let mut tx = begin_on(&mut conn).await?;
        let rows = sqlx::query(CLAIM_SQL)
            .bind(&*self.name)
            .bind(max as u64)
            .fetch_all(&mut *tx)
            .await
            .map_err(map_err)?;
        if rows.is_empty() {
            tx.commit().await.map_err(map_err)?;
            return Ok((Vec::new(), false));
        }
        let now: i64 = rows[0].try_get("now").map_err(map_err)?;
        let token = new_token();
        let mut claimed = Vec::with_capacity(rows.len());
        let mut exhausted = Vec::new();
        for row in &rows {
            let seq: i64 = row.try_get("seq").map_err(map_err)?;
            let attempts: u32 = row.try_get("attempts").map_err(map_err)?;
            match self.options.max_attempts {
                Some(limit) if attempts >= limit => exhausted.push(seq),
                _ => claimed.push((
                    Columns::read::<_, u8>(row, true).map_err(map_err)?,
                    attempts.saturating_add(1),
                )),
            }
        }
        if let Some(limit) = self.options.max_attempts
            && !exhausted.is_empty()
        {
            move_to_dead_letters(&mut tx, &exhausted, &max_attempts_reason(limit)).await?;
        }
        // Rows another producer wrote that are no message (clause 12) go to
        // the dead letters alone, in this transaction, before any attempt.
        let deadline = lease_deadline(started, self.lease_ms);
        let Decoded {
            ok: deliver,
            undecodable,
        } = sort_claimed(BACKEND, claimed, &token, deadline);
        for (seq, reason) in &undecodable {
            // Its foreign id first, so the dead letter can be replayed by id.
            sqlx::query(
                "UPDATE flextide_queue_messages SET id = CONCAT(?, seq) WHERE seq = ? AND id = ''",
            )
            .bind(foreign_id_prefix(BACKEND))
            .bind(*seq)
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
            move_to_dead_letters(&mut tx, &[*seq], reason).await?;
        }
        if !deliver.is_empty() {
            let mut update = sqlx::query(AssertSqlSafe(lease_sql(deliver.len())))
                .bind(&token)
                .bind(now.saturating_add(self.lease_ms))
                .bind(foreign_id_prefix(BACKEND));
            for (seq, _) in &deliver {
                update = update.bind(*seq);
            }
            update.execute(&mut *tx).await.map_err(map_err)?;
        }
        tx.commit().await.map_err(map_err)?;
        let deliveries = in_delivery_order(deliver);
        Ok((deliveries, !exhausted.is_empty() || !undecodable.is_empty()))
    }
}

/// Polling inside a `pop` wait: from 10 ms, doubling to 500 ms.
pub(crate) const MIN_POLL: Duration = Duration::from_millis(10);

pub(crate) const MAX_POLL: Duration = Duration::from_millis(500);
