//! The pop path: the claim statement, run detached, and what becomes of rows it leased but cannot decode.

use std::time::Duration;

use flextide_queue_core::Delivery;
use flextide_queue_core::{
    Result,
    backend::{self, PollBackoff},
};
use flextide_queue_sql::{
    Presence,
    decode::{Columns, foreign_id_prefix, in_delivery_order, sort_claimed},
    detach_claim, millis, release_claimed,
};
use sqlx::Row;
use tokio::time::Instant;

use crate::sql::{CLAIM_SQL, RELEASE_SQL};
use crate::{BACKEND, SqliteQueue, error};

pub(crate) async fn pop_batch(
    q: &SqliteQueue,
    max: usize,
    wait: Duration,
) -> Result<Vec<Delivery>> {
    if max == 0 {
        return Ok(Vec::new());
    }
    let backoff = PollBackoff::new(wait, POLL_MIN, POLL_MAX);
    let got = backend::wait_for_deliveries(&q.inner.wake, backoff, |_| q.claim_detached(max)).await;
    if got.as_ref().is_ok_and(Vec::is_empty) {
        q.inner.vacuum.drained(&q.inner.pool);
    }
    got
}

impl SqliteQueue {
    /// Leases up to `max` available messages in one atomic statement,
    /// unless the pop that asked is gone by the time it has a connection.
    async fn claim(&self, max: usize, presence: &Presence) -> Result<Vec<Delivery>> {
        let started = Instant::now();
        let now = backend::now_millis();
        self.sweep(now).await?;
        let mut conn = self.inner.pool.acquire().await.map_err(error::map)?;
        if presence.is_gone() {
            return Ok(Vec::new());
        }
        let token = backend::new_token();
        let lease = self.inner.options.lease;
        let rows = sqlx::query(CLAIM_SQL)
            .bind(&token)
            .bind(now.saturating_add(millis(lease)))
            .bind(self.inner.name.as_str())
            .bind(now)
            .bind(self.max_attempts())
            .bind(i64::try_from(max).unwrap_or(i64::MAX))
            .bind(foreign_id_prefix(BACKEND))
            .fetch_all(&mut *conn)
            .await
            .map_err(error::map)?;
        // The only connection of an in-memory database: the dead-lettering
        // below needs it back.
        drop(conn);
        let mut claimed = Vec::with_capacity(rows.len());
        for row in &rows {
            let attempts: i64 = row.try_get("attempts").map_err(error::map)?;
            claimed.push((
                Columns::read::<_, i64>(row, true).map_err(error::map)?,
                u32::try_from(attempts).unwrap_or(u32::MAX),
            ));
        }
        let backend::Decoded { ok, undecodable } =
            sort_claimed(BACKEND, claimed, &token, started + lease);
        for (seq, reason) in undecodable {
            self.dead_letter_undecodable(seq, &token, &reason).await;
        }
        Ok(in_delivery_order(ok))
    }

    /// [`SqliteQueue::claim`] in a task of its own, run to the end even when
    /// the pop is cut short (contract clause 13): sqlx closes a connection
    /// whose statement was dropped half-way, and the one connection of an
    /// in-memory database takes the database with it. What it leased for a
    /// pop that is gone is given back at once.
    async fn claim_detached(&self, max: usize) -> Result<Vec<Delivery>> {
        let (q, back) = (self.clone(), self.clone());
        detach_claim(
            BACKEND,
            move |presence| async move { q.claim(max, &presence).await },
            move |claimed| {
                let q = back.clone();
                async move { q.release(claimed).await }
            },
        )
        .await
    }

    /// Makes deliveries nobody received visible again at once, without
    /// counting their attempt. They share one token: one statement.
    async fn release(&self, claimed: Vec<Delivery>) {
        let inner = &self.inner;
        release_claimed(BACKEND, &inner.name, &claimed, &inner.wake, |token| {
            let release = sqlx::query(RELEASE_SQL)
                .bind(inner.name.as_str())
                .bind(token)
                .bind(backend::now_millis())
                .execute(&inner.pool);
            async move { release.await.map(drop).map_err(error::map) }
        })
        .await
    }

    /// Moves a row the claim just leased but could not decode (another
    /// producer's, contract clause 12) to the dead letters, by itself. A
    /// failure only logs: the pop goes on with the rest of the batch, and the
    /// row comes back when its lease ends.
    async fn dead_letter_undecodable(&self, seq: i64, token: &str, reason: &str) {
        match self.move_to_dead_letters(seq, token, reason, false).await {
            Ok(_) => {
                tracing::warn!(queue = %self.inner.name, seq, reason, "flextide-queue-sqlite: undecodable row moved to the dead letters")
            }
            Err(e) => {
                tracing::warn!(queue = %self.inner.name, seq, reason, error = %e, "flextide-queue-sqlite: could not move an undecodable row to the dead letters; it comes back after its lease")
            }
        }
    }
}

/// First and longest pause between polls inside a `pop` wait.
const POLL_MIN: Duration = Duration::from_millis(5);
const POLL_MAX: Duration = Duration::from_millis(250);
