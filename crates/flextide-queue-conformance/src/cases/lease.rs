//! Clause 2 (leases): a delivered message is invisible to everyone else until
//! its lease ends or it is settled; then it comes back with attempt + 1.

use std::time::Duration;

use flextide_queue_core::{Message, QueueOptions};
use tokio::time::Instant;

use crate::{
    Case, CaseResult, Ctx,
    cases::{
        case, need,
        support::{brief, delay_unit, patience, pop_none, pop_some, sleep_past_lease},
    },
    ensure, ensure_eq,
};

pub(crate) fn cases() -> Vec<Case> {
    vec![
        case!(
            "lease::leased_message_is_invisible",
            leased_message_is_invisible
        ),
        case!("lease::expired_lease_redelivers", expired_lease_redelivers),
        case!(
            "lease::deleted_message_stays_deleted",
            deleted_message_stays_deleted
        ),
        case!(
            "lease::lease_deadline_matches_lease",
            lease_deadline_matches_lease
        ),
        case!(
            "lease::extend_keeps_message_invisible",
            extend_keeps_message_invisible,
            |c, _| need(c.extend_lease, "needs extend_lease")
        ),
        case!("lease::nack_redelivers_at_once", nack_redelivers_at_once),
        case!("lease::attempts_count_up", attempts_count_up),
        case!(
            "lease::nack_with_delay_hides_message",
            nack_with_delay_hides_message,
            |c, _| need(c.delay, "needs delay")
        ),
    ]
}

/// Clause 2: a leased message is delivered neither by a second pop on the
/// same handle nor by a pop on another handle of the queue.
pub async fn leased_message_is_invisible(ctx: &Ctx) -> CaseResult {
    let q = ctx.queue().await?;
    let other = ctx.reopen(&q, QueueOptions::default()).await?;
    q.push(Message::new("only one")).await?;
    let d = pop_some(&q, patience(ctx), "the pushed message").await?;
    pop_none(&q, brief(ctx), "the only message is leased (same handle)").await?;
    pop_none(
        &other,
        brief(ctx),
        "the only message is leased (second handle)",
    )
    .await?;
    q.delete(&d.receipt).await?;
    Ok(())
}

/// Clause 2: when the lease ends unsettled, the next pop delivers the
/// message again with attempt + 1 and a new receipt.
pub async fn expired_lease_redelivers(ctx: &Ctx) -> CaseResult {
    let q = ctx.short_lease_queue(None).await?;
    let msg = Message::new("expire me");
    q.push(msg.clone()).await?;
    let first = pop_some(&q, patience(ctx), "first delivery").await?;
    ensure_eq!(first.attempt, 1);
    sleep_past_lease(ctx, &first).await;
    let second = pop_some(&q, patience(ctx), "redelivery after the lease expired").await?;
    ensure_eq!(second.message.id, msg.id, "the same message comes back");
    ensure_eq!(second.message.payload, msg.payload);
    ensure_eq!(second.attempt, 2, "a redelivery counts as the next attempt");
    ensure!(
        second.receipt != first.receipt,
        "a redelivery must carry a new receipt"
    );
    q.delete(&second.receipt).await?;
    Ok(())
}

/// Clauses 1 and 2: a deleted message is not delivered again, even after its
/// lease would have ended.
pub async fn deleted_message_stays_deleted(ctx: &Ctx) -> CaseResult {
    let q = ctx.short_lease_queue(None).await?;
    q.push(Message::new("delete me")).await?;
    let d = pop_some(&q, patience(ctx), "the pushed message").await?;
    q.delete(&d.receipt).await?;
    sleep_past_lease(ctx, &d).await;
    pop_none(
        &q,
        brief(ctx),
        "the message was deleted before its lease ended",
    )
    .await
}

/// Terms: a delivery's lease deadline is the queue's lease from the pop.
pub async fn lease_deadline_matches_lease(ctx: &Ctx) -> CaseResult {
    let lease = Duration::from_secs(30);
    let slack = ctx.settings().timing_slack;
    let q = ctx.queue_with(QueueOptions::default().lease(lease)).await?;
    q.push(Message::new("x")).await?;
    let before = Instant::now();
    let d = pop_some(&q, patience(ctx), "the pushed message").await?;
    let after = Instant::now();
    ensure!(
        d.lease_deadline + slack >= before + lease && d.lease_deadline <= after + lease + slack,
        "lease deadline is {:?} after the pop started; the lease is {lease:?}",
        d.lease_deadline.saturating_duration_since(before)
    );
    q.delete(&d.receipt).await?;
    Ok(())
}

