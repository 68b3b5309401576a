//! Clause 9 (statistics): after a known sequence of operations on an
//! otherwise idle queue, `stats()` counts are exact where `exact_stats` is
//! claimed, and become right without absurd values otherwise.

use std::time::Duration;

use flextide_queue_core::{Message, QueueStats};
use tokio::time::Instant;

use flextide_queue_core::Capabilities;

use crate::{
    Case, CaseError, CaseResult, Ctx, HarnessSettings,
    cases::{
        case, lacking, need,
        support::{Queue, delete_all, eventually, fail, patience, pop_some},
    },
    ensure,
};

pub(crate) fn cases() -> Vec<Case> {
    vec![
        case!(
            "stats::empty_queue_counts_nothing",
            empty_queue_counts_nothing
        ),
        case!(
            "stats::counts_after_known_sequence",
            counts_after_known_sequence,
            counting
        ),
        case!(
            "stats::counts_return_to_zero",
            counts_return_to_zero,
            counting
        ),
        case!(
            "stats::blind_stats_count_only_dead_letters",
            blind_stats_count_only_dead_letters,
            |c, _| need(
                c.blind_stats,
                "needs blind_stats (the backend counts its messages)"
            )
        ),
    ]
}

/// Gate: the case needs counts of ready and leased messages.
pub(crate) fn counting(c: &Capabilities, _: &HarnessSettings) -> Option<&'static str> {
    lacking(
        c.blind_stats,
        "the backend cannot count ready or leased messages (blind_stats)",
    )
}

/// The counts a case expects: depth, in flight, delayed, dead-lettered.
type Counts = (u64, u64, u64, u64);

fn counts(s: &QueueStats) -> Counts {
    (s.depth, s.in_flight, s.delayed, s.dead_lettered)
}

/// How long an approximate backend may take to report the right counts.
fn settle_time(ctx: &Ctx) -> Duration {
    Duration::from_secs(30) + ctx.settings().timing_slack * 10
}

/// Checks `stats()` against `want`: at once when the backend claims exact
/// stats, eventually (never above `ceiling` total) otherwise. Returns the
/// last stats read.
async fn expect_counts(
    ctx: &Ctx,
    q: &Queue,
    want: Counts,
    ceiling: u64,
) -> Result<QueueStats, CaseError> {
    if ctx.capabilities().exact_stats {
        let s = q.stats().await?;
        ensure!(
            counts(&s) == want,
            "stats (depth, in_flight, delayed, dead_lettered) = {:?}, expected {want:?}",
            counts(&s)
        );
        return Ok(s);
    }
    eventually(settle_time(ctx), || {
        let q = q.clone();
        async move {
            let s = q.stats().await?;
            let (d, i, l, x) = counts(&s);
            if d + i + l + x > ceiling {
                return Err(fail(format!(
                    "absurd stats {s:?}: at most {ceiling} messages exist"
                )));
            }
            let got = counts(&s);
            Ok((got != want).then(|| format!("stats {got:?}, expected {want:?}")))
        }
    })
    .await?;
    // Read once more for the caller (the counts were right a moment ago).
    Ok(q.stats().await?)
}

/// Clause 9: a fresh queue counts nothing and has no oldest message.
pub async fn empty_queue_counts_nothing(ctx: &Ctx) -> CaseResult {
    let q = ctx.queue().await?;
    let s = expect_counts(ctx, &q, (0, 0, 0, 0), 0).await?;
    ensure!(
        s.oldest_age.is_none(),
        "an empty queue reports oldest_age {:?}",
        s.oldest_age
    );
    Ok(())
}

/// Clause 9: push 3, lease 1, dead-letter 1 (where supported) and push 1
/// delayed (where supported): the counts match, and `oldest_age` is present
/// and no older than the case.
pub async fn counts_after_known_sequence(ctx: &Ctx) -> CaseResult {
    let caps = *ctx.capabilities();
    let start = Instant::now();
    let q = ctx.queue().await?;
    q.push_batch((0..3).map(|i| Message::new(format!("m{i}"))).collect())
        .await?;
    let leased = pop_some(&q, patience(ctx), "the message to lease").await?;
    let mut dead = 0;
    if caps.dead_letters {
        let d = pop_some(&q, patience(ctx), "the message to dead-letter").await?;
        q.dead_letter(&d.receipt, "stats").await?;
        dead = 1;
    }
    let mut delayed = 0;
    if caps.delay {
        q.push(Message::new("later").with_delay(Duration::from_secs(300)))
            .await?;
        delayed = 1;
    }
    let s = expect_counts(ctx, &q, (2 - dead, 1, delayed, dead), 4).await?;
    let age_limit = start.elapsed() + Duration::from_secs(1) + ctx.settings().timing_slack;
    match s.oldest_age {
        Some(age) => ensure!(
            age <= age_limit,
            "oldest_age {age:?} is older than the case ({age_limit:?})"
        ),
        None => ensure!(
            !caps.exact_stats,
            "oldest_age missing while messages are ready and in flight"
        ),
    }
    q.delete(&leased.receipt).await?;
    Ok(())
}

/// Clause 9: once every message is deleted, the counts are back to zero and
/// there is no oldest message.
pub async fn counts_return_to_zero(ctx: &Ctx) -> CaseResult {
    let q = ctx.queue().await?;
    q.push_batch((0..2).map(|i| Message::new(format!("m{i}"))).collect())
        .await?;
    let mut got = Vec::new();
    for i in 0..2 {
        got.push(pop_some(&q, patience(ctx), &format!("message {i}")).await?);
    }
    expect_counts(ctx, &q, (0, 2, 0, 0), 2).await?;
    delete_all(&q, &got).await?;
    let s = expect_counts(ctx, &q, (0, 0, 0, 0), 2).await?;
    ensure!(
        s.oldest_age.is_none(),
        "an emptied queue reports oldest_age {:?}",
        s.oldest_age
    );
    Ok(())
}

/// Clause 9 on a backend with `blind_stats`: `depth`, `in_flight` and
/// `delayed` are 0 whatever the queue holds, `oldest_age` is `None`, and the
/// dead letters are counted (where the backend has them); `exact_stats` is
/// not claimed.
pub async fn blind_stats_count_only_dead_letters(ctx: &Ctx) -> CaseResult {
    let caps = *ctx.capabilities();
    ensure!(!caps.exact_stats, "blind_stats with exact_stats claimed");
    let q = ctx.queue().await?;
    q.push_batch((0..3).map(|i| Message::new(format!("m{i}"))).collect())
        .await?;
    let leased = pop_some(&q, patience(ctx), "the message to lease").await?;
    let mut dead = 0;
    if caps.dead_letters {
        let d = pop_some(&q, patience(ctx), "the message to dead-letter").await?;
        q.dead_letter(&d.receipt, "stats").await?;
        dead = 1;
    }
    let s = expect_counts(ctx, &q, (0, 0, 0, dead), 4).await?;
    ensure!(
        s.oldest_age.is_none(),
        "blind stats report oldest_age {:?}",
        s.oldest_age
    );
    q.delete(&leased.receipt).await?;
    Ok(())
}
