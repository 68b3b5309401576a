//! Unique pushes (clause 16): a push whose `dedup_id` was pushed within the
//! queue's dedup window is not enqueued, atomically across handles, and
//! `push_unique` says so with the first message's id. Redeliveries, nacks
//! and replays are not pushes and are never dropped.

use std::time::Duration;

use flextide_queue_core::{Message, MessageId, Pushed, QueueOptions, Replay};

use crate::{
    Case, CaseResult, Ctx,
    cases::{
        case, need,
        support::{brief, collect, delete_all, fail, patience, pop_none, pop_some},
    },
    ensure, ensure_eq,
};

/// The window the case that waits it out gives its queue.
const SHORT_WINDOW: Duration = Duration::from_secs(2);

pub(crate) fn cases() -> Vec<Case> {
    vec![
        case!(
            "dedup::duplicate_reports_first_id",
            duplicate_reports_first_id,
            |c, _| need(c.dedup, "needs dedup")
        ),
        case!(
            "dedup::window_outlives_the_message",
            window_outlives_the_message,
            |c, s| {
                need(c.dedup, "needs dedup").or_else(|| {
                    need(
                        s.dedup_outlives_message,
                        "the server (an emulator) forgets a dedup id once its message is deleted",
                    )
                })
            }
        ),
        case!(
            "dedup::accepted_after_the_window",
            accepted_after_the_window,
            |c, s| {
                need(c.dedup, "needs dedup").or_else(|| {
                    need(
                        s.dedup_window_settable,
                        "the broker fixes the dedup window (waiting it out takes minutes)",
                    )
                })
            }
        ),
        case!(
            "dedup::concurrent_handles_enqueue_one",
            concurrent_handles_enqueue_one,
            |c, _| need(c.dedup, "needs dedup")
        ),
        case!(
            "dedup::batch_drops_duplicates",
            batch_drops_duplicates,
            |c, _| need(c.dedup, "needs dedup")
        ),
        case!(
            "dedup::nack_is_not_a_push",
            nack_is_not_a_push,
            |c, _| need(c.dedup, "needs dedup")
        ),
        case!(
            "dedup::replay_is_not_a_push",
            replay_is_not_a_push,
            |c, _| need(c.dedup && c.dead_letters, "needs dedup and dead_letters")
        ),
    ]
}

fn key() -> String {
    format!("dedup-{}", uuid::Uuid::new_v4().simple())
}

/// Checks the report of a push that is a duplicate: `Duplicate` with the
/// first id, or, where the broker drops duplicates without saying so
/// ([`HarnessSettings::dedup_silent`](crate::HarnessSettings::dedup_silent)),
/// `Enqueued` with the push's own id.
fn reported_duplicate(
    ctx: &Ctx,
    got: &Pushed,
    first: &MessageId,
    own: &MessageId,
    what: &str,
) -> CaseResult {
    if ctx.settings().dedup_silent && *got == Pushed::Enqueued(own.clone()) {
        return Ok(());
    }
    ensure_eq!(*got, Pushed::Duplicate(first.clone()), "{what}");
    Ok(())
}

/// A second push of a dedup id is dropped; `push_unique` reports it with the
/// first message's id, and `push` returns that id.
pub async fn duplicate_reports_first_id(ctx: &Ctx) -> CaseResult {
    let q = ctx.queue().await?;
    let window = q.capabilities().dedup_window;
    ensure!(
        window.is_some_and(|w| !w.is_zero()),
        "a dedup queue must report its window, got {window:?}"
    );
    let key = key();
    let first = Message::new("first").with_dedup_id(key.as_str());
    ensure_eq!(
        q.push_unique(first.clone()).await?,
        Pushed::Enqueued(first.id.clone()),
        "the first push of a dedup id"
    );
    let second = Message::new("second").with_dedup_id(key.as_str());
    reported_duplicate(
        ctx,
        &q.push_unique(second.clone()).await?,
        &first.id,
        &second.id,
        "a second push of the dedup id",
    )?;
    let third = Message::new("third").with_dedup_id(key.as_str());
    let id = q.push(third.clone()).await?;
    if !(ctx.settings().dedup_silent && id == third.id) {
        ensure_eq!(id, first.id, "push of a duplicate returns the first id");
    }
    let plain = Message::new("plain");
    ensure_eq!(
        q.push_unique(plain.clone()).await?,
        Pushed::Enqueued(plain.id.clone()),
        "a push without a dedup id"
    );
    let got = collect(ctx, &q, 2).await?;
    pop_none(&q, brief(ctx), "no duplicate delivered").await?;
    let first_back = got
        .iter()
        .find(|d| d.message.id == first.id)
        .ok_or_else(|| fail("the first message was not delivered"))?;
    ensure_eq!(first_back.message.payload, first.payload);
    ensure_eq!(first_back.message.dedup_id.as_deref(), Some(key.as_str()));
    delete_all(&q, &got).await
}

