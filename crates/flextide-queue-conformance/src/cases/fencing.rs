//! Clause 3 (fencing): a receipt settles only its own delivery. Once the
//! message was delivered again, or the delivery was settled, the old receipt
//! fails with `StaleReceipt` and the newer delivery is untouched.

use std::time::Duration;

use flextide_queue_core::{Delivery, Message, QueueError, Receipt};

use crate::{
    Case, CaseResult, Ctx,
    cases::{
        case, need,
        support::{Queue, brief, describe, fail, patience, pop_none, pop_some, sleep_past_lease},
    },
    ensure, ensure_eq,
};

pub(crate) fn cases() -> Vec<Case> {
    vec![
        case!(
            "fencing::stale_receipt_cannot_delete",
            stale_receipt_cannot_delete,
            fenced
        ),
        case!(
            "fencing::stale_receipt_cannot_nack",
            stale_receipt_cannot_nack,
            fenced
        ),
        case!(
            "fencing::stale_receipt_cannot_extend",
            stale_receipt_cannot_extend,
            |c, _| need(
                c.fenced_receipts && c.extend_lease,
                "needs fenced_receipts and extend_lease"
            )
        ),
        case!(
            "fencing::stale_receipt_cannot_dead_letter",
            stale_receipt_cannot_dead_letter,
            |c, _| need(
                c.fenced_receipts && c.dead_letters,
                "needs fenced_receipts and dead_letters"
            )
        ),
        case!(
            "fencing::expired_receipt_still_deletes",
            expired_receipt_still_deletes,
            fenced
        ),
        case!(
            "fencing::double_delete_is_stale",
            double_delete_is_stale,
            fenced
        ),
        case!(
            "fencing::nacked_receipt_is_stale",
            nacked_receipt_is_stale,
            fenced
        ),
        case!(
            "fencing::garbage_receipt_is_rejected",
            garbage_receipt_is_rejected,
            fenced
        ),
    ]
}

fn fenced(
    c: &flextide_queue_core::Capabilities,
    _: &crate::HarnessSettings,
) -> Option<&'static str> {
    need(c.fenced_receipts, "needs fenced_receipts")
}

/// A short-lease queue with one message delivered twice: the first delivery's
/// lease expired and the second one holds the message now.
async fn redelivered(ctx: &Ctx) -> Result<(Queue, Delivery, Delivery), crate::CaseError> {
    let q = ctx.short_lease_queue(None).await?;
    q.push(Message::new("fenced")).await?;
    let first = pop_some(&q, patience(ctx), "first delivery").await?;
    sleep_past_lease(ctx, &first).await;
    let second = pop_some(&q, patience(ctx), "redelivery after the lease expired").await?;
    ensure_eq!(second.message.id, first.message.id);
    ensure_eq!(second.attempt, 2);
    Ok((q, first, second))
}

/// Fails unless `outcome` is `StaleReceipt`.
pub(crate) fn ensure_stale<T: std::fmt::Debug>(
    outcome: Result<T, QueueError>,
    what: &str,
) -> CaseResult {
    match outcome {
        Err(QueueError::StaleReceipt { .. }) => Ok(()),
        other => Err(fail(format!(
            "{what}: expected StaleReceipt, got {}",
            describe(&other)
        ))),
    }
}

/// The newer delivery still owns the message: its receipt deletes it, and
/// then nothing is left.
async fn newer_delivery_settles(ctx: &Ctx, q: &Queue, newer: &Delivery) -> CaseResult {
    q.delete(&newer.receipt).await.map_err(|e| {
        fail(format!(
            "the newer delivery's receipt no longer deletes the message: {e}"
        ))
    })?;
    pop_none(
        q,
        brief(ctx),
        "the message was deleted by its newer receipt",
    )
    .await
}

/// Clause 3: the receipt of an earlier delivery cannot delete the message
/// once it was delivered again.
pub async fn stale_receipt_cannot_delete(ctx: &Ctx) -> CaseResult {
    let (q, old, new) = redelivered(ctx).await?;
    ensure_stale(
        q.delete(&old.receipt).await,
        "delete with the earlier receipt",
    )?;
    newer_delivery_settles(ctx, &q, &new).await
}

/// Clause 3: the receipt of an earlier delivery cannot nack the message once
/// it was delivered again.
pub async fn stale_receipt_cannot_nack(ctx: &Ctx) -> CaseResult {
    let (q, old, new) = redelivered(ctx).await?;
    ensure_stale(
        q.nack(&old.receipt, Duration::ZERO).await,
        "nack with the earlier receipt",
    )?;
    newer_delivery_settles(ctx, &q, &new).await
}

