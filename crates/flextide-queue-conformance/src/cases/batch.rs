//! Clauses 1 and 6 for the batch operations: `push_batch`, `pop_batch` and
//! `delete_batch` keep the single-message meaning, report partial failures by
//! index, and respect `max`.

use std::time::Duration;

use flextide_queue_core::{Capabilities, Message, QueueError};
use tokio::time::Instant;

use crate::{
    Case, CaseResult, Ctx,
    cases::{
        case, need,
        support::{
            brief, collect, delete_all, ensure_distinct, fail, id_set, patience, pop_none, pop_some,
        },
    },
    ensure, ensure_eq,
};

pub(crate) fn cases() -> Vec<Case> {
    vec![
        case!("batch::round_trip", round_trip),
        case!("batch::empty_push_batch", empty_push_batch),
        case!("batch::pop_batch_respects_max", pop_batch_respects_max),
        case!(
            "batch::pop_batch_zero_returns_at_once",
            pop_batch_zero_returns_at_once
        ),
        case!("batch::large_batches_are_split", large_batches_are_split),
        case!(
            "batch::delete_batch_reports_stale_index",
            delete_batch_reports_stale_index,
            |c, _| need(c.fenced_receipts, "needs fenced_receipts")
        ),
        case!(
            "batch::push_batch_reports_failed_index",
            push_batch_reports_failed_index,
            |c, _| need(
                refused_message(c).is_some(),
                "the backend refuses no kind of message"
            )
        ),
    ]
}

/// Clause 1: `push_batch` returns the ids in order, `pop_batch` delivers each
/// message once with its payload and headers, `delete_batch` removes them.
pub async fn round_trip(ctx: &Ctx) -> CaseResult {
    let q = ctx.queue().await?;
    let msgs: Vec<Message> = (0..5)
        .map(|i| Message::new(format!("batch-{i}")).with_header("x-index", i.to_string()))
        .collect();
    let ids = q.push_batch(msgs.clone()).await?;
    ensure_eq!(
        ids,
        msgs.iter().map(|m| m.id.clone()).collect::<Vec<_>>(),
        "push_batch must return the ids in order"
    );
    let got = collect(ctx, &q, msgs.len()).await?;
    ensure_distinct(&got)?;
    for d in &got {
        let Some(sent) = msgs.iter().find(|m| m.id == d.message.id) else {
            return Err(fail(format!(
                "delivered an unknown message {}",
                d.message.id
            )));
        };
        ensure_eq!(d.message.payload, sent.payload, "payload of {}", sent.id);
        ensure_eq!(d.message.headers, sent.headers, "headers of {}", sent.id);
        ensure_eq!(d.attempt, 1, "attempt of {}", sent.id);
    }
    let receipts: Vec<_> = got.iter().map(|d| d.receipt.clone()).collect();
    q.delete_batch(&receipts).await?;
    pop_none(&q, brief(ctx), "every message was deleted by delete_batch").await
}

/// Clause 1: `push_batch(vec![])` returns an empty vector and enqueues nothing.
pub async fn empty_push_batch(ctx: &Ctx) -> CaseResult {
    let q = ctx.queue().await?;
    let ids = q.push_batch(Vec::new()).await?;
    ensure!(
        ids.is_empty(),
        "push_batch of nothing returned {} ids",
        ids.len()
    );
    pop_none(&q, brief(ctx), "nothing was pushed").await
}

