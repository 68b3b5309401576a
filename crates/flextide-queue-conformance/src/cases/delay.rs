//! Clause 9 (delay): a delayed message is not delivered before its delay and
//! is delivered soon after; a delay beyond `max_delay` is refused.

use std::time::Duration;

use flextide_queue_core::{Capabilities, Message, QueueError};
use tokio::time::Instant;

use crate::{
    Case, CaseResult, Ctx, HarnessSettings,
    cases::{
        case, need,
        support::{brief, delay_unit, fail, patience, pop_none, pop_some},
    },
    ensure, ensure_eq,
};

pub(crate) fn cases() -> Vec<Case> {
    vec![
        case!(
            "delay::delayed_message_waits_its_delay",
            delayed_message_waits_its_delay,
            delay
        ),
        case!(
            "delay::delayed_message_does_not_block_others",
            delayed_message_does_not_block_others,
            delay
        ),
        case!(
            "delay::delay_beyond_max_is_refused",
            delay_beyond_max_is_refused,
            bounded
        ),
        case!(
            "delay::delay_of_max_is_accepted",
            delay_of_max_is_accepted,
            bounded
        ),
    ]
}

fn delay(c: &Capabilities, _: &HarnessSettings) -> Option<&'static str> {
    need(c.delay, "needs delay")
}

fn bounded(c: &Capabilities, _: &HarnessSettings) -> Option<&'static str> {
    need(
        c.delay && c.max_delay.is_some(),
        "needs delay with a max_delay",
    )
}

/// Clause 9: a message pushed with a delay is not delivered before the delay
/// has passed, and is delivered soon after (to a pop already waiting).
pub async fn delayed_message_waits_its_delay(ctx: &Ctx) -> CaseResult {
    let delay = delay_unit(ctx);
    let slack = ctx.settings().timing_slack;
    let q = ctx.queue().await?;
    let pushed_at = Instant::now();
    let id = q.push(Message::new("later").with_delay(delay)).await?;
    pop_none(
        &q,
        delay.saturating_sub(slack),
        "the message's delay has not passed",
    )
    .await?;
    let d = pop_some(
        &q,
        delay + patience(ctx),
        "the delayed message after its delay",
    )
    .await?;
    let took = pushed_at.elapsed();
    ensure_eq!(d.message.id, id);
    ensure_eq!(d.attempt, 1);
    ensure!(
        took + Duration::from_millis(20) >= delay,
        "delivered {took:?} after a push with delay {delay:?}"
    );
    ensure!(
        took <= delay + slack * 3,
        "delivered only {took:?} after a push with delay {delay:?}"
    );
    q.delete(&d.receipt).await?;
    Ok(())
}

/// Clause 9: a delayed message does not hold up messages pushed after it.
pub async fn delayed_message_does_not_block_others(ctx: &Ctx) -> CaseResult {
    let q = ctx.queue().await?;
    q.push(Message::new("much later").with_delay(Duration::from_secs(120)))
        .await?;
    let now = q.push(Message::new("now")).await?;
    let d = pop_some(&q, patience(ctx), "the undelayed message").await?;
    ensure_eq!(
        d.message.id,
        now,
        "the delayed message must not be delivered"
    );
    pop_none(&q, brief(ctx), "only the delayed message is left").await?;
    q.delete(&d.receipt).await?;
    Ok(())
}

/// Clause 9: a delay beyond `max_delay` fails with `InvalidMessage` and
/// nothing is enqueued.
pub async fn delay_beyond_max_is_refused(ctx: &Ctx) -> CaseResult {
    let Some(max) = ctx.capabilities().max_delay else {
        return Err(fail("no max_delay"));
    };
    let q = ctx.queue().await?;
    match q
        .push(Message::new("too late").with_delay(max + Duration::from_secs(1)))
        .await
    {
        Err(QueueError::InvalidMessage { .. }) => {}
        Err(e) => return Err(fail(format!("expected InvalidMessage, got error: {e}"))),
        Ok(id) => {
            return Err(fail(format!(
                "a delay beyond max_delay was accepted as {id}"
            )));
        }
    }
    if ctx.capabilities().exact_stats {
        let stats = q.stats().await?;
        ensure_eq!(
            stats.delayed + stats.depth,
            0,
            "the refused message must not be stored"
        );
    }
    Ok(())
}

/// Clause 9: a delay of exactly `max_delay` is accepted.
pub async fn delay_of_max_is_accepted(ctx: &Ctx) -> CaseResult {
    let Some(max) = ctx.capabilities().max_delay else {
        return Err(fail("no max_delay"));
    };
    let q = ctx.queue().await?;
    q.push(Message::new("as late as allowed").with_delay(max))
        .await?;
    pop_none(&q, brief(ctx), "the message is delayed").await
}