/// Clause 3: the receipt of an earlier delivery cannot extend the newer
/// delivery's lease.
pub async fn stale_receipt_cannot_extend(ctx: &Ctx) -> CaseResult {
    let (q, old, new) = redelivered(ctx).await?;
    ensure_stale(
        q.extend(&old.receipt, Duration::from_secs(300)).await,
        "extend with the earlier receipt",
    )?;
    newer_delivery_settles(ctx, &q, &new).await
}

/// Clause 3: the receipt of an earlier delivery cannot dead-letter the
/// message once it was delivered again.
pub async fn stale_receipt_cannot_dead_letter(ctx: &Ctx) -> CaseResult {
    let (q, old, new) = redelivered(ctx).await?;
    ensure_stale(
        q.dead_letter(&old.receipt, "stale").await,
        "dead_letter with the earlier receipt",
    )?;
    let dead = q.dead_letters(10).await?;
    ensure!(
        dead.is_empty(),
        "a stale dead_letter moved the message anyway ({} dead letters)",
        dead.len()
    );
    newer_delivery_settles(ctx, &q, &new).await
}

/// Clause 3: a receipt whose lease expired, while the message was not
/// delivered again, still deletes it.
pub async fn expired_receipt_still_deletes(ctx: &Ctx) -> CaseResult {
    let q = ctx.short_lease_queue(None).await?;
    q.push(Message::new("late ack")).await?;
    let d = pop_some(&q, patience(ctx), "the pushed message").await?;
    sleep_past_lease(ctx, &d).await;
    q.delete(&d.receipt).await.map_err(|e| {
        fail(format!(
            "an expired but not redelivered receipt must still delete: {e}"
        ))
    })?;
    pop_none(&q, brief(ctx), "the late delete removed the message").await
}

/// Clause 3: deleting twice with the same receipt fails the second time.
pub async fn double_delete_is_stale(ctx: &Ctx) -> CaseResult {
    let q = ctx.queue().await?;
    q.push(Message::new("once")).await?;
    let d = pop_some(&q, patience(ctx), "the pushed message").await?;
    q.delete(&d.receipt).await?;
    ensure_stale(
        q.delete(&d.receipt).await,
        "second delete with the same receipt",
    )
}

/// Clause 3: after a nack the delivery is settled, so its receipt can neither
/// delete nor nack again, and the redelivery is untouched.
pub async fn nacked_receipt_is_stale(ctx: &Ctx) -> CaseResult {
    let q = ctx.queue().await?;
    q.push(Message::new("nacked")).await?;
    let first = pop_some(&q, patience(ctx), "first delivery").await?;
    q.nack(&first.receipt, Duration::ZERO).await?;
    ensure_stale(
        q.nack(&first.receipt, Duration::ZERO).await,
        "second nack with the same receipt",
    )?;
    let second = pop_some(&q, patience(ctx), "redelivery after the nack").await?;
    ensure_eq!(second.attempt, 2, "one nack, one redelivery");
    ensure_stale(
        q.delete(&first.receipt).await,
        "delete with the nacked receipt",
    )?;
    newer_delivery_settles(ctx, &q, &second).await
}

/// Clause 3 and Errors: a receipt the backend never issued fails with
/// `InvalidReceipt` or `StaleReceipt` (no panic, no success) and touches no
/// message.
pub async fn garbage_receipt_is_rejected(ctx: &Ctx) -> CaseResult {
    let q = ctx.queue().await?;
    q.push(Message::new("bystander")).await?;
    let d = pop_some(&q, patience(ctx), "the pushed message").await?;
    let long = "x".repeat(2000);
    let garbage = [
        "",
        "garbage",
        "0:0",
        "999999999:deadbeef",
        "-1:x",
        "'; DROP TABLE x; --",
        "1:\u{1F4A5}",
        "\0",
        long.as_str(),
    ];
    for text in garbage {
        let r = Receipt::new(text);
        for (op, outcome) in [
            ("delete", q.delete(&r).await),
            ("nack", q.nack(&r, Duration::ZERO).await),
        ] {
            match outcome {
                Err(QueueError::InvalidReceipt { .. } | QueueError::StaleReceipt { .. }) => {}
                other => {
                    return Err(fail(format!(
                        "{op} with the receipt {:?}: expected InvalidReceipt or StaleReceipt, got {}",
                        text.chars().take(24).collect::<String>(),
                        describe(&other)
                    )));
                }
            }
        }
    }
    pop_none(&q, brief(ctx), "the bystander is still leased").await?;
    newer_delivery_settles(ctx, &q, &d).await
}
