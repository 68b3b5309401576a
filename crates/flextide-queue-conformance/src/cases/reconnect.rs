//! Clause 11 (connection loss): after the harness breaks a queue's
//! connections, the next call reconnects (or fails retryably once and the
//! one after succeeds), and nothing accepted or leased is lost.

use std::{collections::HashSet, future::Future, time::Duration};

use flextide_queue_core::{Message, QueueError};
use tokio::time::Instant;

use crate::{
    Case, CaseError, CaseResult, Ctx, HarnessSettings,
    cases::{
        case, need,
        support::{Queue, brief, fail, patience, pop_none},
    },
    ensure,
};

pub(crate) fn cases() -> Vec<Case> {
    vec![
        case!(
            "reconnect::operations_recover",
            operations_recover,
            disruptable
        ),
        case!(
            "reconnect::leased_message_is_not_lost",
            leased_message_is_not_lost,
            disruptable
        ),
        case!(
            "reconnect::waiting_pop_survives",
            waiting_pop_survives,
            disruptable
        ),
    ]
}

fn disruptable(_: &flextide_queue_core::Capabilities, s: &HarnessSettings) -> Option<&'static str> {
    need(
        s.can_disrupt,
        "the harness cannot disrupt connections (HarnessSettings::can_disrupt)",
    )
}

/// Breaks the queue's connections, failing the case if the harness cannot.
async fn disrupt(ctx: &Ctx, q: &Queue) -> CaseResult {
    ensure!(
        ctx.disrupt(q).await?,
        "HarnessSettings::can_disrupt is set but Harness::disrupt returned false"
    );
    Ok(())
}

/// Runs `op`; after a retryable error, runs it once more, which must succeed.
async fn retried<T, F, Fut>(what: &str, mut op: F) -> Result<T, CaseError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, QueueError>>,
{
    match op().await {
        Ok(v) => Ok(v),
        Err(e) if e.is_retryable() => {
            tokio::time::sleep(Duration::from_millis(200)).await;
            op().await.map_err(|e2| {
                fail(format!(
                    "{what}: failed again after a retryable error ({e}): {e2}"
                ))
            })
        }
        Err(e) => Err(fail(format!(
            "{what} after a disruption failed with a non-retryable error: {e}"
        ))),
    }
}

/// Deletes after a disruption: a retried delete may find its first attempt
/// took effect, so `StaleReceipt` on the retry is fine.
async fn delete_retried(q: &Queue, receipt: &flextide_queue_core::Receipt) -> CaseResult {
    delete_once_or_retried(q, receipt).await.map(drop)
}

/// Deletes with one retry after a retryable error (a stale receipt on the
/// retry counts as done: the first try may have gone through). Says whether
/// the first try failed: the delete then may not have happened, and the
/// contract lets the message come back (at least once).
async fn delete_once_or_retried(
    q: &Queue,
    receipt: &flextide_queue_core::Receipt,
) -> Result<bool, CaseError> {
    match q.delete(receipt).await {
        Ok(()) => Ok(false),
        Err(e) if e.is_retryable() => match q.delete(receipt).await {
            Ok(()) | Err(QueueError::StaleReceipt { .. }) => Ok(true),
            Err(e2) => Err(fail(format!(
                "delete failed again after a retryable error ({e}): {e2}"
            ))),
        },
        Err(e) => Err(fail(format!(
            "delete after a disruption failed with a non-retryable error: {e}"
        ))),
    }
}

/// Clause 11: push, pop and delete keep working after the connections drop,
/// and the message pushed before the drop is still delivered.
pub async fn operations_recover(ctx: &Ctx) -> CaseResult {
    let q = ctx.queue().await?;
    let before = q.push(Message::new("before")).await?;
    disrupt(ctx, &q).await?;
    let m = Message::new("after");
    let after = retried("push", || q.push(m.clone())).await?;
    let mut missing: HashSet<_> = [before, after].into_iter().collect();
    let deadline = Instant::now() + patience(ctx) * 2;
    while !missing.is_empty() && Instant::now() < deadline {
        let Some(d) = retried("pop", || q.pop(patience(ctx))).await? else {
            continue;
        };
        // A push retried after a timeout may have been stored twice: allowed.
        missing.remove(&d.message.id);
        delete_retried(&q, &d.receipt).await?;
    }
    ensure!(
        missing.is_empty(),
        "messages lost across the disruption: {missing:?}"
    );
    Ok(())
}

