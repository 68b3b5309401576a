//! The optional operations where the backend claims them: `peek` and
//! `purge` (clause 9 and the trait's documentation); deduplication has its
//! own group, `dedup`.

use std::time::Duration;

use flextide_queue_core::{Message, QueueError};

use crate::{
    Case, CaseResult, Ctx,
    cases::{
        case, need,
        support::{
            brief, collect, delete_all, fail, id_set, patience, pop_none, pop_some,
            sleep_past_lease,
        },
    },
    ensure, ensure_eq,
};

pub(crate) fn cases() -> Vec<Case> {
    vec![
        case!(
            "optional::peek_lists_without_leasing",
            peek_lists_without_leasing,
            |c, _| need(c.peek, "needs peek")
        ),
        case!(
            "optional::purge_empties_queue_keeps_dead_letters",
            purge_empties_queue_keeps_dead_letters,
            |c, _| { need(c.purge, "needs purge") }
        ),
        case!(
            "optional::purge_removes_leased_redeliveries",
            purge_removes_leased_redeliveries,
            |c, _| need(c.purge, "needs purge")
        ),
    ]
}

/// `peek(limit)` lists up to `limit` waiting messages in delivery order
/// (push order with `fifo`), skips leased ones, and leases nothing.
pub async fn peek_lists_without_leasing(ctx: &Ctx) -> CaseResult {
    let fifo = ctx.capabilities().fifo;
    let q = ctx.queue().await?;
    let msgs: Vec<Message> = (0..3)
        .map(|i| Message::new(format!("peek-{i}")).with_header("i", i.to_string()))
        .collect();
    let ids = q.push_batch(msgs.clone()).await?;
    let seen = q.peek(10).await?;
    ensure_eq!(seen.len(), 3, "peek(10) of 3 waiting messages");
    for m in &seen {
        let Some(sent) = msgs.iter().find(|s| s.id == m.id) else {
            return Err(fail(format!("peek listed an unknown message {}", m.id)));
        };
        ensure_eq!(m.payload, sent.payload);
        ensure_eq!(m.headers, sent.headers);
    }
    if fifo {
        ensure_eq!(
            seen.iter().map(|m| m.id.clone()).collect::<Vec<_>>(),
            ids,
            "peek lists in push order"
        );
    }
    ensure_eq!(q.peek(2).await?.len(), 2, "peek(2)");
    let first = pop_some(&q, patience(ctx), "a message after peek").await?;
    ensure_eq!(first.attempt, 1, "peek must not count as a delivery");
    let rest = q.peek(10).await?;
    ensure_eq!(rest.len(), 2, "peek must not list the leased message");
    ensure!(
        rest.iter().all(|m| m.id != first.message.id),
        "peek listed the leased message"
    );
    let others = collect(ctx, &q, 2).await?;
    ensure_eq!(
        id_set(&others),
        rest.iter().map(|m| m.id.clone()).collect(),
        "peek listed what pop delivers"
    );
    q.delete(&first.receipt).await?;
    delete_all(&q, &others).await
}

/// `purge` deletes every waiting message, returns how many, and keeps the
/// dead letters.
pub async fn purge_empties_queue_keeps_dead_letters(ctx: &Ctx) -> CaseResult {
    let dead_letters = ctx.capabilities().dead_letters;
    let q = ctx.queue().await?;
    if dead_letters {
        q.push(Message::new("poison")).await?;
        let d = pop_some(&q, patience(ctx), "the message to dead-letter").await?;
        q.dead_letter(&d.receipt, "kept by purge").await?;
    }
    q.push_batch((0..3).map(|i| Message::new(format!("m{i}"))).collect())
        .await?;
    ensure_eq!(q.purge().await?, 3, "purged count");
    pop_none(&q, brief(ctx), "the queue was purged").await?;
    if dead_letters {
        ensure_eq!(
            q.dead_letters(10).await?.len(),
            1,
            "purge must keep the dead letters"
        );
    }
    let after = q.push(Message::new("after the purge")).await?;
    let d = pop_some(&q, patience(ctx), "a message pushed after the purge").await?;
    ensure_eq!(d.message.id, after);
    q.delete(&d.receipt).await?;
    Ok(())
}

/// `purge` also removes a leased message's future redelivery.
pub async fn purge_removes_leased_redeliveries(ctx: &Ctx) -> CaseResult {
    let q = ctx.short_lease_queue(None).await?;
    q.push(Message::new("leased")).await?;
    let d = pop_some(&q, patience(ctx), "the pushed message").await?;
    let purged = q.purge().await?;
    ensure!(
        purged <= 1,
        "purge of a queue with one message removed {purged}"
    );
    sleep_past_lease(ctx, &d).await;
    pop_none(&q, brief(ctx), "the leased message's redelivery was purged").await?;
    // The old receipt may or may not still settle; either is fine, but it
    // must not resurrect anything.
    match q.delete(&d.receipt).await {
        Ok(()) | Err(QueueError::StaleReceipt { .. } | QueueError::InvalidReceipt { .. }) => {}
        Err(e) => return Err(fail(format!("delete after purge failed oddly: {e}"))),
    }
    pop_none(&q, Duration::from_millis(100), "nothing after the purge").await
}
