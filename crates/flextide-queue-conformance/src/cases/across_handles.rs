//! The contract across processes: every step opens a fresh handle on the
//! queue, acts, and drops it, the way a producer, a worker and an
//! operator's `flextide` command each open the queue, act and exit.
//! Clauses 1, 2, 3, 5 and 9 must hold between handles exactly as within one.

use std::time::Duration;

use flextide_queue_core::{Message, QueueError, QueueOptions};

use crate::{
    Case, CaseResult, Ctx,
    cases::{
        case, need,
        support::{Queue, brief, eventually, fail, patience, pop_none, pop_some},
    },
    ensure_eq,
};

pub(crate) fn cases() -> Vec<Case> {
    vec![
        case!(
            "across_handles::nacks_count_one_attempt_each",
            nacks_count_one_attempt_each
        ),
        case!(
            "across_handles::dropped_handle_redelivers_after_the_lease",
            dropped_handle_redelivers_after_the_lease
        ),
        case!(
            "across_handles::extend_holds_against_other_handles",
            extend_holds_against_other_handles,
            |c, _| need(c.extend_lease, "needs extend_lease")
        ),
        case!(
            "across_handles::stale_receipt_of_a_closed_handle_is_refused",
            stale_receipt_of_a_closed_handle_is_refused,
            |c, _| need(c.fenced_receipts, "needs fenced_receipts")
        ),
        case!(
            "across_handles::max_attempts_counts_every_handle",
            max_attempts_counts_every_handle,
            |c, _| need(c.dead_letters, "needs dead_letters")
        ),
        case!(
            "across_handles::stats_agree_between_handles",
            stats_agree_between_handles,
            crate::cases::stats::counting
        ),
    ]
}

/// A fresh handle on `q`'s queue, as a new process would open it.
async fn fresh(ctx: &Ctx, q: &Queue, options: QueueOptions) -> Result<Queue, crate::CaseError> {
    ctx.reopen(q, options).await
}

/// Closes a handle as a process that exits cleanly does
/// (`QueueProvider::close`, then drop).
async fn close(handle: Queue) -> CaseResult {
    handle.close().await?;
    drop(handle);
    Ok(())
}

/// Clause 2 across processes: `nack(0)` by one handle after another (like
/// `flextide pop --keep` run repeatedly) counts exactly one attempt per
/// delivery: attempts 1, 2, 3, 4.
pub async fn nacks_count_one_attempt_each(ctx: &Ctx) -> CaseResult {
    let options = QueueOptions::default().max_attempts(None);
    let q = ctx.queue_with(options.clone()).await?;
    let id = q.push(Message::new("nacked by many")).await?;
    close(q.clone()).await?;
    for want in 1..=4 {
        let h = fresh(ctx, &q, options.clone()).await?;
        let d = pop_some(&h, patience(ctx), "the nacked message").await?;
        ensure_eq!(d.message.id, id, "the same message, with the same id");
        ensure_eq!(
            d.attempt,
            want,
            "delivery {want} by a fresh handle after {} nacks by other handles",
            want - 1
        );
        h.nack(&d.receipt, Duration::ZERO).await?;
        close(h).await?;
    }
    let h = fresh(ctx, &q, options).await?;
    let d = pop_some(&h, patience(ctx), "the message after four nacks").await?;
    ensure_eq!(d.attempt, 5);
    h.delete(&d.receipt).await?;
    Ok(())
}

/// Clause 2 across processes: a handle that takes a message and goes away
/// without settling it (a crashed worker) loses nothing: the message comes
/// back to another handle once the lease ends, with attempt + 1 and the
/// same id.
pub async fn dropped_handle_redelivers_after_the_lease(ctx: &Ctx) -> CaseResult {
    let options = QueueOptions::default()
        .lease(ctx.settings().short_lease)
        .max_attempts(None);
    let q = ctx.queue_with(options.clone()).await?;
    let id = q.push(Message::new("the worker died")).await?;
    let h = fresh(ctx, &q, options.clone()).await?;
    let d = pop_some(&h, patience(ctx), "the first delivery").await?;
    ensure_eq!(d.attempt, 1);
    // No close: the process died.
    drop(h);
    let other = fresh(ctx, &q, options).await?;
    let wait = ctx.settings().short_lease + patience(ctx) * 2;
    let again = pop_some(&other, wait, "the message the dropped handle held").await?;
    ensure_eq!(
        again.message.id,
        id,
        "the same id after the holder went away"
    );
    ensure_eq!(again.attempt, 2, "one attempt for the lost delivery");
    other.delete(&again.receipt).await?;
    Ok(())
}

