//! Clause 9, last point: asking for something the backend lacks fails with
//! `Unsupported`, never silently. Each case runs only where the capability
//! is absent.

use std::time::Duration;

use flextide_queue_core::{Capabilities, Message, QueueError, Replay};

use crate::{
    Case, CaseResult, Ctx, HarnessSettings,
    cases::{
        case, lacking,
        support::{Queue, brief, describe, fail, patience, pop_none, pop_some},
    },
};

pub(crate) fn cases() -> Vec<Case> {
    vec![
        case!("unsupported::extend", extend, |c, _| lacking(
            c.extend_lease,
            "the backend has extend_lease"
        )),
        case!("unsupported::dead_letter", dead_letter, no_dead_letters),
        case!("unsupported::dead_letters", dead_letters, no_dead_letters),
        case!(
            "unsupported::replay_dead_letters",
            replay_dead_letters,
            no_dead_letters
        ),
        case!(
            "unsupported::purge_dead_letters",
            purge_dead_letters,
            no_dead_letters
        ),
        case!(
            "unsupported::delete_dead_letters",
            delete_dead_letters,
            |c, _| lacking(c.delete_dead_letters, "the backend has delete_dead_letters")
        ),
        case!("unsupported::release", release, |c, _| lacking(
            c.release,
            "the backend has release"
        )),
        case!("unsupported::drop_queue", drop_queue, |c, _| lacking(
            c.drop_queue,
            "the backend has drop_queue"
        )),
        case!("unsupported::peek", peek, |c, _| lacking(
            c.peek,
            "the backend has peek"
        )),
        case!("unsupported::purge", purge, |c, _| lacking(
            c.purge,
            "the backend has purge"
        )),
        case!(
            "unsupported::push_with_priority",
            push_with_priority,
            |c, _| lacking(c.priority, "the backend has priority")
        ),
        case!("unsupported::push_with_delay", push_with_delay, |c, _| {
            lacking(c.delay, "the backend has delay")
        }),
        case!(
            "unsupported::push_with_ordering_key",
            push_with_ordering_key,
            |c, _| lacking(c.ordering_key, "the backend has ordering_key")
        ),
        case!(
            "unsupported::push_with_dedup_id",
            push_with_dedup_id,
            |c, _| lacking(c.dedup, "the backend has dedup")
        ),
    ]
}

fn no_dead_letters(c: &Capabilities, _: &HarnessSettings) -> Option<&'static str> {
    lacking(c.dead_letters, "the backend has dead_letters")
}

/// Fails unless `outcome` is `Unsupported`.
fn ensure_unsupported<T: std::fmt::Debug>(
    outcome: Result<T, QueueError>,
    what: &str,
) -> CaseResult {
    match outcome {
        Err(QueueError::Unsupported { .. }) => Ok(()),
        other => Err(fail(format!(
            "{what}: expected Unsupported, got {}",
            describe(&other)
        ))),
    }
}

/// Pushes `msg`, expecting `Unsupported`, and checks nothing was enqueued.
async fn push_refused(ctx: &Ctx, msg: Message, what: &str) -> CaseResult {
    let q = ctx.queue().await?;
    ensure_unsupported(q.push(msg).await, what)?;
    pop_none(&q, brief(ctx), "a refused push must enqueue nothing").await
}

/// Runs `op` on a delivery's receipt, expecting `Unsupported`, then checks
/// the delivery is intact (its receipt still deletes it).
async fn on_delivery<F>(ctx: &Ctx, what: &str, op: F) -> CaseResult
where
    F: for<'a> FnOnce(
        &'a Queue,
        &'a flextide_queue_core::Receipt,
    ) -> futures::future::BoxFuture<'a, Result<(), QueueError>>,
{
    let q = ctx.queue().await?;
    q.push(Message::new("x")).await?;
    let d = pop_some(&q, patience(ctx), "the pushed message").await?;
    ensure_unsupported(op(&q, &d.receipt).await, what)?;
    q.delete(&d.receipt).await?;
    Ok(())
}

/// Without `extend_lease`, `extend` fails with `Unsupported`.
pub async fn extend(ctx: &Ctx) -> CaseResult {
    on_delivery(ctx, "extend", |q, r| q.extend(r, Duration::from_secs(60))).await
}

