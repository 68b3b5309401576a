//! Clause 5 (poison messages): `max_attempts`, `dead_letter`, and listing,
//! replaying and purging the dead letters.

use std::time::{Duration, SystemTime};

use flextide_queue_core::{Capabilities, Message, MessageId, QueueOptions, Replay};

use crate::{
    Case, CaseResult, Ctx, HarnessSettings,
    cases::{
        case, need,
        support::{
            Queue, brief, collect, delete_all, fail, id_set, patience, pop_none, pop_some,
            sleep_past_lease,
        },
    },
    ensure, ensure_eq,
};

pub(crate) fn cases() -> Vec<Case> {
    vec![
        case!(
            "dead_letter::keeps_reason_and_attempts",
            keeps_reason_and_attempts,
            dl
        ),
        case!(
            "dead_letter::max_attempts_via_nacks",
            max_attempts_via_nacks,
            dl
        ),
        case!(
            "dead_letter::max_attempts_via_expired_leases",
            max_attempts_via_expired_leases,
            dl
        ),
        case!("dead_letter::listed_oldest_first", listed_oldest_first, dl),
        case!(
            "dead_letter::replay_ids_restores_message",
            replay_ids_restores_message,
            dl
        ),
        case!("dead_letter::replay_oldest_n", replay_oldest_n, dl),
        case!("dead_letter::replay_all", replay_all, dl),
        case!(
            "dead_letter::purge_dead_letters_returns_count",
            purge_dead_letters_returns_count,
            dl
        ),
        case!(
            "dead_letter::delete_chosen_dead_letters",
            delete_chosen_dead_letters,
            |c, _| need(c.delete_dead_letters, "needs delete_dead_letters")
        ),
        case!(
            "dead_letter::settled_receipt_cannot_dead_letter",
            settled_receipt_cannot_dead_letter,
            |c, _| need(
                c.dead_letters && c.fenced_receipts,
                "needs dead_letters and fenced_receipts"
            )
        ),
    ]
}

fn dl(c: &Capabilities, _: &HarnessSettings) -> Option<&'static str> {
    need(c.dead_letters, "needs dead_letters")
}