/// Clause 6: `pop_batch(max)` returns `max` deliveries when more are
/// available, and the rest stay available.
pub async fn pop_batch_respects_max(ctx: &Ctx) -> CaseResult {
    let q = ctx.queue().await?;
    let msgs: Vec<Message> = (0..6).map(|i| Message::new(format!("m{i}"))).collect();
    q.push_batch(msgs.clone()).await?;
    let want = ctx.capabilities().max_batch.unwrap_or(usize::MAX).min(2);
    let first = q.pop_batch(2, patience(ctx)).await?;
    ensure_eq!(first.len(), want, "pop_batch(2) with 6 messages available");
    let rest = collect(ctx, &q, msgs.len() - first.len()).await?;
    let mut all = first;
    all.extend(rest);
    ensure_distinct(&all)?;
    ensure_eq!(
        id_set(&all),
        msgs.iter().map(|m| m.id.clone()).collect(),
        "every message delivered once"
    );
    pop_none(&q, brief(ctx), "all six are leased").await?;
    delete_all(&q, &all).await
}

/// Clause 6: `pop_batch(0, wait)` returns an empty vector at once and leases
/// nothing.
pub async fn pop_batch_zero_returns_at_once(ctx: &Ctx) -> CaseResult {
    let q = ctx.queue().await?;
    q.push(Message::new("waiting")).await?;
    let start = Instant::now();
    let got = q.pop_batch(0, patience(ctx)).await?;
    let took = start.elapsed();
    ensure!(
        got.is_empty(),
        "pop_batch(0) returned {} deliveries",
        got.len()
    );
    ensure!(
        took <= ctx.settings().timing_slack,
        "pop_batch(0) took {took:?}; it must return at once"
    );
    let d = pop_some(
        &q,
        patience(ctx),
        "the message pop_batch(0) must not have leased",
    )
    .await?;
    ensure_eq!(d.attempt, 1, "pop_batch(0) must not count as a delivery");
    q.delete(&d.receipt).await?;
    Ok(())
}

/// Clause 1: batches larger than the backend's `max_batch` are split, not
/// refused or truncated, by `push_batch` and `delete_batch`.
pub async fn large_batches_are_split(ctx: &Ctx) -> CaseResult {
    let n = ctx.capabilities().max_batch.map_or(25, |m| m * 2 + 1);
    let q = ctx.queue().await?;
    let msgs: Vec<Message> = (0..n).map(|i| Message::new(format!("m{i}"))).collect();
    let ids = q.push_batch(msgs.clone()).await?;
    ensure_eq!(ids.len(), n, "push_batch of {n} messages");
    let got = collect(ctx, &q, n).await?;
    ensure_distinct(&got)?;
    ensure_eq!(
        id_set(&got),
        ids.into_iter().collect(),
        "every pushed message delivered"
    );
    let receipts: Vec<_> = got.iter().map(|d| d.receipt.clone()).collect();
    q.delete_batch(&receipts).await?;
    pop_none(&q, brief(ctx), "delete_batch of every receipt").await
}

/// Clause 3 in a batch: `delete_batch` with one already-settled receipt fails
/// with `PartialBatch` naming exactly that index (as `StaleReceipt`) and
/// deletes the others.
pub async fn delete_batch_reports_stale_index(ctx: &Ctx) -> CaseResult {
    let q = ctx.queue().await?;
    q.push_batch((0..3).map(|i| Message::new(format!("m{i}"))).collect())
        .await?;
    let got = collect(ctx, &q, 3).await?;
    q.delete(&got[1].receipt).await?;
    let receipts: Vec<_> = got.iter().map(|d| d.receipt.clone()).collect();
    match q.delete_batch(&receipts).await {
        Err(QueueError::PartialBatch { failures, .. }) => {
            let indexes: Vec<usize> = failures.iter().map(|f| f.index).collect();
            ensure_eq!(indexes, vec![1], "failed indexes of delete_batch");
            ensure!(
                matches!(failures[0].error, QueueError::StaleReceipt { .. }),
                "index 1 must fail with StaleReceipt, got: {}",
                failures[0].error
            );
        }
        Err(e) => {
            return Err(fail(format!(
                "expected PartialBatch for index 1, got error: {e}"
            )));
        }
        Ok(()) => return Err(fail("delete_batch with a settled receipt returned Ok")),
    }
    pop_none(
        &q,
        brief(ctx),
        "the other receipts of the batch were deleted",
    )
    .await
}

