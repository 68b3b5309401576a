//! Counts from offsets: per partition, the records between the group's
//! position and the high watermark are waiting or in flight; what this
//! process leased or holds delayed is counted from its ledger. Other
//! processes' leases and delays are counted as waiting, so the figures are
//! approximate (`exact_stats: false`).

use std::time::Duration;

use flextide_queue_core::{QueueStats, Result, backend::now_millis};
use tokio::time::Instant;

use super::{KafkaQueue, admin, dead};

pub(crate) async fn stats(q: &KafkaQueue) -> Result<QueueStats> {
    let Some(partitions) = admin::partitions(&q.client, &q.topic).await? else {
        return Ok(QueueStats::default());
    };
    let marks = admin::watermarks(&q.client, &q.topic, &partitions).await?;
    let committed = admin::committed(&q.client, &q.name, &partitions).await?;
    let now_ms = now_millis();
    let (counts, held) = {
        let ledger = q.engine.ledger.lock().expect("ledger lock");
        (
            ledger.counts(Instant::now(), now_ms),
            ledger.partitions(now_ms),
        )
    };
    let mut depth: u64 = 0;
    for (p, lo, hi) in marks {
        match held.iter().find(|(q, _, _)| *q == p) {
            // A partition this process consumes: what it holds ready, and
            // what it has not fetched yet.
            Some((_, next_fetch, ready)) => {
                let fetched_to = next_fetch.unwrap_or(lo).max(lo);
                depth += ready + (hi - fetched_to).max(0) as u64;
            }
            // Another member's (or nobody's): everything after the commit,
            // leased or not.
            None => {
                let from = committed
                    .iter()
                    .find(|(q, _)| *q == p)
                    .and_then(|(_, c)| *c)
                    .unwrap_or(lo)
                    .max(lo);
                depth += (hi - from).max(0) as u64;
            }
        }
    }
    let oldest_age = counts
        .oldest
        .map(|at| Duration::from_millis((now_millis() - at).max(0) as u64));
    Ok(QueueStats::default()
        .with_depth(depth)
        .with_in_flight(counts.leased)
        .with_delayed(counts.delayed)
        .with_dead_lettered(dead::count(q).await?)
        .with_oldest_age(oldest_age))
}
