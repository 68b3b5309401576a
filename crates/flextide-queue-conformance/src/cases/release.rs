//! `release` (capability `release`): a delivery given back without counting
//! an attempt. The message is available at once, its next delivery carries
//! the same attempt number, the released receipt is stale, and
//! `max_attempts` counts only the attempts that were not released.

use std::time::Duration;

use flextide_queue_core::{Capabilities, Message, QueueOptions};

use crate::{
    Case, CaseResult, Ctx, HarnessSettings,
    cases::{
        case,
        dead_letter::ensure_exhausted,
        fencing::ensure_stale,
        need,
        support::{brief, patience, pop_none, pop_some},
    },
    ensure, ensure_eq,
};

pub(crate) fn cases() -> Vec<Case> {
    vec![
        case!("release::comes_back_at_once", comes_back_at_once, released),
        case!(
            "release::attempt_is_not_counted",
            attempt_is_not_counted,
            released
        ),
        case!(
            "release::released_receipt_is_stale",
            released_receipt_is_stale,
            |c, _| need(
                c.release && c.fenced_receipts,
                "needs release and fenced_receipts"
            )
        ),
        case!(
            "release::max_attempts_counts_only_attempts_made",
            max_attempts_counts_only_attempts_made,
            |c, _| need(
                c.release && c.dead_letters,
                "needs release and dead_letters"
            )
        ),
    ]
}

fn released(c: &Capabilities, _: &HarnessSettings) -> Option<&'static str> {
    need(c.release, "needs release")
}

/// A released message is available at once (not at the end of its 30 s
/// lease), on another handle too, with the same id and payload.
pub async fn comes_back_at_once(ctx: &Ctx) -> CaseResult {
    let q = ctx.queue().await?;
    let other = ctx.reopen(&q, QueueOptions::default()).await?;
    let msg = Message::new("give me back");
    q.push(msg.clone()).await?;
    let first = pop_some(&q, patience(ctx), "first delivery").await?;
    q.release(&first.receipt).await?;
    // The lease is 30 s, longer than `patience`: only the release frees it.
    let again = pop_some(&other, patience(ctx), "the delivery after release").await?;
    ensure_eq!(again.message.id, msg.id);
    ensure_eq!(again.message.payload, msg.payload);
    ensure!(
        again.receipt != first.receipt,
        "the delivery after a release must carry a new receipt"
    );
    other.delete(&again.receipt).await?;
    pop_none(&q, brief(ctx), "the message was deleted").await
}

/// The delivery after a release carries the released delivery's attempt;
/// releases between nacks leave the count where the nacks put it.
pub async fn attempt_is_not_counted(ctx: &Ctx) -> CaseResult {
    let q = ctx
        .queue_with(QueueOptions::default().max_attempts(None))
        .await?;
    let msg = Message::new("not started");
    q.push(msg.clone()).await?;
    let mut expected = 1;
    for step in 0..5 {
        let d = pop_some(&q, patience(ctx), &format!("delivery {}", step + 1)).await?;
        ensure_eq!(d.message.id, msg.id);
        ensure_eq!(d.attempt, expected, "attempt of delivery {}", step + 1);
        // Release, release, nack, release, delete.
        match step {
            2 => {
                q.nack(&d.receipt, Duration::ZERO).await?;
                expected += 1;
            }
            4 => q.delete(&d.receipt).await?,
            _ => q.release(&d.receipt).await?,
        }
    }
    pop_none(&q, brief(ctx), "the message was deleted").await
}

/// A released receipt is stale: it can neither settle the message nor
/// release it again, and the delivery after the release still settles it.
pub async fn released_receipt_is_stale(ctx: &Ctx) -> CaseResult {
    let q = ctx.queue().await?;
    q.push(Message::new("fenced release")).await?;
    let first = pop_some(&q, patience(ctx), "first delivery").await?;
    q.release(&first.receipt).await?;
    ensure_stale(
        q.release(&first.receipt).await,
        "a second release of the same receipt",
    )?;
    let again = pop_some(&q, patience(ctx), "the delivery after release").await?;
    ensure_stale(
        q.release(&first.receipt).await,
        "release with the receipt released before the redelivery",
    )?;
    ensure_stale(
        q.delete(&first.receipt).await,
        "delete with the released receipt",
    )?;
    ensure_stale(
        q.nack(&first.receipt, Duration::ZERO).await,
        "nack with the released receipt",
    )?;
    q.delete(&again.receipt).await.map_err(|e| {
        crate::cases::support::fail(format!(
            "the delivery after the release no longer deletes the message: {e}"
        ))
    })?;
    pop_none(&q, brief(ctx), "the message was deleted").await
}

/// With `max_attempts = Some(2)`, releases do not bring the dead letter
/// closer: two nacks still move it there, after any number of releases, and
/// with the attempt count of the nacked deliveries.
pub async fn max_attempts_counts_only_attempts_made(ctx: &Ctx) -> CaseResult {
    let q = ctx
        .queue_with(QueueOptions::default().max_attempts(Some(2)))
        .await?;
    let id = q.push(Message::new("released, then nacked")).await?;
    for attempt in 1..=2 {
        for _ in 0..2 {
            let d = pop_some(&q, patience(ctx), &format!("attempt {attempt}")).await?;
            ensure_eq!(d.attempt, attempt);
            q.release(&d.receipt).await?;
        }
        let d = pop_some(&q, patience(ctx), &format!("attempt {attempt} to nack")).await?;
        ensure_eq!(d.attempt, attempt);
        q.nack(&d.receipt, Duration::ZERO).await?;
    }
    ensure_exhausted(&q, &id, 2).await?;
    pop_none(&q, brief(ctx), "a third attempt beyond max_attempts").await
}