/// Pushes `n` messages and dead-letters each, in order, with a reason naming
/// it. Returns the ids in dead-letter order.
async fn dead_letter_n(ctx: &Ctx, q: &Queue, n: usize) -> Result<Vec<MessageId>, crate::CaseError> {
    q.push_batch(
        (0..n)
            .map(|i| Message::new(format!("poison-{i}")))
            .collect(),
    )
    .await?;
    let mut order = Vec::new();
    for i in 0..n {
        let d = pop_some(q, patience(ctx), &format!("message {i}")).await?;
        q.dead_letter(&d.receipt, &format!("reason {i}")).await?;
        order.push(d.message.id);
        // Distinct timestamps even on a backend that orders by a clock.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(order)
}

/// Clause 5: `dead_letter` moves the message at once, keeping its payload,
/// headers, the reason and the attempt count; it is no longer delivered.
pub async fn keeps_reason_and_attempts(ctx: &Ctx) -> CaseResult {
    let q = ctx.queue().await?;
    let msg = Message::new(&b"\x00\xffpoison"[..]).with_header("x-tenant", "t1");
    q.push(msg.clone()).await?;
    let first = pop_some(&q, patience(ctx), "first delivery").await?;
    q.nack(&first.receipt, Duration::ZERO).await?;
    let second = pop_some(&q, patience(ctx), "second delivery").await?;
    let before = SystemTime::now();
    let reason = "handler failed: invalid invoice \u{2014} totals differ";
    q.dead_letter(&second.receipt, reason).await?;
    let dead = q.dead_letters(10).await?;
    ensure_eq!(dead.len(), 1, "dead letters after one dead_letter");
    let dead = &dead[0];
    ensure_eq!(dead.message.id, msg.id);
    ensure_eq!(dead.message.payload, msg.payload);
    ensure_eq!(dead.message.headers, msg.headers);
    ensure_eq!(dead.reason, reason);
    ensure_eq!(dead.attempts, 2, "the attempt count is kept");
    let skew = Duration::from_secs(60);
    ensure!(
        dead.dead_lettered_at + skew >= before && dead.dead_lettered_at <= SystemTime::now() + skew,
        "dead_lettered_at {:?} is not around now",
        dead.dead_lettered_at
    );
    pop_none(&q, brief(ctx), "the message was dead-lettered").await
}

/// Fails unless the queue holds exactly one dead letter, of `id`, with the
/// max-attempts reason and `n` attempts.
pub(crate) async fn ensure_exhausted(q: &Queue, id: &MessageId, n: u32) -> CaseResult {
    let dead = q.dead_letters(10).await?;
    ensure_eq!(dead.len(), 1, "dead letters after exhausting max_attempts");
    ensure_eq!(&dead[0].message.id, id);
    ensure!(
        dead[0]
            .reason
            .to_ascii_lowercase()
            .contains("max attempts exceeded"),
        "reason must say \"max attempts exceeded ({n})\", got {:?}",
        dead[0].reason
    );
    ensure_eq!(dead[0].attempts, n, "attempts of the exhausted message");
    Ok(())
}

/// Clause 5: with `max_attempts = Some(2)`, the nack of the second delivery
/// moves the message to the dead letters at once.
pub async fn max_attempts_via_nacks(ctx: &Ctx) -> CaseResult {
    let q = ctx
        .queue_with(QueueOptions::default().max_attempts(Some(2)))
        .await?;
    let id = q.push(Message::new("nack twice")).await?;
    for attempt in 1..=2 {
        let d = pop_some(&q, patience(ctx), &format!("delivery {attempt}")).await?;
        ensure_eq!(d.attempt, attempt);
        q.nack(&d.receipt, Duration::ZERO).await?;
    }
    // Immediate: checked before any pop could trigger a lazy move.
    ensure_exhausted(&q, &id, 2).await?;
    pop_none(&q, brief(ctx), "a third delivery beyond max_attempts").await
}

/// Clause 5: with `max_attempts = Some(2)`, a message whose second lease
/// expires is not delivered a third time; it is in the dead letters no
/// later than the next pop.
pub async fn max_attempts_via_expired_leases(ctx: &Ctx) -> CaseResult {
    let q = ctx.short_lease_queue(Some(2)).await?;
    let id = q.push(Message::new("time out twice")).await?;
    for attempt in 1..=2 {
        let d = pop_some(&q, patience(ctx), &format!("delivery {attempt}")).await?;
        ensure_eq!(d.attempt, attempt);
        sleep_past_lease(ctx, &d).await;
    }
    pop_none(&q, brief(ctx), "a third delivery beyond max_attempts").await?;
    ensure_exhausted(&q, &id, 2).await
}

/// Clause 5: `dead_letters(limit)` lists the oldest first, at most `limit`,
/// and listing changes nothing.
pub async fn listed_oldest_first(ctx: &Ctx) -> CaseResult {
    let q = ctx.queue().await?;
    let order = dead_letter_n(ctx, &q, 3).await?;
    let two = q.dead_letters(2).await?;
    ensure_eq!(
        two.iter().map(|d| d.message.id.clone()).collect::<Vec<_>>(),
        order[..2].to_vec(),
        "dead_letters(2)"
    );
    let all = q.dead_letters(10).await?;
    ensure_eq!(
        all.iter().map(|d| d.message.id.clone()).collect::<Vec<_>>(),
        order,
        "dead_letters(10), oldest first"
    );
    for (i, d) in all.iter().enumerate() {
        ensure_eq!(d.reason, format!("reason {i}"));
    }
    let again = q.dead_letters(10).await?;
    ensure_eq!(again.len(), 3, "listing must not change the dead letters");
    ensure!(
        q.dead_letters(0).await?.is_empty(),
        "dead_letters(0) must list nothing"
    );
    Ok(())
}

/// Clause 5: `replay_dead_letters(Ids)` puts the message back, available at
/// once, with the same id, payload, headers, priority and ordering key, and
/// attempt 1; unknown ids are ignored.
pub async fn replay_ids_restores_message(ctx: &Ctx) -> CaseResult {
    let caps = *ctx.capabilities();
    let q = ctx.queue().await?;
    let mut msg = Message::new(vec![0u8, 159, 146, 150, 255]).with_header("x-trace", "t-\u{00e9}");
    if caps.priority {
        msg = msg.with_priority(3);
    }
    if caps.ordering_key {
        msg = msg.with_ordering_key("customer-1");
    }
    q.push(msg.clone()).await?;
    let d = pop_some(&q, patience(ctx), "first delivery").await?;
    q.nack(&d.receipt, Duration::ZERO).await?;
    let d = pop_some(&q, patience(ctx), "second delivery").await?;
    q.dead_letter(&d.receipt, "broken").await?;
    let replayed = q
        .replay_dead_letters(Replay::Ids(vec![
            msg.id.clone(),
            MessageId::new("no-such-message"),
        ]))
        .await?;
    ensure_eq!(replayed, 1, "replayed count (the unknown id is ignored)");
    ensure!(
        q.dead_letters(10).await?.is_empty(),
        "a replayed message must leave the dead letters"
    );
    let back = pop_some(&q, patience(ctx), "the replayed message").await?;
    ensure_eq!(back.message.id, msg.id);
    ensure_eq!(back.message.payload, msg.payload);
    ensure_eq!(back.message.headers, msg.headers);
    ensure_eq!(back.message.priority, msg.priority);
    ensure_eq!(back.message.ordering_key, msg.ordering_key);
    ensure_eq!(back.attempt, 1, "a replay resets the attempts");
    q.delete(&back.receipt).await?;
    Ok(())
}

/// Clause 5: `replay_dead_letters(Oldest(n))` replays the `n` oldest and
/// leaves the rest.
pub async fn replay_oldest_n(ctx: &Ctx) -> CaseResult {
    let q = ctx.queue().await?;
    let order = dead_letter_n(ctx, &q, 3).await?;
    ensure_eq!(
        q.replay_dead_letters(Replay::Oldest(2)).await?,
        2,
        "replayed count"
    );
    let left = q.dead_letters(10).await?;
    ensure_eq!(
        left.iter()
            .map(|d| d.message.id.clone())
            .collect::<Vec<_>>(),
        order[2..].to_vec(),
        "left over"
    );
    let back = collect(ctx, &q, 2).await?;
    ensure_eq!(
        id_set(&back),
        order[..2].iter().cloned().collect(),
        "the two oldest came back"
    );
    for d in &back {
        ensure_eq!(d.attempt, 1, "a replay resets the attempts");
    }
    pop_none(&q, brief(ctx), "only two were replayed").await?;
    delete_all(&q, &back).await
}

/// Clause 5: `replay_dead_letters(All)` replays every dead letter.
pub async fn replay_all(ctx: &Ctx) -> CaseResult {
    let q = ctx.queue().await?;
    let order = dead_letter_n(ctx, &q, 3).await?;
    ensure_eq!(
        q.replay_dead_letters(Replay::All).await?,
        3,
        "replayed count"
    );
    ensure!(
        q.dead_letters(10).await?.is_empty(),
        "every dead letter was replayed"
    );
    let back = collect(ctx, &q, 3).await?;
    ensure_eq!(id_set(&back), order.iter().cloned().collect());
    delete_all(&q, &back).await?;
    ensure_eq!(
        q.replay_dead_letters(Replay::All).await?,
        0,
        "replaying an empty store"
    );
    Ok(())
}

/// Clause 5: `purge_dead_letters` deletes every dead letter, returns how many,
/// and leaves the queue's messages alone.
pub async fn purge_dead_letters_returns_count(ctx: &Ctx) -> CaseResult {
    let q = ctx.queue().await?;
    dead_letter_n(ctx, &q, 2).await?;
    let live = q.push(Message::new("still queued")).await?;
    ensure_eq!(q.purge_dead_letters().await?, 2, "purged count");
    ensure!(
        q.dead_letters(10).await?.is_empty(),
        "dead letters after a purge"
    );
    ensure_eq!(q.purge_dead_letters().await?, 0, "purging an empty store");
    let d = pop_some(
        &q,
        patience(ctx),
        "the queued message survives a dead-letter purge",
    )
    .await?;
    ensure_eq!(d.message.id, live);
    q.delete(&d.receipt).await?;
    Ok(())
}

/// Clauses 3 and 5: a receipt already settled by `delete` cannot
/// dead-letter the message.
pub async fn settled_receipt_cannot_dead_letter(ctx: &Ctx) -> CaseResult {
    let q = ctx.queue().await?;
    q.push(Message::new("done")).await?;
    let d = pop_some(&q, patience(ctx), "the pushed message").await?;
    q.delete(&d.receipt).await?;
    match q.dead_letter(&d.receipt, "too late").await {
        Err(flextide_queue_core::QueueError::StaleReceipt { .. }) => {}
        Err(e) => return Err(fail(format!("expected StaleReceipt, got error: {e}"))),
        Ok(()) => {
            return Err(fail(
                "dead_letter with a deleted delivery's receipt returned Ok",
            ));
        }
    }
    ensure!(
        q.dead_letters(10).await?.is_empty(),
        "a deleted message must not reach the dead letters"
    );
    Ok(())
}

/// `delete_dead_letters(ids)` removes exactly the dead letters named (an
/// unknown id is ignored), returns how many, and leaves the others listed
/// and replayable.
pub async fn delete_chosen_dead_letters(ctx: &Ctx) -> CaseResult {
    let q = ctx.queue().await?;
    let ids = dead_letter_n(ctx, &q, 3).await?;
    let deleted = q
        .delete_dead_letters(&[ids[1].clone(), MessageId::new("no-such-message")])
        .await?;
    ensure_eq!(deleted, 1, "deleted count (the unknown id is ignored)");
    let left: Vec<MessageId> = q
        .dead_letters(10)
        .await?
        .into_iter()
        .map(|d| d.message.id)
        .collect();
    ensure_eq!(
        left,
        vec![ids[0].clone(), ids[2].clone()],
        "the dead letters left, oldest first"
    );
    ensure_eq!(
        q.delete_dead_letters(&[ids[1].clone()]).await?,
        0,
        "deleting the same id again"
    );
    ensure_eq!(
        q.stats().await?.dead_lettered,
        2,
        "dead_lettered after delete"
    );
    ensure_eq!(
        q.replay_dead_letters(Replay::All).await?,
        2,
        "replay of the rest"
    );
    let back = collect(ctx, &q, 2).await?;
    ensure!(
        !id_set(&back).contains(&ids[1]),
        "a deleted dead letter came back"
    );
    pop_none(&q, brief(ctx), "nothing else after the replay").await?;
    delete_all(&q, &back).await
}