/// Clause 2 across processes: a lease extended by its holder keeps the
/// message from every other handle.
pub async fn extend_holds_against_other_handles(ctx: &Ctx) -> CaseResult {
    let short = ctx.settings().short_lease;
    let options = QueueOptions::default().lease(short).max_attempts(None);
    let q = ctx.queue_with(options.clone()).await?;
    q.push(Message::new("extended")).await?;
    let d = pop_some(&q, patience(ctx), "the message").await?;
    let hold = short * 4 + ctx.settings().timing_slack * 2;
    q.extend(&d.receipt, hold).await?;
    // Well past the original lease, still well inside the extension.
    tokio::time::sleep(short + ctx.settings().timing_slack).await;
    let other = fresh(ctx, &q, options).await?;
    pop_none(
        &other,
        brief(ctx),
        "a message whose lease another handle extended",
    )
    .await?;
    close(other).await?;
    q.delete(&d.receipt).await?;
    Ok(())
}

/// Clause 3 across processes: once a message is delivered again to another
/// handle, the receipt of the earlier delivery, held by a handle that is
/// gone, settles nothing; the message is settled by its new receipt only.
pub async fn stale_receipt_of_a_closed_handle_is_refused(ctx: &Ctx) -> CaseResult {
    let options = QueueOptions::default()
        .lease(ctx.settings().short_lease)
        .max_attempts(None);
    let q = ctx.queue_with(options.clone()).await?;
    q.push(Message::new("fenced")).await?;
    let h = fresh(ctx, &q, options.clone()).await?;
    let old = pop_some(&h, patience(ctx), "the first delivery").await?;
    close(h).await?;
    let wait = ctx.settings().short_lease + patience(ctx) * 2;
    let again = pop_some(&q, wait, "the redelivery").await?;
    let late = fresh(ctx, &q, options).await?;
    match late.delete(&old.receipt).await {
        Err(QueueError::StaleReceipt { .. }) => {}
        other => {
            return Err(fail(format!(
                "deleting with the receipt of an earlier delivery from another handle: expected StaleReceipt, got {other:?}"
            )));
        }
    }
    close(late).await?;
    q.delete(&again.receipt).await?;
    Ok(())
}

/// Clause 5 across processes: deliveries made by different handles all
/// count toward `max_attempts`; the message is dead-lettered after exactly
/// that many, whoever delivered them.
pub async fn max_attempts_counts_every_handle(ctx: &Ctx) -> CaseResult {
    let options = QueueOptions::default().max_attempts(Some(3));
    let q = ctx.queue_with(options.clone()).await?;
    let id = q.push(Message::new("poison across processes")).await?;
    for want in 1..=3 {
        let h = fresh(ctx, &q, options.clone()).await?;
        let d = pop_some(&h, patience(ctx), "a delivery of the poison message").await?;
        ensure_eq!(d.attempt, want);
        h.nack(&d.receipt, Duration::ZERO).await?;
        close(h).await?;
    }
    let h = fresh(ctx, &q, options.clone()).await?;
    pop_none(&h, brief(ctx), "a message past max_attempts").await?;
    close(h).await?;
    let h = fresh(ctx, &q, options).await?;
    let mut listed = Vec::new();
    let deadline = tokio::time::Instant::now() + patience(ctx);
    while listed.len() != 1 && tokio::time::Instant::now() < deadline {
        listed = h.dead_letters(10).await?;
        if listed.len() != 1 {
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
    ensure_eq!(listed.len(), 1, "the poison message in the dead letters");
    ensure_eq!(listed[0].message.id, id);
    ensure_eq!(listed[0].attempts, 3, "attempts made by three handles");
    Ok(())
}

/// Clause 9 across processes: what one handle did, a second handle's
/// `stats` shows: exactly where `exact_stats` holds, eventually otherwise.
pub async fn stats_agree_between_handles(ctx: &Ctx) -> CaseResult {
    let q = ctx.queue().await?;
    let h = fresh(ctx, &q, QueueOptions::default()).await?;
    for i in 0..3 {
        h.push(Message::new(format!("counted {i}"))).await?;
    }
    let d = pop_some(&h, patience(ctx), "one of three").await?;
    let observer = fresh(ctx, &q, QueueOptions::default()).await?;
    let exact = observer.capabilities().exact_stats;
    // Approximate stats must still count the ready messages; a lease held
    // by another process may or may not show as in flight.
    let check = |observer: Queue| async move {
        let s = observer.stats().await?;
        let right = s.depth == 2 && (s.in_flight == 1 || (!exact && s.in_flight == 0));
        Ok::<_, crate::CaseError>(
            (!right).then(|| format!("ready {} in flight {} (want 2 and 1)", s.depth, s.in_flight)),
        )
    };
    if exact {
        if let Some(why) = check(observer.clone()).await? {
            return Err(fail(format!("another handle's exact stats: {why}")));
        }
    } else {
        eventually(patience(ctx) * 2, || check(observer.clone())).await?;
    }
    h.delete(&d.receipt).await?;
    close(h).await?;
    close(observer).await?;
    Ok(())
}
