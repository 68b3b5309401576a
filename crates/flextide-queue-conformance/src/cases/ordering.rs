//! Clause 4 (ordering): with `fifo`, push order holds and a released head
//! keeps its place; with `ordering_key`, a key's messages go one at a time.

use std::{collections::HashSet, time::Duration};

use flextide_queue_core::{Capabilities, Message, MessageId};

use crate::{
    Case, CaseResult, Ctx, HarnessSettings,
    cases::{
        case, need,
        support::{
            brief, delay_unit, delete_all, drain, fail, id_set, patience, pop_none, pop_some,
            sleep_past_lease,
        },
    },
    ensure_eq,
};

pub(crate) fn cases() -> Vec<Case> {
    vec![
        case!(
            "ordering::fifo_keeps_push_order",
            fifo_keeps_push_order,
            fifo
        ),
        case!(
            "ordering::fifo_nacked_head_keeps_its_place",
            fifo_nacked_head_keeps_its_place,
            fifo
        ),
        case!(
            "ordering::fifo_expired_head_keeps_its_place",
            fifo_expired_head_keeps_its_place,
            fifo
        ),
        case!("ordering::key_one_at_a_time", key_one_at_a_time, keyed),
        case!(
            "ordering::key_nacked_head_comes_first",
            key_nacked_head_comes_first,
            keyed
        ),
        case!(
            "ordering::key_expired_head_comes_first",
            key_expired_head_comes_first,
            keyed
        ),
        case!(
            "ordering::key_blocked_by_delayed_nack",
            key_blocked_by_delayed_nack,
            |c, _| need(c.ordering_key && c.delay, "needs ordering_key and delay")
        ),
    ]
}

fn fifo(c: &Capabilities, _: &HarnessSettings) -> Option<&'static str> {
    need(c.fifo, "needs fifo")
}

fn keyed(c: &Capabilities, _: &HarnessSettings) -> Option<&'static str> {
    need(c.ordering_key, "needs ordering_key")
}

/// Pops one at a time and checks the ids come in exactly this order,
/// deleting each.
async fn expect_order(
    ctx: &Ctx,
    q: &crate::cases::support::Queue,
    ids: &[MessageId],
) -> CaseResult {
    for (i, id) in ids.iter().enumerate() {
        let d = pop_some(q, patience(ctx), &format!("message {i} in order")).await?;
        ensure_eq!(&d.message.id, id, "delivery {i} out of order");
        q.delete(&d.receipt).await?;
    }
    Ok(())
}

/// Clause 4 (`fifo`): messages pushed one by one, then in a batch, are
/// delivered in push order.
pub async fn fifo_keeps_push_order(ctx: &Ctx) -> CaseResult {
    let q = ctx.queue().await?;
    let mut ids = Vec::new();
    for i in 0..6 {
        ids.push(q.push(Message::new(format!("single-{i}"))).await?);
    }
    ids.extend(
        q.push_batch((0..6).map(|i| Message::new(format!("batch-{i}"))).collect())
            .await?,
    );
    expect_order(ctx, &q, &ids).await?;
    pop_none(&q, brief(ctx), "all were deleted").await
}

/// Clause 4 (`fifo`): a head nacked with no delay comes before the messages
/// pushed after it.
pub async fn fifo_nacked_head_keeps_its_place(ctx: &Ctx) -> CaseResult {
    let q = ctx.queue().await?;
    let ids = q
        .push_batch((0..3).map(|i| Message::new(format!("m{i}"))).collect())
        .await?;
    let head = pop_some(&q, patience(ctx), "the head").await?;
    ensure_eq!(head.message.id, ids[0]);
    q.nack(&head.receipt, Duration::ZERO).await?;
    let again = pop_some(&q, patience(ctx), "the nacked head").await?;
    ensure_eq!(again.message.id, ids[0], "the nacked head must come first");
    ensure_eq!(again.attempt, 2);
    q.delete(&again.receipt).await?;
    expect_order(ctx, &q, &ids[1..]).await
}

/// Clause 4 (`fifo`): a head whose lease expired comes before the messages
/// pushed after it.
pub async fn fifo_expired_head_keeps_its_place(ctx: &Ctx) -> CaseResult {
    let q = ctx.short_lease_queue(None).await?;
    let ids = q
        .push_batch((0..3).map(|i| Message::new(format!("m{i}"))).collect())
        .await?;
    let head = pop_some(&q, patience(ctx), "the head").await?;
    ensure_eq!(head.message.id, ids[0]);
    sleep_past_lease(ctx, &head).await;
    let again = pop_some(&q, patience(ctx), "the expired head").await?;
    ensure_eq!(again.message.id, ids[0], "the expired head must come first");
    ensure_eq!(again.attempt, 2);
    q.delete(&again.receipt).await?;
    expect_order(ctx, &q, &ids[1..]).await
}

