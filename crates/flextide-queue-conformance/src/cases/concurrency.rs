//! Clause 10 (concurrency): consumers popping at once, on one handle or on
//! several, get distinct messages while leases hold; each message is deleted
//! exactly once and none remains.

use std::{
    collections::{HashMap, HashSet},
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use flextide_queue_core::{Message, MessageId, QueueOptions};
use tokio::time::Instant;

use crate::{
    Case, CaseResult, Ctx,
    cases::{
        case,
        support::{Queue, brief, collect, ensure_distinct, eventually, fail, id_set, pop_none},
    },
    ensure, ensure_eq,
};

pub(crate) fn cases() -> Vec<Case> {
    vec![
        case!(
            "concurrency::consumers_on_several_handles",
            consumers_on_several_handles
        ),
        case!(
            "concurrency::consumers_on_one_handle",
            consumers_on_one_handle
        ),
        case!("concurrency::concurrent_pushers", concurrent_pushers),
    ]
}

/// Consumer tasks.
const CONSUMERS: usize = 8;

/// Retryable errors a consumer tolerates on `pop` (a deadlock, a throttle)
/// before it gives up.
const RETRIES: usize = 20;

/// A lease no consumer outlives, so any second delivery is a real duplicate.
const LONG_LEASE: Duration = Duration::from_secs(300);

/// Pushes `n` messages in chunks the backend takes.
async fn push_volume(
    ctx: &Ctx,
    q: &Queue,
    n: usize,
) -> Result<HashSet<MessageId>, crate::CaseError> {
    let chunk = ctx.capabilities().max_batch.unwrap_or(50).clamp(1, 50);
    let msgs: Vec<Message> = (0..n)
        .map(|i| Message::new(format!("volume-{i}")))
        .collect();
    for part in msgs.chunks(chunk) {
        q.push_batch(part.to_vec()).await?;
    }
    Ok(msgs.into_iter().map(|m| m.id).collect())
}

/// Runs `CONSUMERS` tasks over `handles` handles until every message was
/// deleted, then checks each was delivered and deleted exactly once.
async fn run_consumers(ctx: &Ctx, handles: usize, batch: bool) -> CaseResult {
    let n = ctx.settings().volume;
    let options = QueueOptions::default().lease(LONG_LEASE);
    let q = ctx.queue_with(options.clone()).await?;
    let mut queues = vec![q.clone()];
    for _ in 1..handles {
        queues.push(ctx.reopen(&q, options.clone()).await?);
    }
    let ids = push_volume(ctx, &q, n).await?;
    let seen: Arc<Mutex<HashMap<MessageId, usize>>> = Arc::default();
    let deleted = Arc::new(AtomicUsize::new(0));
    let deadline = Instant::now() + Duration::from_secs(90) + ctx.settings().timing_slack * 20;
    let mut tasks = Vec::new();
    for c in 0..CONSUMERS {
        let h = queues[c % queues.len()].clone();
        let (seen, deleted) = (seen.clone(), deleted.clone());
        tasks.push(tokio::spawn(async move {
            let mut retries = 0;
            while deleted.load(Ordering::SeqCst) < n && Instant::now() < deadline {
                let got = if batch {
                    h.pop_batch(10, Duration::from_secs(1)).await
                } else {
                    h.pop(Duration::from_secs(1))
                        .await
                        .map(|d| d.into_iter().collect())
                };
                let got = match got {
                    Ok(got) => got,
                    Err(e) if e.is_retryable() && retries < RETRIES => {
                        retries += 1;
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                    Err(e) => return Err(format!("consumer {c}: pop failed: {e}")),
                };
                if got.is_empty() {
                    continue;
                }
                {
                    let mut seen = seen.lock().unwrap();
                    for d in &got {
                        *seen.entry(d.message.id.clone()).or_default() += 1;
                    }
                }
                let receipts: Vec<_> = got.iter().map(|d| d.receipt.clone()).collect();
                h.delete_batch(&receipts)
                    .await
                    .map_err(|e| format!("consumer {c}: delete_batch failed: {e}"))?;
                deleted.fetch_add(receipts.len(), Ordering::SeqCst);
            }
            Ok(())
        }));
    }
    for t in tasks {
        t.await
            .map_err(|e| fail(format!("a consumer task panicked: {e}")))?
            .map_err(fail)?;
    }
    let seen = std::mem::take(&mut *seen.lock().unwrap());
    let twice: Vec<_> = seen
        .iter()
        .filter(|(_, k)| **k > 1)
        .map(|(id, k)| format!("{id} x{k}"))
        .collect();
    let extra: usize = seen.values().map(|k| k - 1).sum();
    if ctx.settings().rare_duplicates {
        // Each extra copy was deleted too (SQS deletes by any live receipt).
        ensure!(
            extra * 10 <= n,
            "delivered more than once while leases held, more than rarely ({extra} extra copies of {n}): {}",
            twice.join(", ")
        );
    } else {
        ensure!(
            twice.is_empty(),
            "delivered more than once while leases held: {}",
            twice.join(", ")
        );
    }
    let got: HashSet<MessageId> = seen.into_keys().collect();
    ensure!(
        got.is_subset(&ids),
        "delivered messages that were never pushed"
    );
    ensure_eq!(got.len(), n, "distinct messages delivered and deleted");
    ensure_eq!(deleted.load(Ordering::SeqCst), n + extra, "deletes");
    pop_none(&q, brief(ctx), "every message was deleted").await?;
    ensure_empty(ctx, &q).await
}

/// The queue reports nothing ready, leased or delayed (at once with exact
/// stats, eventually otherwise).
async fn ensure_empty(ctx: &Ctx, q: &Queue) -> CaseResult {
    let limit = if ctx.capabilities().exact_stats {
        Duration::ZERO
    } else {
        Duration::from_secs(30)
    };
    eventually(limit, || {
        let q = q.clone();
        async move {
            let s = q.stats().await?;
            Ok((s.depth + s.in_flight + s.delayed > 0)
                .then(|| format!("the queue is not empty: {s:?}")))
        }
    })
    .await
}

/// Clause 10: 8 consumers over 3 handles, popping in batches, share the
/// volume without a duplicate delivery; every message is deleted once.
pub async fn consumers_on_several_handles(ctx: &Ctx) -> CaseResult {
    run_consumers(ctx, 3, true).await
}

/// Clause 10: 8 consumers on one handle, popping one at a time, share the
/// volume without a duplicate delivery; every message is deleted once.
pub async fn consumers_on_one_handle(ctx: &Ctx) -> CaseResult {
    run_consumers(ctx, 1, false).await
}

/// Clause 1 and 10: pushes from 4 tasks at once are all delivered, once each.
pub async fn concurrent_pushers(ctx: &Ctx) -> CaseResult {
    let n = ctx.settings().volume.max(4);
    let q = ctx
        .queue_with(QueueOptions::default().lease(LONG_LEASE))
        .await?;
    let mut tasks = Vec::new();
    for t in 0..4 {
        let q = q.clone();
        tasks.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for i in (t..n).step_by(4) {
                ids.push(q.push(Message::new(format!("pusher-{t}-{i}"))).await?);
            }
            Ok::<_, flextide_queue_core::QueueError>(ids)
        }));
    }
    let mut ids = HashSet::new();
    for t in tasks {
        ids.extend(
            t.await
                .map_err(|e| fail(format!("a pushing task panicked: {e}")))??,
        );
    }
    ensure_eq!(ids.len(), n, "distinct ids returned by push");
    let got = collect(ctx, &q, n).await?;
    ensure_distinct(&got)?;
    ensure_eq!(id_set(&got), ids, "every pushed message delivered");
    pop_none(&q, brief(ctx), "nothing beyond the pushed messages").await?;
    let receipts: Vec<_> = got.iter().map(|d| d.receipt.clone()).collect();
    q.delete_batch(&receipts).await?;
    ensure_empty(ctx, &q).await
}
