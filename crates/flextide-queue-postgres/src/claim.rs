//! The pop path: the claim statement, and what becomes of rows it leased but cannot decode.

use std::time::Duration;

use flextide_queue_core::{
    Delivery, Result,
    backend::{Decoded, PollBackoff, new_token, wait_for_deliveries},
};
use flextide_queue_sql::decode::{
    Columns, foreign_id_prefix, in_delivery_order, lease_deadline, sort_claimed,
};
use sqlx::{AssertSqlSafe, Row};
use tokio::time::Instant;

use crate::{BACKEND, PostgresQueue, error::map_err};

pub(crate) async fn pop_batch(
    q: &PostgresQueue,
    max: usize,
    wait: Duration,
) -> Result<Vec<Delivery>> {
    if max == 0 {
        return Ok(Vec::new());
    }
    let config = &q.backend.inner.config;
    let backoff = PollBackoff::new(wait, config.poll_min, config.poll_max);
    if !wait.is_zero() {
        q.backend.inner.notifier.ensure_started();
    }
    wait_for_deliveries(&q.wake, backoff, |_| q.claim(max)).await
}

impl PostgresQueue {
    /// Leases up to `max` ready messages in one statement.
    async fn claim(&self, max: usize) -> Result<Vec<Delivery>> {
        let token = new_token();
        let started = Instant::now();
        // Planned for each call, never from a cached generic plan: a queue
        // table swings from empty to millions of rows, and a generic plan
        // chosen while it was small (or never analyzed) stays with the
        // pooled connection. Seen here with autovacuum off: a claim on a
        // 56,000-message queue ran for minutes on such a plan, 7 ms planned
        // afresh. Planning costs a fraction of a millisecond per batch.
        let rows = sqlx::query(AssertSqlSafe(self.sql().claim.clone()))
            .persistent(false)
            .bind(&*self.name)
            .bind(self.max_attempts)
            .bind(&self.exhausted_reason)
            .bind(i64::try_from(max).unwrap_or(i64::MAX))
            .bind(self.lease_ms)
            .bind(&token)
            .bind(foreign_id_prefix(BACKEND))
            .fetch_all(self.pool())
            .await
            .map_err(map_err)?;
        let mut claimed = Vec::with_capacity(rows.len());
        for row in &rows {
            let attempts: i32 = row.try_get("attempts").map_err(map_err)?;
            let columns = Columns::read::<_, i16>(row, true).map_err(map_err)?;
            claimed.push((columns, u32::try_from(attempts).unwrap_or(0)));
        }
        let deadline = lease_deadline(started, self.lease_ms);
        let Decoded { ok, undecodable } = sort_claimed(BACKEND, claimed, &token, deadline);
        for (seq, reason) in undecodable {
            self.dead_letter_undecodable(seq, &token, &reason).await;
        }
        Ok(in_delivery_order(ok))
    }

    /// Moves a row the claim just leased but could not decode (another
    /// producer's, contract clause 12) to the dead letters, by itself. A
    /// failure only logs: the pop goes on with the rest of the batch, and the
    /// row comes back when its lease ends.
    async fn dead_letter_undecodable(&self, seq: i64, token: &str, reason: &str) {
        let moved = sqlx::query_scalar::<_, i64>(AssertSqlSafe(self.sql().dead_letter.clone()))
            .bind(seq)
            .bind(token)
            .bind(&*self.name)
            .bind(reason)
            .fetch_one(self.pool())
            .await;
        match moved {
            Ok(_) => {
                tracing::warn!(queue = %self.name, seq, reason, "flextide-queue-postgres: undecodable row moved to the dead letters")
            }
            Err(e) => {
                tracing::warn!(queue = %self.name, seq, reason, error = %map_err(e), "flextide-queue-postgres: could not move an undecodable row to the dead letters; it comes back after its lease")
            }
        }
    }
}