/// Clause 2: `extend(receipt, by)` keeps the message invisible past the end
/// of its original lease, and the receipt still settles it.
pub async fn extend_keeps_message_invisible(ctx: &Ctx) -> CaseResult {
    let short = ctx.settings().short_lease;
    let slack = ctx.settings().timing_slack;
    let q = ctx.short_lease_queue(None).await?;
    q.push(Message::new("extend me")).await?;
    let d = pop_some(&q, patience(ctx), "the pushed message").await?;
    q.extend(&d.receipt, short * 3 + slack * 4).await?;
    // Past the original lease, well inside the extended one.
    sleep_past_lease(ctx, &d).await;
    pop_none(&q, slack, "the lease was extended").await?;
    q.delete(&d.receipt).await?;
    pop_none(&q, brief(ctx), "deleted after the extension").await
}

/// Clause 2: `nack(receipt, 0)` makes the message available at once (not at
/// the end of its 30 s lease), delivered with attempt + 1.
pub async fn nack_redelivers_at_once(ctx: &Ctx) -> CaseResult {
    let q = ctx.queue().await?;
    let other = ctx.reopen(&q, QueueOptions::default()).await?;
    let msg = Message::new("nack me");
    q.push(msg.clone()).await?;
    let first = pop_some(&q, patience(ctx), "first delivery").await?;
    q.nack(&first.receipt, Duration::ZERO).await?;
    // The lease is 30 s, longer than `patience`: only the nack can release it.
    let second = pop_some(&other, patience(ctx), "redelivery after nack(0)").await?;
    ensure_eq!(second.message.id, msg.id);
    ensure_eq!(second.attempt, 2, "a nacked delivery counts as an attempt");
    ensure!(
        second.receipt != first.receipt,
        "a redelivery must carry a new receipt"
    );
    other.delete(&second.receipt).await?;
    Ok(())
}

/// Terms: each nack is followed by a delivery with attempt + 1; with
/// `max_attempts: None` nothing is dead-lettered on its own.
pub async fn attempts_count_up(ctx: &Ctx) -> CaseResult {
    let q = ctx
        .queue_with(QueueOptions::default().max_attempts(None))
        .await?;
    let msg = Message::new("again and again");
    q.push(msg.clone()).await?;
    for attempt in 1..=4 {
        let d = pop_some(&q, patience(ctx), &format!("delivery {attempt}")).await?;
        ensure_eq!(d.message.id, msg.id);
        ensure_eq!(d.attempt, attempt, "attempt of delivery {attempt}");
        if attempt == 4 {
            q.delete(&d.receipt).await?;
        } else {
            q.nack(&d.receipt, Duration::ZERO).await?;
        }
    }
    if ctx.capabilities().dead_letters {
        let dead = q.dead_letters(10).await?;
        ensure!(
            dead.is_empty(),
            "max_attempts None must not dead-letter, found {}",
            dead.len()
        );
    }
    Ok(())
}

/// Clause 2: `nack(receipt, delay)` hides the message for `delay`, then it is
/// delivered again with attempt + 1.
pub async fn nack_with_delay_hides_message(ctx: &Ctx) -> CaseResult {
    let delay = delay_unit(ctx);
    let slack = ctx.settings().timing_slack;
    let q = ctx.queue().await?;
    q.push(Message::new("later")).await?;
    let first = pop_some(&q, patience(ctx), "first delivery").await?;
    let nacked_at = Instant::now();
    q.nack(&first.receipt, delay).await?;
    pop_none(&q, delay.saturating_sub(slack), "nacked with a delay").await?;
    let second = pop_some(&q, patience(ctx) + delay, "redelivery after the nack delay").await?;
    let took = nacked_at.elapsed();
    ensure!(
        took + Duration::from_millis(20) >= delay,
        "delivered {took:?} after a nack with delay {delay:?}"
    );
    ensure!(
        took <= delay + slack * 3,
        "delivered only {took:?} after a nack with delay {delay:?}"
    );
    ensure_eq!(second.attempt, 2);
    q.delete(&second.receipt).await?;
    Ok(())
}
