//! Clause 12 (messages from other producers): a plain body written with the
//! broker's own client is delivered with a stable id, and an entry that
//! cannot be decoded goes to the dead letters by itself, without failing a
//! pop or costing another message an attempt.

use std::time::Duration;

use bytes::Bytes;
use flextide_queue_core::{Capabilities, Message, QueueOptions, backend::UNDECODABLE};

use crate::{
    Case, CaseResult, Ctx, ForeignEntry, HarnessSettings,
    cases::{
        case,
        support::{brief, fail, patience, pop_some, sleep_past_lease},
    },
    ensure, ensure_eq,
};

pub(crate) fn cases() -> Vec<Case> {
    vec![
        case!(
            "foreign::plain_body_keeps_its_id",
            plain_body_keeps_its_id,
            plain
        ),
        case!(
            "foreign::undecodable_entry_is_dead_lettered_alone",
            undecodable_entry_is_dead_lettered_alone,
            undecodable
        ),
        case!(
            "foreign::undecodable_entry_does_not_stall_a_batch",
            undecodable_entry_does_not_stall_a_batch,
            undecodable
        ),
    ]
}

fn plain(_: &Capabilities, s: &HarnessSettings) -> Option<&'static str> {
    (!s.foreign_plain).then_some(
        "the harness cannot write a plain body with the broker's own client (HarnessSettings::foreign_plain)",
    )
}

fn undecodable(_: &Capabilities, s: &HarnessSettings) -> Option<&'static str> {
    (!s.foreign_undecodable).then_some(
        "the harness cannot write an undecodable entry with the broker's own client (HarnessSettings::foreign_undecodable)",
    )
}

/// Clause 12: a body sent without the Flextide envelope is delivered as it
/// was sent, and keeps one id across a redelivery by the broker (an expired
/// lease) and by a nack.
pub async fn plain_body_keeps_its_id(ctx: &Ctx) -> CaseResult {
    let q = ctx.short_lease_queue(None).await?;
    let body = Bytes::from_static(b"{\"from\":\"another producer\"}");
    ctx.write_foreign(&q, ForeignEntry::Plain(body.clone()))
        .await?;
    let first = pop_some(&q, patience(ctx), "the plain body").await?;
    ensure_eq!(
        first.message.payload,
        body,
        "the payload must be the body as sent"
    );
    ensure!(
        !first.message.id.as_str().is_empty(),
        "a foreign message must get an id"
    );
    ensure_eq!(first.attempt, 1, "first delivery of the plain body");
    sleep_past_lease(ctx, &first).await;
    let second = pop_some(
        &q,
        patience(ctx),
        "the plain body again, after its lease ended",
    )
    .await?;
    ensure_eq!(
        second.message.id,
        first.message.id,
        "the id must stay the same when the broker delivers the message again"
    );
    ensure_eq!(second.message.payload, body);
    ensure_eq!(second.attempt, 2, "a redelivery counts an attempt");
    q.nack(&second.receipt, Duration::ZERO).await?;
    let third = pop_some(&q, patience(ctx), "the plain body after a nack").await?;
    ensure_eq!(
        third.message.id,
        first.message.id,
        "the id must stay the same after a nack"
    );
    ensure_eq!(third.attempt, 3);
    q.delete(&third.receipt).await?;
    match q.pop(brief(ctx)).await? {
        None => Ok(()),
        Some(d) => Err(fail(format!(
            "message {} delivered after the plain body was deleted",
            d.message.id
        ))),
    }
}

/// Clause 12: an undecodable entry between two good messages: every pop
/// succeeds, the good ones arrive on their first attempt, the bad one is
/// never delivered and is listed in the dead letters with an
/// `undecodable:` reason.
pub async fn undecodable_entry_is_dead_lettered_alone(ctx: &Ctx) -> CaseResult {
    let q = ctx
        .queue_with(QueueOptions::default().max_attempts(Some(3)))
        .await?;
    let a = q.push(Message::new("before")).await?;
    ctx.write_foreign(&q, ForeignEntry::Undecodable).await?;
    let b = q.push(Message::new("after")).await?;
    let mut seen = Vec::new();
    for _ in 0..4 {
        // Single pops: the undecodable entry may come first in line.
        match q.pop(brief(ctx)).await {
            Ok(Some(d)) => {
                ensure_eq!(
                    d.attempt,
                    1,
                    "message {} lost an attempt to the undecodable entry",
                    d.message.id
                );
                q.delete(&d.receipt).await?;
                seen.push(d.message.id);
            }
            Ok(None) if seen.len() == 2 => break,
            Ok(None) => {}
            Err(e) => {
                return Err(fail(format!(
                    "a pop failed because of an undecodable entry: {e}"
                )));
            }
        }
    }
    seen.sort();
    let mut want = vec![a, b];
    want.sort();
    ensure_eq!(seen, want, "both good messages, each once");
    if ctx.capabilities().dead_letters {
        let mut dead = Vec::new();
        for _ in 0..20 {
            dead = q.dead_letters(10).await?;
            if !dead.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        ensure_eq!(
            dead.len(),
            1,
            "the undecodable entry, alone, in the dead letters"
        );
        ensure!(
            dead[0].reason.starts_with(UNDECODABLE),
            "the reason must start with {UNDECODABLE:?}, got {:?}",
            dead[0].reason
        );
    }
    Ok(())
}

/// Clause 12: a batch pop that meets an undecodable entry returns the good
/// messages of the batch at once, and later pops do not see the bad entry.
pub async fn undecodable_entry_does_not_stall_a_batch(ctx: &Ctx) -> CaseResult {
    let q = ctx.queue().await?;
    ctx.write_foreign(&q, ForeignEntry::Undecodable).await?;
    let mut want = Vec::new();
    for i in 0..3 {
        want.push(q.push(Message::new(format!("good {i}"))).await?);
    }
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + patience(ctx);
    while got.len() < want.len() && tokio::time::Instant::now() < deadline {
        let batch = q
            .pop_batch(10, brief(ctx))
            .await
            .map_err(|e| fail(format!("a batch pop failed on an undecodable entry: {e}")))?;
        for d in batch {
            ensure_eq!(d.attempt, 1, "a good message lost an attempt");
            q.delete(&d.receipt).await?;
            got.push(d.message.id);
        }
    }
    got.sort();
    want.sort();
    ensure_eq!(got, want, "every good message of the batch, once");
    match q.pop(brief(ctx)).await? {
        None => Ok(()),
        Some(d) => Err(fail(format!(
            "the undecodable entry (or another message) was delivered: {} (attempt {})",
            d.message.id, d.attempt
        ))),
    }
}