/// The window runs from the push, not while the message waits: once the
/// first message was handled and deleted, a push of its dedup id within
/// the window is still dropped.
pub async fn window_outlives_the_message(ctx: &Ctx) -> CaseResult {
    let q = ctx.queue().await?;
    let key = key();
    let first = q
        .push(Message::new("first").with_dedup_id(key.as_str()))
        .await?;
    let d = pop_some(&q, patience(ctx), "the first message").await?;
    ensure_eq!(d.message.id, first);
    q.delete(&d.receipt).await?;
    let again = Message::new("again").with_dedup_id(key.as_str());
    reported_duplicate(
        ctx,
        &q.push_unique(again.clone()).await?,
        &first,
        &again.id,
        "a push of a handled message's dedup id within the window",
    )?;
    pop_none(&q, brief(ctx), "the duplicate must not be delivered").await
}

/// After the window, the same dedup id is a new message.
pub async fn accepted_after_the_window(ctx: &Ctx) -> CaseResult {
    let q = ctx
        .queue_with(QueueOptions::default().dedup_window(SHORT_WINDOW))
        .await?;
    ensure_eq!(
        q.capabilities().dedup_window,
        Some(SHORT_WINDOW),
        "the window the queue was opened with"
    );
    let key = key();
    let first = Message::new("first").with_dedup_id(key.as_str());
    ensure_eq!(
        q.push_unique(first.clone()).await?,
        Pushed::Enqueued(first.id.clone())
    );
    tokio::time::sleep(SHORT_WINDOW + ctx.settings().timing_slack + Duration::from_secs(1)).await;
    let later = Message::new("later").with_dedup_id(key.as_str());
    ensure_eq!(
        q.push_unique(later.clone()).await?,
        Pushed::Enqueued(later.id.clone()),
        "a push of the dedup id after the window"
    );
    let got = collect(ctx, &q, 2).await?;
    pop_none(&q, brief(ctx), "nothing else").await?;
    delete_all(&q, &got).await
}

/// Concurrent pushes of one dedup id from several handles (each with its
/// own connection where the backend opens one per handle) enqueue exactly
/// one message, and every other push names it.
pub async fn concurrent_handles_enqueue_one(ctx: &Ctx) -> CaseResult {
    let q = ctx.queue().await?;
    let mut handles = vec![q.clone()];
    for _ in 0..3 {
        handles.push(ctx.reopen(&q, QueueOptions::default()).await?);
    }
    let key = key();
    let racers: Vec<Message> = (0..20)
        .map(|i| Message::new(format!("racer-{i}")).with_dedup_id(key.as_str()))
        .collect();
    let pushes = racers.iter().enumerate().map(|(i, m)| {
        let h = handles[i % handles.len()].clone();
        let m = m.clone();
        async move { h.push_unique(m).await }
    });
    let outcomes = futures::future::join_all(pushes).await;
    let mut enqueued: Vec<MessageId> = Vec::new();
    let mut named: Vec<MessageId> = Vec::new();
    for outcome in outcomes {
        match outcome? {
            Pushed::Enqueued(id) => enqueued.push(id),
            Pushed::Duplicate(id) => named.push(id),
        }
    }
    let d = pop_some(&q, patience(ctx), "the one message").await?;
    if ctx.settings().dedup_silent {
        // The broker does not say which push it kept: it must be one of them.
        ensure!(
            racers.iter().any(|m| m.id == d.message.id),
            "the message delivered ({}) is none of the racing pushes",
            d.message.id
        );
    } else {
        ensure_eq!(enqueued.len(), 1, "pushes that enqueued, of 20 racing");
        ensure!(
            named.iter().all(|id| *id == enqueued[0]),
            "every duplicate must name the one enqueued ({}), got {named:?}",
            enqueued[0]
        );
        ensure_eq!(d.message.id, enqueued[0]);
    }
    pop_none(&q, brief(ctx), "only one of the racing pushes").await?;
    q.delete(&d.receipt).await?;
    Ok(())
}