/// Builds a message this backend must refuse, if any: too large, carrying a
/// feature it lacks, or delayed beyond its maximum. Lazy, so the capability
/// gate does not allocate a large payload.
fn refused_message(c: &Capabilities) -> Option<Box<dyn FnOnce() -> Message>> {
    if let Some(max) = c
        .max_payload_bytes
        .filter(|&m| m <= super::payload::PROBE_CAP)
    {
        return Some(Box::new(move || Message::new(vec![b'x'; max + 1])));
    }
    if !c.priority {
        return Some(Box::new(|| Message::new("p").with_priority(5)));
    }
    if !c.delay {
        return Some(Box::new(|| {
            Message::new("d").with_delay(Duration::from_secs(60))
        }));
    }
    if let Some(max) = c.max_delay {
        return Some(Box::new(move || {
            Message::new("d").with_delay(max + Duration::from_secs(60))
        }));
    }
    if !c.ordering_key {
        return Some(Box::new(|| Message::new("k").with_ordering_key("k")));
    }
    if !c.dedup {
        return Some(Box::new(|| Message::new("d").with_dedup_id("d")));
    }
    None
}

/// Whether `e` is an error a refused message may fail with.
fn is_refusal(e: &QueueError) -> bool {
    matches!(
        e,
        QueueError::PayloadTooLarge { .. }
            | QueueError::Unsupported { .. }
            | QueueError::InvalidMessage { .. }
    )
}

/// Clause 1: when an item of `push_batch` is refused, the error is
/// `PartialBatch` listing its index with a non-retryable error, every item
/// not listed was enqueued and no listed one was. A backend may instead
/// refuse the whole batch atomically with the item's own error, and then
/// nothing is enqueued.
pub async fn push_batch_reports_failed_index(ctx: &Ctx) -> CaseResult {
    let Some(bad) = refused_message(ctx.capabilities()) else {
        return Err(fail("no refused message"));
    };
    let bad = bad();
    let q = ctx.queue().await?;
    let msgs = vec![Message::new("good-0"), bad, Message::new("good-2")];
    let failed: Vec<usize> = match q.push_batch(msgs.clone()).await {
        Err(QueueError::PartialBatch { failures, .. }) => {
            for f in &failures {
                ensure!(
                    !f.error.is_retryable(),
                    "a refused item must not be retryable: {}",
                    f.error
                );
            }
            let bad = failures.iter().find(|f| f.index == 1);
            let Some(bad) = bad else {
                return Err(fail(format!(
                    "index 1 (the refused item) is not listed; listed: {:?}",
                    failures.iter().map(|f| f.index).collect::<Vec<_>>()
                )));
            };
            ensure!(
                is_refusal(&bad.error),
                "index 1 failed with an unexpected error: {}",
                bad.error
            );
            failures.iter().map(|f| f.index).collect()
        }
        // All or nothing: the whole batch refused, for the bad item's reason.
        Err(e) if is_refusal(&e) => vec![0, 1, 2],
        Err(e) => {
            return Err(fail(format!(
                "expected PartialBatch (or a refusal of the whole batch), got error: {e}"
            )));
        }
        Ok(ids) => {
            return Err(fail(format!(
                "push_batch with a refused item returned Ok ({} ids)",
                ids.len()
            )));
        }
    };
    let expected: std::collections::HashSet<_> = [0, 2]
        .into_iter()
        .filter(|i| !failed.contains(i))
        .map(|i| msgs[i].id.clone())
        .collect();
    let got = collect(ctx, &q, expected.len()).await?;
    ensure_eq!(
        id_set(&got),
        expected,
        "the items not listed as failed, and only they, were enqueued"
    );
    pop_none(&q, brief(ctx), "no refused item was enqueued").await?;
    delete_all(&q, &got).await
}
