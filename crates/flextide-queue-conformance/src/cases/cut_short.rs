//! Clause 13 (a pop cut short): dropping a pop's future at any point (a
//! timeout, a `select!`, a worker shutting down) leaves the provider usable
//! and loses nothing; what the dropped pop had leased comes back when its
//! lease ends.

use std::{collections::HashSet, time::Duration};

use flextide_queue_core::Message;
use tokio::time::Instant;

use crate::{
    Case, CaseResult, Ctx,
    cases::{
        always, case,
        support::{fail, patience},
    },
    ensure,
};

pub(crate) fn cases() -> Vec<Case> {
    vec![
        case!(
            "cut_short::waiting_pops_dropped",
            waiting_pops_dropped,
            always
        ),
        case!(
            "cut_short::claiming_pops_dropped_lose_nothing",
            claiming_pops_dropped_lose_nothing,
            always
        ),
    ]
}

/// How far into a pop it is cut: 0 to 3 ms, in steps of 250 µs, so the cut
/// lands before, during and after the round trips of every backend.
fn cut(i: usize) -> Duration {
    Duration::from_micros(250 * (i % 13) as u64)
}

/// Clause 13: pops waiting on an empty queue, dropped at once or a few
/// milliseconds in, leave the queue working: a message pushed afterwards is
/// delivered (at once, or, if a dropped pop's claim still ran and leased
/// it, when that lease ends).
pub async fn waiting_pops_dropped(ctx: &Ctx) -> CaseResult {
    let q = ctx.short_lease_queue(None).await?;
    for i in 0..60 {
        let _ = tokio::time::timeout(cut(i), q.pop(Duration::from_secs(5))).await;
    }
    let id = q.push(Message::new("after the cut pops")).await?;
    let wait = ctx.settings().short_lease * 2 + patience(ctx);
    let d = q.pop(wait).await?.ok_or_else(|| {
        fail(format!(
            "a message pushed after cut-short pops was not delivered within {wait:?}"
        ))
    })?;
    ensure!(
        d.message.id == id,
        "another message was delivered: {}",
        d.message.id
    );
    q.delete(&d.receipt).await?;
    Ok(())
}

/// Clause 13: pops dropped while they claim messages lose none of them:
/// every message is delivered (again, after its lease, if a dropped pop
/// had leased it) and the queue drains.
pub async fn claiming_pops_dropped_lose_nothing(ctx: &Ctx) -> CaseResult {
    let q = ctx.short_lease_queue(None).await?;
    let n = 30;
    let mut want = HashSet::new();
    for i in 0..n {
        want.insert(q.push(Message::new(format!("cut {i}"))).await?);
    }
    let mut handled = HashSet::new();
    for i in 0..80 {
        match tokio::time::timeout(cut(i), q.pop_batch(3, Duration::from_secs(2))).await {
            // Finished before the cut: a normal delivery, settled.
            Ok(Ok(batch)) => {
                for d in batch {
                    q.delete(&d.receipt).await?;
                    handled.insert(d.message.id);
                }
            }
            Ok(Err(e)) if e.is_retryable() => {}
            Ok(Err(e)) => return Err(fail(format!("a pop failed: {e}"))),
            Err(_) => {}
        }
    }
    // Whatever the dropped pops leased comes back after the lease.
    let deadline = Instant::now() + ctx.settings().short_lease * 3 + patience(ctx) * 2;
    while handled.len() < want.len() && Instant::now() < deadline {
        let batch = match q.pop_batch(10, patience(ctx)).await {
            Ok(b) => b,
            Err(e) if e.is_retryable() => continue,
            Err(e) => return Err(fail(format!("a pop after the cut pops failed: {e}"))),
        };
        for d in batch {
            ensure!(
                want.contains(&d.message.id),
                "a message never pushed was delivered: {}",
                d.message.id
            );
            q.delete(&d.receipt).await?;
            handled.insert(d.message.id);
        }
    }
    let lost: Vec<_> = want.difference(&handled).collect();
    ensure!(
        lost.is_empty(),
        "{} of {n} messages were never delivered after pops were cut short: {lost:?}",
        lost.len()
    );
    Ok(())
}
