//! Clause 4 and 9 (priority): among available messages, higher priority
//! comes first; within a priority, push order where `fifo` holds.

use std::time::Duration;

use flextide_queue_core::{Capabilities, Message};

use crate::{
    Case, CaseResult, Ctx, HarnessSettings,
    cases::{
        case, need,
        support::{brief, patience, pop_none, pop_some},
    },
    ensure, ensure_eq,
};

pub(crate) fn cases() -> Vec<Case> {
    vec![
        case!(
            "priority::higher_priority_first",
            higher_priority_first,
            prio
        ),
        case!(
            "priority::delay_beats_priority",
            delay_beats_priority,
            |c, _| need(c.priority && c.delay, "needs priority and delay")
        ),
    ]
}

fn prio(c: &Capabilities, _: &HarnessSettings) -> Option<&'static str> {
    need(c.priority, "needs priority")
}

/// Clause 4: higher priority is delivered first regardless of push order;
/// with `fifo`, equal priorities keep push order.
pub async fn higher_priority_first(ctx: &Ctx) -> CaseResult {
    let q = ctx.queue().await?;
    let priorities = [0u8, 5, 1, 9, 5, 0, 255];
    let mut pushed = Vec::new();
    for (i, p) in priorities.iter().enumerate() {
        let id = q
            .push(Message::new(format!("p{p}-{i}")).with_priority(*p))
            .await?;
        pushed.push((*p, i, id));
    }
    // Expected: priority descending, then push order.
    let mut expected = pushed.clone();
    expected.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    let mut last = u8::MAX;
    for (n, (p, _, id)) in expected.iter().enumerate() {
        let d = pop_some(&q, patience(ctx), &format!("delivery {n}")).await?;
        ensure!(
            d.message.priority <= last,
            "priority {} delivered after priority {last}",
            d.message.priority
        );
        ensure_eq!(
            d.message.priority,
            *p,
            "delivery {n} has the wrong priority"
        );
        if ctx.capabilities().fifo {
            ensure_eq!(
                &d.message.id,
                id,
                "delivery {n}: within a priority, push order"
            );
        }
        last = d.message.priority;
        q.delete(&d.receipt).await?;
    }
    pop_none(&q, brief(ctx), "all were deleted").await
}

/// Clause 9: a high-priority message still waits for its delay; a
/// low-priority message available now comes first.
pub async fn delay_beats_priority(ctx: &Ctx) -> CaseResult {
    let q = ctx.queue().await?;
    q.push(
        Message::new("urgent, later")
            .with_priority(9)
            .with_delay(Duration::from_secs(120)),
    )
    .await?;
    let low = q.push(Message::new("whenever, now")).await?;
    let d = pop_some(&q, patience(ctx), "the available message").await?;
    ensure_eq!(d.message.id, low);
    pop_none(&q, brief(ctx), "the priority message is still delayed").await?;
    q.delete(&d.receipt).await?;
    Ok(())
}
