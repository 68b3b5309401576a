//! The pop path: the claim statement, and what becomes of rows it leased but cannot decode.

use std::time::Duration;

use flextide_queue_core::{
    Delivery, Result,
    backend::{Decoded, PollBackoff, new_token, wait_for_deliveries},
};
use flextide_queue_sql::{
    Presence,
    decode::{Columns, foreign_id_prefix, in_delivery_order, lease_deadline, sort_claimed},
    decode_receipt, detach_claim, release_claimed,
};
use sqlx::{AssertSqlSafe, Connection, Row};
use tokio::time::Instant;

use crate::{BACKEND, PostgresQueue, error::map_err};

/// Opens the claim's transaction (one round trip, so a claim costs three
/// instead of one) with sorts, bitmap and sequential scans off for that transaction only
/// (`SET LOCAL`: gone at its end, and safe behind a transaction-mode
/// pooler). The claim then walks its index in delivery order and stops at
/// its limit, whatever the table's statistics say. With statistics that do
/// not know the backlog, the planner estimates a handful of ready rows and
/// prefers a bitmap scan of every row of the queue and a sort (which the
/// row locks above it keep from being a bounded top-N sort). Measured on a
/// never-analyzed table holding 100,000 ready messages: 49 ms for a claim
/// of 100 that way, 0.5 ms walking the index (PostgreSQL 15). Walking the
/// indexes is the right plan whatever the backlog: it reads entries only
/// until it has its limit, and no claim index holds a live lease or a
/// message still delayed (schema version 4).
///
/// Sequential scans go off as well: the lease index's head (what came due)
/// is bounded by a time the planner cannot see (the statement reads the
/// clock), so with many leased or delayed rows it guessed a third of them
/// due and read the whole table instead (25,022 rows for a claim of 10 in
/// `claims_skip_leased_and_retried_rows`, with 7,500 leased or delayed).
///
/// The claim runs on its generic plan, prepared once per connection
/// (`plan_cache_mode`): with the paths above off, its shape no longer
/// depends on statistics, so planning it again on every call bought
/// nothing.
///
/// JIT goes off too: a plan that still needs a sort (the dead letters'
/// `ORDER BY seq`) then costs more than `jit_above_cost`, and compiling it
/// took 580 ms per claim here, for a statement that runs in under one.
pub(crate) const CLAIM_BEGIN: &str = "BEGIN; SET LOCAL enable_sort = off; \
     SET LOCAL enable_bitmapscan = off; SET LOCAL enable_seqscan = off; SET LOCAL jit = off; \
     SET LOCAL plan_cache_mode = force_generic_plan";

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
    /// Leases up to `max` ready messages in one statement, in a
    /// transaction of its own ([`CLAIM_BEGIN`]) run detached (contract
    /// clause 13): sqlx cannot drop a BEGIN half-way safely (the pooled
    /// connection stays in a transaction it does not know of, where a later
    /// push returns Ok and never commits), and what it leased for a pop that
    /// is gone is given back at once.
    async fn claim(&self, max: usize) -> Result<Vec<Delivery>> {
        let (q, back) = (self.clone(), self.clone());
        detach_claim(
            BACKEND,
            move |presence| async move { q.claim_tx(max, &presence).await },
            move |claimed| {
                let q = back.clone();
                async move { q.give_back(claimed).await }
            },
        )
        .await
    }

    async fn claim_tx(&self, max: usize, presence: &Presence) -> Result<Vec<Delivery>> {
        let token = new_token();
        let started = Instant::now();
        // The wait for a connection is where a pop is most often cut short:
        // a claim for a pop that is gone does not begin.
        let mut conn = self.pool().acquire().await.map_err(map_err)?;
        if presence.is_gone() {
            return Ok(Vec::new());
        }
        // Prepared once per connection and run on its generic plan
        // (`plan_cache_mode = force_generic_plan` in CLAIM_BEGIN): the plan
        // no longer depends on statistics at all. With sorts, bitmap and
        // sequential scans off it walks the three claim indexes, and it
        // reaches rows by primary key (`seq = ANY (ARRAY(…))`), so the plan
        // a connection keeps is right for an empty table and for millions
        // of rows alike. (Before, when statistics steered the plan, a
        // generic plan chosen while the table was small ran for minutes on
        // a 56,000-message queue; the claim was then planned on every call,
        // 0.3–1 ms each, and still sorted or scanned whole tables whenever
        // the statistics were stale.) Planning no more brought the idle
        // push→pop p50 from about 1.9 ms to 1.0 ms here.
        let mut tx = conn.begin_with(CLAIM_BEGIN).await.map_err(map_err)?;
        let rows = sqlx::query(AssertSqlSafe(self.sql().claim.clone()))
            .bind(&*self.name)
            .bind(self.max_attempts)
            .bind(&self.exhausted_reason)
            .bind(i64::try_from(max).unwrap_or(i64::MAX))
            .bind(self.lease_ms)
            .bind(&token)
            .bind(foreign_id_prefix(BACKEND))
            .fetch_all(&mut *tx)
            .await
            .map_err(map_err)?;
        tx.commit().await.map_err(map_err)?;
        drop(conn);
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

    /// Makes deliveries nobody received visible again at once, without
    /// counting their attempt: one statement for the claim's rows.
    async fn give_back(&self, claimed: Vec<Delivery>) {
        let seqs: Vec<i64> = claimed
            .iter()
            .filter_map(|d| decode_receipt(BACKEND, &d.receipt).ok().map(|(seq, _)| seq))
            .collect();
        release_claimed(BACKEND, &self.name, &claimed, &self.wake, |token| {
            let release = sqlx::query(AssertSqlSafe(self.sql().release.clone()))
                .bind(seqs)
                .bind(token)
                .bind(&*self.name)
                .bind(self.channel())
                .execute(self.pool());
            async move { release.await.map(drop).map_err(map_err) }
        })
        .await
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
