//! The queue lifecycle: `drop_queue` removes everything a queue created on
//! its backend (checked with the broker's own tools through
//! [`Harness::leftovers`](crate::Harness::leftovers)), dropping a queue that
//! never existed succeeds, a queue opened again after a drop is empty, and
//! read-only calls on a name never written to create nothing.

use std::time::Duration;

use flextide_queue_core::{Capabilities, Message, QueueOptions};

use crate::{
    Case, CaseResult, Ctx, HarnessSettings,
    cases::{
        case,
        support::{brief, fail, patience, pop_none, pop_some},
    },
    ensure, ensure_eq,
};

pub(crate) fn cases() -> Vec<Case> {
    vec![
        case!(
            "lifecycle::drop_removes_everything",
            drop_removes_everything,
            drop_and_list
        ),
        case!(
            "lifecycle::drop_of_a_never_created_queue_is_ok",
            drop_of_a_never_created_queue_is_ok,
            drop
        ),
        case!(
            "lifecycle::reopen_after_drop_is_empty",
            reopen_after_drop_is_empty,
            drop
        ),
        case!(
            "lifecycle::read_only_calls_create_nothing",
            read_only_calls_create_nothing,
            list
        ),
    ]
}

const NO_DROP: &str = "the backend has no drop_queue (Capabilities::drop_queue)";
const NO_LIST: &str =
    "the harness cannot list what a queue left on the broker (HarnessSettings::lists_leftovers)";

fn drop(c: &Capabilities, _: &HarnessSettings) -> Option<&'static str> {
    (!c.drop_queue).then_some(NO_DROP)
}

fn list(_: &Capabilities, s: &HarnessSettings) -> Option<&'static str> {
    (!s.lists_leftovers).then_some(NO_LIST)
}

fn drop_and_list(c: &Capabilities, s: &HarnessSettings) -> Option<&'static str> {
    drop(c, s).or_else(|| list(c, s))
}

/// `drop_queue` leaves nothing behind: waiting, leased, delayed and
/// dead-lettered messages and every helper structure go, as the broker's own
/// tools show.
pub async fn drop_removes_everything(ctx: &Ctx) -> CaseResult {
    let caps = *ctx.capabilities();
    let q = ctx
        .queue_with(QueueOptions::default().max_attempts(Some(3)))
        .await?;
    q.push_batch(vec![
        Message::new("a"),
        Message::new("b"),
        Message::new("c"),
    ])
    .await?;
    if caps.delay {
        let delay = Duration::from_secs(5).min(caps.max_delay.unwrap_or(Duration::MAX));
        q.push(Message::new("later").with_delay(delay)).await?;
    }
    let leased = pop_some(&q, patience(ctx), "a message to lease").await?;
    if caps.dead_letters {
        let d = pop_some(&q, patience(ctx), "a message to dead-letter").await?;
        q.dead_letter(&d.receipt, "lifecycle").await?;
    }
    if caps.delay {
        let d = pop_some(&q, patience(ctx), "a message to nack with a delay").await?;
        q.nack(&d.receipt, Duration::from_secs(5)).await?;
    }
    ensure!(
        !ctx.leftovers(q.queue_name()).await?.is_empty(),
        "the harness lists nothing for a queue holding messages: Harness::leftovers looks in the wrong place"
    );
    q.drop_queue().await?;
    let left = ctx.leftovers(q.queue_name()).await?;
    ensure!(
        left.is_empty(),
        "after drop_queue the backend still holds {left:?}"
    );
    // The dropping handle's own delivery must not bring anything back.
    let _ = q.delete(&leased.receipt).await;
    let _ = q.close().await;
    let left = ctx.leftovers(q.queue_name()).await?;
    ensure!(
        left.is_empty(),
        "after drop_queue and closing the handle the backend holds {left:?}"
    );
    Ok(())
}

/// Dropping a queue that was never written to succeeds, twice.
pub async fn drop_of_a_never_created_queue_is_ok(ctx: &Ctx) -> CaseResult {
    let q = ctx.queue().await?;
    q.drop_queue().await?;
    q.drop_queue().await?;
    if ctx.settings().lists_leftovers {
        let left = ctx.leftovers(q.queue_name()).await?;
        ensure!(
            left.is_empty(),
            "after drop_queue the backend holds {left:?}"
        );
    }
    Ok(())
}

/// A queue opened again after a drop is empty, and works.
pub async fn reopen_after_drop_is_empty(ctx: &Ctx) -> CaseResult {
    let q = ctx.queue().await?;
    q.push_batch(vec![Message::new("old 1"), Message::new("old 2")])
        .await?;
    if ctx.capabilities().dead_letters {
        let d = pop_some(&q, patience(ctx), "a message to dead-letter").await?;
        q.dead_letter(&d.receipt, "lifecycle").await?;
    }
    q.drop_queue().await?;
    let _ = q.close().await;
    let again = ctx.reopen(&q, QueueOptions::default()).await?;
    let s = again.stats().await?;
    ensure_eq!(
        (s.depth, s.in_flight, s.delayed, s.dead_lettered),
        (0, 0, 0, 0),
        "stats of a queue opened again after drop_queue"
    );
    if ctx.capabilities().dead_letters {
        let dead = again.dead_letters(10).await?;
        ensure!(
            dead.is_empty(),
            "dead letters survived drop_queue: {dead:?}"
        );
    }
    pop_none(&again, brief(ctx), "a message pushed before drop_queue").await?;
    again.push(Message::new("new")).await?;
    let d = pop_some(&again, patience(ctx), "the message pushed after the drop").await?;
    if d.message.payload.as_ref() != b"new" {
        return Err(fail(format!(
            "expected the message pushed after the drop, got {:?}",
            d.message.payload
        )));
    }
    again.delete(&d.receipt).await?;
    Ok(())
}

/// `stats`, `peek` and `dead_letters` on a name never written to create
/// nothing on the broker: an operator's look at a queue costs no storage.
/// Where the harness's `open` has to create the queue
/// ([`HarnessSettings::open_creates`]), the calls add nothing to it.
pub async fn read_only_calls_create_nothing(ctx: &Ctx) -> CaseResult {
    let caps = *ctx.capabilities();
    let q = ctx.queue().await?;
    let opened = ctx.leftovers(q.queue_name()).await?;
    if !ctx.settings().open_creates {
        ensure!(
            opened.is_empty(),
            "opening a queue created {opened:?} (set HarnessSettings::open_creates only where the backend cannot open a missing queue)"
        );
    }
    let s = q.stats().await?;
    ensure_eq!(
        (s.depth, s.in_flight, s.delayed, s.dead_lettered),
        (0, 0, 0, 0),
        "stats of a queue never written to"
    );
    q.stats().await?;
    if caps.peek {
        ensure!(
            q.peek(10).await?.is_empty(),
            "peek of a queue never written to"
        );
    }
    if caps.dead_letters {
        ensure!(
            q.dead_letters(10).await?.is_empty(),
            "dead letters of a queue never written to"
        );
    }
    let left = ctx.leftovers(q.queue_name()).await?;
    ensure!(
        left == opened,
        "read-only calls on a fresh queue created {left:?} (after opening: {opened:?})"
    );
    Ok(())
}