/// Without `release`, `release` fails with `Unsupported` and leaves the
/// delivery as it was.
pub async fn release(ctx: &Ctx) -> CaseResult {
    on_delivery(ctx, "release", |q, r| q.release(r)).await
}

/// Without `drop_queue`, `drop_queue` fails with `Unsupported` and the
/// queue keeps its messages.
pub async fn drop_queue(ctx: &Ctx) -> CaseResult {
    let q = ctx.queue().await?;
    q.push(Message::new("kept")).await?;
    ensure_unsupported(q.drop_queue().await, "drop_queue")?;
    let d = pop_some(&q, patience(ctx), "the message pushed before drop_queue").await?;
    q.delete(&d.receipt).await?;
    Ok(())
}

/// Without `dead_letters`, `dead_letter` fails with `Unsupported` and leaves
/// the delivery as it was.
pub async fn dead_letter(ctx: &Ctx) -> CaseResult {
    on_delivery(ctx, "dead_letter", |q, r| q.dead_letter(r, "poison")).await
}

/// Without `dead_letters`, `dead_letters` fails with `Unsupported`.
pub async fn dead_letters(ctx: &Ctx) -> CaseResult {
    let q = ctx.queue().await?;
    ensure_unsupported(q.dead_letters(10).await, "dead_letters")
}

/// Without `dead_letters`, `replay_dead_letters` fails with `Unsupported`.
pub async fn replay_dead_letters(ctx: &Ctx) -> CaseResult {
    let q = ctx.queue().await?;
    ensure_unsupported(
        q.replay_dead_letters(Replay::All).await,
        "replay_dead_letters",
    )
}

/// Without `dead_letters`, `purge_dead_letters` fails with `Unsupported`.
pub async fn purge_dead_letters(ctx: &Ctx) -> CaseResult {
    let q = ctx.queue().await?;
    ensure_unsupported(q.purge_dead_letters().await, "purge_dead_letters")
}

/// Without `delete_dead_letters`, deleting chosen dead letters fails with
/// `Unsupported`.
pub async fn delete_dead_letters(ctx: &Ctx) -> CaseResult {
    let q = ctx.queue().await?;
    ensure_unsupported(
        q.delete_dead_letters(&[flextide_queue_core::MessageId::new("x")])
            .await,
        "delete_dead_letters",
    )
}

/// Without `peek`, `peek` fails with `Unsupported`.
pub async fn peek(ctx: &Ctx) -> CaseResult {
    let q = ctx.queue().await?;
    q.push(Message::new("x")).await?;
    ensure_unsupported(q.peek(10).await, "peek")
}

/// Without `purge`, `purge` fails with `Unsupported` and removes nothing.
pub async fn purge(ctx: &Ctx) -> CaseResult {
    let q = ctx.queue().await?;
    let id = q.push(Message::new("keep me")).await?;
    ensure_unsupported(q.purge().await, "purge")?;
    let d = pop_some(&q, patience(ctx), "the message a refused purge must keep").await?;
    if d.message.id != id {
        return Err(fail("another message was delivered"));
    }
    q.delete(&d.receipt).await?;
    Ok(())
}

/// Without `priority`, a push with priority above 0 fails with `Unsupported`.
pub async fn push_with_priority(ctx: &Ctx) -> CaseResult {
    push_refused(
        ctx,
        Message::new("p").with_priority(5),
        "push with priority 5",
    )
    .await
}

/// Without `delay`, a push with a delay fails with `Unsupported`.
pub async fn push_with_delay(ctx: &Ctx) -> CaseResult {
    push_refused(
        ctx,
        Message::new("d").with_delay(Duration::from_secs(5)),
        "push with a delay",
    )
    .await
}

/// Without `ordering_key`, a push with an ordering key fails with `Unsupported`.
pub async fn push_with_ordering_key(ctx: &Ctx) -> CaseResult {
    push_refused(
        ctx,
        Message::new("k").with_ordering_key("k"),
        "push with an ordering key",
    )
    .await
}

/// Without `dedup`, a push with a dedup id fails with `Unsupported`.
pub async fn push_with_dedup_id(ctx: &Ctx) -> CaseResult {
    push_refused(
        ctx,
        Message::new("d").with_dedup_id("d"),
        "push with a dedup id",
    )
    .await
}