/// Clause 11: a message leased before the connections dropped is delivered
/// again once its lease ends (or at once), never lost.
pub async fn leased_message_is_not_lost(ctx: &Ctx) -> CaseResult {
    let q = ctx.short_lease_queue(None).await?;
    let id = q.push(Message::new("leased")).await?;
    let d = q
        .pop(patience(ctx))
        .await?
        .ok_or_else(|| fail("the pushed message was not delivered"))?;
    disrupt(ctx, &q).await?;
    let wait = ctx.settings().short_lease + patience(ctx);
    let again = retried("pop", || q.pop(wait)).await?;
    let Some(again) = again else {
        return Err(fail(format!(
            "the message leased before the disruption was not delivered again within {wait:?}"
        )));
    };
    ensure!(
        again.message.id == id,
        "another message was delivered: {}",
        again.message.id
    );
    ensure!(
        again.attempt >= 2,
        "a redelivery must count as a new attempt, got attempt {}",
        again.attempt
    );
    ensure!(
        again.receipt != d.receipt,
        "a redelivery must carry a new receipt"
    );
    let first_try_failed = delete_once_or_retried(&q, &again.receipt).await?;
    match retried("pop", || q.pop(brief(ctx))).await? {
        None => Ok(()),
        // The first delete failed (the connection went on dropping), so it
        // may never have reached the broker: one more delivery is the
        // at-least-once promise, not a loss of the delete. It must go for good.
        Some(x) if first_try_failed && x.message.id == id => {
            delete_retried(&q, &x.receipt).await?;
            pop_none(
                &q,
                brief(ctx),
                "the message came back after its second delete",
            )
            .await
        }
        Some(x) => Err(fail(format!(
            "message {} delivered after it was deleted (the delete succeeded at the first try: {})",
            x.message.id, !first_try_failed
        ))),
    }
}

/// Clause 11 and 6: a pop waiting while the connections drop returns (a
/// delivery, nothing, or a retryable error) instead of hanging, and the
/// queue works afterwards.
pub async fn waiting_pop_survives(ctx: &Ctx) -> CaseResult {
    let q = ctx.queue().await?;
    let wait = Duration::from_secs(3);
    let waiter = {
        let q = q.clone();
        tokio::spawn(async move { q.pop(wait).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    disrupt(ctx, &q).await?;
    let limit = wait + Duration::from_secs(10) + ctx.settings().timing_slack;
    match tokio::time::timeout(limit, waiter).await {
        Err(_) => {
            return Err(fail(format!(
                "a pop waiting during the disruption did not return within {limit:?}"
            )));
        }
        Ok(Err(e)) => return Err(fail(format!("the waiting pop panicked: {e}"))),
        Ok(Ok(Ok(None))) => {}
        Ok(Ok(Ok(Some(d)))) => {
            return Err(fail(format!("an empty queue delivered {}", d.message.id)));
        }
        Ok(Ok(Err(e))) => ensure!(
            e.is_retryable(),
            "the waiting pop failed with a non-retryable error: {e}"
        ),
    }
    let m = Message::new("after");
    let id = retried("push", || q.push(m.clone())).await?;
    let d = retried("pop", || q.pop(patience(ctx)))
        .await?
        .ok_or_else(|| fail("the message pushed after the disruption was not delivered"))?;
    ensure!(
        d.message.id == id,
        "another message was delivered: {}",
        d.message.id
    );
    delete_retried(&q, &d.receipt).await
}
