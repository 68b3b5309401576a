//! Helpers the cases share: waiting for deliveries, timing derived from the
//! harness settings, polling for effects that may be eventual.

use std::{collections::HashSet, future::Future, sync::Arc, time::Duration};

use flextide_queue_core::{Delivery, MessageId, QueueError, QueueProvider};
use tokio::time::Instant;

use crate::{CaseError, CaseResult, Ctx};

/// A queue handle as the cases hold it.
pub(crate) type Queue = Arc<dyn QueueProvider>;

/// A case failure with this message.
pub(crate) fn fail(message: impl Into<String>) -> CaseError {
    CaseError(message.into())
}

/// How long to wait for a message that should be available already: long
/// enough for a slow emulator, and free when the message is there.
pub(crate) fn patience(ctx: &Ctx) -> Duration {
    Duration::from_secs(5) + ctx.settings().timing_slack * 4
}

/// How long to wait when checking that nothing is delivered.
pub(crate) fn brief(ctx: &Ctx) -> Duration {
    ctx.settings().timing_slack.max(Duration::from_millis(200))
}

/// A delay for the delay cases: at least 2 s and twice the slack, in whole
/// seconds (some brokers count delays in seconds).
pub(crate) fn delay_unit(ctx: &Ctx) -> Duration {
    whole_secs(
        (ctx.settings().timing_slack * 2 + Duration::from_millis(500)).max(Duration::from_secs(2)),
    )
}

/// `d` rounded up to whole seconds.
pub(crate) fn whole_secs(d: Duration) -> Duration {
    Duration::from_secs(d.as_secs() + u64::from(d.subsec_nanos() > 0))
}

/// Pops one delivery or fails the case.
pub(crate) async fn pop_some(q: &Queue, wait: Duration, what: &str) -> Result<Delivery, CaseError> {
    match q.pop(wait).await? {
        Some(d) => Ok(d),
        None => Err(fail(format!(
            "expected a delivery ({what}) within {wait:?}, got none"
        ))),
    }
}

/// Pops with `wait` and fails the case if anything is delivered.
pub(crate) async fn pop_none(q: &Queue, wait: Duration, what: &str) -> CaseResult {
    match q.pop(wait).await? {
        None => Ok(()),
        Some(d) => Err(fail(format!(
            "expected no delivery ({what}), got message {} (attempt {})",
            d.message.id, d.attempt
        ))),
    }
}

/// Sleeps until the delivery's lease has surely ended.
pub(crate) async fn sleep_past_lease(ctx: &Ctx, d: &Delivery) {
    tokio::time::sleep_until(d.lease_deadline + ctx.settings().timing_slack).await;
}

/// Pops with `pop_batch` until `n` deliveries are collected, checking that no
/// batch is larger than asked or than the backend's `max_batch`.
pub(crate) async fn collect(ctx: &Ctx, q: &Queue, n: usize) -> Result<Vec<Delivery>, CaseError> {
    let max_batch = ctx.capabilities().max_batch;
    let mut got = Vec::with_capacity(n);
    while got.len() < n {
        let want = n - got.len();
        let batch = q.pop_batch(want, patience(ctx)).await?;
        if batch.len() > want || max_batch.is_some_and(|m| batch.len() > m) {
            return Err(fail(format!(
                "pop_batch({want}) returned {} deliveries (max_batch {max_batch:?})",
                batch.len()
            )));
        }
        if batch.is_empty() {
            return Err(fail(format!(
                "expected {n} deliveries, got only {}",
                got.len()
            )));
        }
        got.extend(batch);
    }
    Ok(got)
}

/// Pops everything available now (until a pop of `brief` returns nothing).
pub(crate) async fn drain(ctx: &Ctx, q: &Queue) -> Result<Vec<Delivery>, CaseError> {
    let mut got = Vec::new();
    for _ in 0..10_000 {
        let batch = q.pop_batch(10, brief(ctx)).await?;
        if batch.is_empty() {
            return Ok(got);
        }
        got.extend(batch);
    }
    Err(fail("the queue never ran dry"))
}

/// Fails unless the deliveries are of distinct messages.
pub(crate) fn ensure_distinct(deliveries: &[Delivery]) -> CaseResult {
    let mut seen = HashSet::new();
    for d in deliveries {
        if !seen.insert(&d.message.id) {
            return Err(fail(format!(
                "message {} was delivered twice while its lease held",
                d.message.id
            )));
        }
    }
    Ok(())
}

/// The ids of these deliveries, as a set.
pub(crate) fn id_set(deliveries: &[Delivery]) -> HashSet<MessageId> {
    deliveries.iter().map(|d| d.message.id.clone()).collect()
}

/// Deletes every delivery (the case's housekeeping, so leases never linger).
pub(crate) async fn delete_all(q: &Queue, deliveries: &[Delivery]) -> CaseResult {
    for d in deliveries {
        q.delete(&d.receipt).await?;
    }
    Ok(())
}

/// Polls `check` until it returns `Ok(None)`, or fails with its last
/// `Some(why)` once `limit` has passed. For effects the contract allows to be
/// eventual (approximate stats, lazy moves).
pub(crate) async fn eventually<F, Fut>(limit: Duration, mut check: F) -> CaseResult
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<String>, CaseError>>,
{
    let deadline = Instant::now() + limit;
    loop {
        match check().await? {
            None => return Ok(()),
            Some(why) if Instant::now() >= deadline => {
                return Err(fail(format!("still not so after {limit:?}: {why}")));
            }
            Some(_) => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    }
}

/// A short description of an outcome, for failure messages.
pub(crate) fn describe<T: std::fmt::Debug>(outcome: &Result<T, QueueError>) -> String {
    match outcome {
        Ok(v) => format!("Ok({v:?})"),
        Err(e) => format!("error: {e}"),
    }
}
