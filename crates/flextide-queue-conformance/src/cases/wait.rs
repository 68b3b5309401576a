//! Clause 6 (waiting): an empty pop waits its full time, no less and not much
//! more; a message arriving during the wait is returned promptly.

use std::time::Duration;

use flextide_queue_core::{Message, QueueOptions};
use tokio::time::Instant;

use crate::{
    Case, CaseResult, Ctx,
    cases::{
        case,
        support::{Queue, fail, whole_secs},
    },
    ensure, ensure_eq,
};

pub(crate) fn cases() -> Vec<Case> {
    vec![
        case!("wait::empty_pop_waits_full_time", empty_pop_waits_full_time),
        case!(
            "wait::empty_pop_batch_waits_full_time",
            empty_pop_batch_waits_full_time
        ),
        case!("wait::zero_wait_returns_at_once", zero_wait_returns_at_once),
        case!(
            "wait::push_during_wait_is_returned_promptly",
            push_during_wait_is_returned_promptly
        ),
        case!(
            "wait::push_on_other_handle_wakes_waiter",
            push_on_other_handle_wakes_waiter
        ),
        case!(
            "wait::push_during_pop_batch_wait_is_returned_promptly",
            push_during_pop_batch_wait_is_returned_promptly
        ),
    ]
}

/// Timing tolerance below the wait: backends computing deadlines in whole
/// milliseconds may return a hair early.
const EARLY: Duration = Duration::from_millis(10);

/// A wait for the empty-pop cases: at least 2 s, in whole seconds (SQS long
/// polling counts seconds).
fn empty_wait(ctx: &Ctx) -> Duration {
    whole_secs(ctx.settings().timing_slack.max(Duration::from_secs(2)))
}

/// Fails unless `took` lies within `[wait, wait + slack]`.
fn ensure_waited(ctx: &Ctx, took: Duration, wait: Duration) -> CaseResult {
    let slack = ctx.settings().timing_slack;
    ensure!(
        took + EARLY >= wait,
        "an empty pop with wait {wait:?} returned after only {took:?}"
    );
    ensure!(
        took <= wait + slack,
        "an empty pop with wait {wait:?} returned after {took:?} (slack {slack:?})"
    );
    Ok(())
}

/// Clause 6: `pop(wait)` on an empty queue returns `None` no earlier than
/// `wait` and within `wait` plus the slack.
pub async fn empty_pop_waits_full_time(ctx: &Ctx) -> CaseResult {
    let q = ctx.queue().await?;
    let wait = empty_wait(ctx);
    let start = Instant::now();
    let got = q.pop(wait).await?;
    let took = start.elapsed();
    ensure!(got.is_none(), "pop on an empty queue delivered something");
    ensure_waited(ctx, took, wait)
}

/// Clause 6: `pop_batch(max, wait)` on an empty queue returns an empty vector
/// no earlier than `wait` and within `wait` plus the slack.
pub async fn empty_pop_batch_waits_full_time(ctx: &Ctx) -> CaseResult {
    let q = ctx.queue().await?;
    let wait = empty_wait(ctx);
    let start = Instant::now();
    let got = q.pop_batch(10, wait).await?;
    let took = start.elapsed();
    ensure!(
        got.is_empty(),
        "pop_batch on an empty queue delivered {}",
        got.len()
    );
    ensure_waited(ctx, took, wait)
}

/// Clause 6: `pop(0)` on an empty queue returns `None` at once.
pub async fn zero_wait_returns_at_once(ctx: &Ctx) -> CaseResult {
    let q = ctx.queue().await?;
    let start = Instant::now();
    let got = q.pop(Duration::ZERO).await?;
    let took = start.elapsed();
    ensure!(got.is_none(), "pop on an empty queue delivered something");
    ensure!(
        took <= ctx.settings().timing_slack,
        "pop(0) on an empty queue took {took:?}"
    );
    Ok(())
}

/// Pushes one message from another task after `after`, on `pusher`, while
/// `pop` waits on `waiter`; checks the waiter gets it promptly.
async fn woken_by_push(ctx: &Ctx, waiter: Queue, pusher: Queue, batch: bool) -> CaseResult {
    let slack = ctx.settings().timing_slack;
    let after = Duration::from_millis(500);
    let wait = (after + slack * 4).max(Duration::from_secs(5));
    let msg = Message::new("wake up");
    let id = msg.id.clone();
    let push = tokio::spawn(async move {
        tokio::time::sleep(after).await;
        pusher.push(msg).await
    });
    let start = Instant::now();
    let got = if batch {
        waiter.pop_batch(10, wait).await?
    } else {
        waiter.pop(wait).await?.into_iter().collect()
    };
    let took = start.elapsed();
    push.await
        .map_err(|e| fail(format!("the pushing task failed: {e}")))??;
    ensure_eq!(
        got.len(),
        1,
        "deliveries of the message pushed during the wait (wait {wait:?}, took {took:?})"
    );
    ensure_eq!(got[0].message.id, id);
    ensure!(
        took <= after + slack * 2,
        "the message pushed {after:?} into a {wait:?} wait was returned only after {took:?}"
    );
    waiter.delete(&got[0].receipt).await?;
    Ok(())
}

/// Clause 6: a message pushed by another task on the same handle during a
/// 5 s wait is returned promptly, not at the end of the wait.
pub async fn push_during_wait_is_returned_promptly(ctx: &Ctx) -> CaseResult {
    let q = ctx.queue().await?;
    woken_by_push(ctx, q.clone(), q, false).await
}

/// Clause 6: a message pushed on another handle (another connection) during
/// a wait is returned promptly.
pub async fn push_on_other_handle_wakes_waiter(ctx: &Ctx) -> CaseResult {
    let q = ctx.queue().await?;
    let other = ctx.reopen(&q, QueueOptions::default()).await?;
    woken_by_push(ctx, q, other, false).await
}

/// Clause 6: `pop_batch` waiting on an empty queue returns a message pushed
/// on another handle during the wait promptly.
pub async fn push_during_pop_batch_wait_is_returned_promptly(ctx: &Ctx) -> CaseResult {
    let q = ctx.queue().await?;
    let other = ctx.reopen(&q, QueueOptions::default()).await?;
    woken_by_push(ctx, q, other, true).await
}