/// In a batch, a message whose dedup id came earlier in the batch (or
/// before it) is dropped and its place holds the first id.
pub async fn batch_drops_duplicates(ctx: &Ctx) -> CaseResult {
    let q = ctx.queue().await?;
    let (k1, k2) = (key(), key());
    let before = q
        .push(Message::new("before").with_dedup_id(k2.as_str()))
        .await?;
    let a = Message::new("a").with_dedup_id(k1.as_str());
    let b = Message::new("b").with_dedup_id(k1.as_str());
    let c = Message::new("c").with_dedup_id(k2.as_str());
    let d = Message::new("d");
    let ids = q
        .push_batch(vec![a.clone(), b.clone(), c.clone(), d.clone()])
        .await?;
    let own = vec![a.id.clone(), b.id, c.id, d.id.clone()];
    if !(ctx.settings().dedup_silent && ids == own) {
        ensure_eq!(
            ids,
            vec![a.id.clone(), a.id.clone(), before.clone(), d.id.clone()],
            "ids of a batch with duplicates"
        );
    }
    let got = collect(ctx, &q, 3).await?;
    pop_none(&q, brief(ctx), "no duplicate of the batch delivered").await?;
    let mut seen: Vec<MessageId> = got.iter().map(|x| x.message.id.clone()).collect();
    seen.sort();
    let mut want = vec![before, a.id, d.id];
    want.sort();
    ensure_eq!(seen, want, "the messages delivered");
    delete_all(&q, &got).await
}

/// A nacked message comes back although its dedup id is in the window: a
/// redelivery is not a push.
pub async fn nack_is_not_a_push(ctx: &Ctx) -> CaseResult {
    let q = ctx.queue().await?;
    let id = q
        .push(Message::new("n").with_dedup_id(key().as_str()))
        .await?;
    let first = pop_some(&q, patience(ctx), "the first delivery").await?;
    q.nack(&first.receipt, Duration::ZERO).await?;
    let again = pop_some(&q, patience(ctx), "the nacked message").await?;
    ensure_eq!(again.message.id, id);
    if ctx.capabilities().delay {
        q.nack(&again.receipt, Duration::from_secs(1)).await?;
        let later = pop_some(&q, patience(ctx), "the message nacked with a delay").await?;
        ensure_eq!(later.message.id, id);
        q.delete(&later.receipt).await?;
    } else {
        q.delete(&again.receipt).await?;
    }
    Ok(())
}

/// A replayed dead letter comes back although its dedup id is in the
/// window: a replay is not a push.
pub async fn replay_is_not_a_push(ctx: &Ctx) -> CaseResult {
    let q = ctx.queue().await?;
    let id = q
        .push(Message::new("r").with_dedup_id(key().as_str()))
        .await?;
    let d = pop_some(&q, patience(ctx), "the first delivery").await?;
    q.dead_letter(&d.receipt, "to replay").await?;
    ensure_eq!(
        q.replay_dead_letters(Replay::Ids(vec![id.clone()])).await?,
        1,
        "replayed"
    );
    let back = pop_some(&q, patience(ctx), "the replayed message").await?;
    ensure_eq!(back.message.id, id);
    q.delete(&back.receipt).await?;
    Ok(())
}