/// Clause 4 (`ordering_key`): while key A's head is leased, A's next message
/// is not delivered but key B's and unkeyed messages are; once A's head is
/// deleted, A's next comes.
pub async fn key_one_at_a_time(ctx: &Ctx) -> CaseResult {
    let q = ctx.queue().await?;
    let a1 = Message::new("a1").with_ordering_key("A");
    let a2 = Message::new("a2").with_ordering_key("A");
    let b1 = Message::new("b1").with_ordering_key("B");
    let free = Message::new("no key");
    for m in [&a1, &a2, &b1, &free] {
        q.push(m.clone()).await?;
    }
    // The first delivery may take a while (a Kafka consumer joins its
    // group on its first pop); the rest are then available at once.
    let mut first = vec![pop_some(&q, patience(ctx), "a first delivery").await?];
    first.extend(drain(ctx, &q).await?);
    let want: HashSet<_> = [&a1, &b1, &free].iter().map(|m| m.id.clone()).collect();
    ensure_eq!(
        id_set(&first),
        want,
        "A's head, B's head and the unkeyed message, but not A's second"
    );
    let head = first
        .iter()
        .find(|d| d.message.id == a1.id)
        .ok_or_else(|| fail("A's head missing"))?;
    q.delete(&head.receipt).await?;
    let next = pop_some(
        &q,
        patience(ctx),
        "A's second message once its head was deleted",
    )
    .await?;
    ensure_eq!(next.message.id, a2.id);
    ensure_eq!(next.message.ordering_key.as_deref(), Some("A"));
    q.delete(&next.receipt).await?;
    let others: Vec<_> = first
        .into_iter()
        .filter(|d| d.message.id != a1.id)
        .collect();
    delete_all(&q, &others).await
}

/// Pushes A1 and A2 and takes A1; checks A2 stays blocked unless the lease
/// is too short to check that safely.
async fn keyed_pair(
    ctx: &Ctx,
    q: &crate::cases::support::Queue,
    check_blocked: bool,
) -> Result<(Message, Message, flextide_queue_core::Delivery), crate::CaseError> {
    let a1 = Message::new("a1").with_ordering_key("A");
    let a2 = Message::new("a2").with_ordering_key("A");
    q.push(a1.clone()).await?;
    q.push(a2.clone()).await?;
    let head = pop_some(q, patience(ctx), "A's head").await?;
    ensure_eq!(head.message.id, a1.id, "A's messages come in push order");
    if check_blocked {
        pop_none(q, brief(ctx), "A's second while A's head is leased").await?;
    }
    Ok((a1, a2, head))
}

/// Clause 4 (`ordering_key`): a nacked head is delivered again before the
/// key's next message.
pub async fn key_nacked_head_comes_first(ctx: &Ctx) -> CaseResult {
    let q = ctx.queue().await?;
    let (a1, a2, head) = keyed_pair(ctx, &q, true).await?;
    q.nack(&head.receipt, Duration::ZERO).await?;
    let again = pop_some(&q, patience(ctx), "A's nacked head").await?;
    ensure_eq!(
        again.message.id,
        a1.id,
        "the nacked head comes before A's next"
    );
    ensure_eq!(again.attempt, 2);
    pop_none(&q, brief(ctx), "A's second while A's head is leased again").await?;
    q.delete(&again.receipt).await?;
    expect_order(ctx, &q, &[a2.id]).await
}

/// Clause 4 (`ordering_key`): a head whose lease expired is delivered again
/// before the key's next message.
pub async fn key_expired_head_comes_first(ctx: &Ctx) -> CaseResult {
    let q = ctx.short_lease_queue(None).await?;
    let (a1, a2, head) = keyed_pair(ctx, &q, false).await?;
    sleep_past_lease(ctx, &head).await;
    let again = pop_some(&q, patience(ctx), "A's expired head").await?;
    ensure_eq!(
        again.message.id,
        a1.id,
        "the expired head comes before A's next"
    );
    ensure_eq!(again.attempt, 2);
    q.delete(&again.receipt).await?;
    expect_order(ctx, &q, &[a2.id]).await
}

/// Clause 4 (`ordering_key`): a head nacked with a delay still blocks its
/// key until it is delivered again.
pub async fn key_blocked_by_delayed_nack(ctx: &Ctx) -> CaseResult {
    let delay = delay_unit(ctx);
    let q = ctx.queue().await?;
    let (a1, a2, head) = keyed_pair(ctx, &q, true).await?;
    q.nack(&head.receipt, delay).await?;
    pop_none(
        &q,
        delay.saturating_sub(ctx.settings().timing_slack),
        "A's head is delayed by its nack",
    )
    .await?;
    let again = pop_some(&q, patience(ctx) + delay, "A's head after the nack delay").await?;
    ensure_eq!(
        again.message.id,
        a1.id,
        "the delayed head comes before A's next"
    );
    q.delete(&again.receipt).await?;
    expect_order(ctx, &q, &[a2.id]).await
}
