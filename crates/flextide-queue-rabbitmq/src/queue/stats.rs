//! Counts and purge: the main and dead-letter queues' counts from passive
//! declares, the delay holding queues', and what this client's handles hold
//! in process (buffered and leased deliveries the broker counts as unacked).

use std::collections::{BTreeMap, BTreeSet};

use flextide_queue_core::{QueueError, QueueStats, Result};
use lapin::{
    Channel,
    options::{
        BasicAckOptions, BasicGetOptions, BasicNackOptions, QueueDeclareOptions, QueuePurgeOptions,
    },
    types::{FieldTable, ShortString},
};
use tokio::time::Instant;

use super::{Inner, lock};
use crate::{
    BACKEND, codec, delay,
    error::{is_not_found, map, timed, timed_raw},
    link::{self, CloseWithin, Link},
};

/// How often the index of holding queues is read for stats and purge.
const PROBE_EVERY: std::time::Duration = std::time::Duration::from_secs(10);
/// At most this many index entries are read at once (one per bucket and
/// declaring handle before duplicates are removed).
const INDEX_READ_LIMIT: usize = 10_000;

impl Inner {
    /// The buckets recorded in the index: read with `basic.get` and put
    /// back in place; duplicates (one per handle that declared the bucket)
    /// are acknowledged, so the index stays at most one entry per bucket.
    async fn indexed_buckets(&self, channel: &Channel) -> Result<BTreeSet<u64>> {
        let t = self.t();
        let index = delay::index_queue(&self.name);
        // The last entry kept (not acknowledged as a duplicate): a multiple
        // nack naming an acknowledged tag is refused and closes the channel.
        let mut last_tag = None;
        let read = async {
            // Declared, not probed: a queue that never had a delay has no
            // index yet, and a passive declare would close the channel.
            link::declare(channel, t, &index, link::classic_arguments()).await?;
            let mut buckets = BTreeSet::new();
            for _ in 0..INDEX_READ_LIMIT {
                let got = timed(
                    "basic.get",
                    t,
                    channel.basic_get(
                        ShortString::from(index.as_str()),
                        BasicGetOptions { no_ack: false },
                    ),
                )
                .await?;
                let Some(got) = got else { break };
                let d = got.delivery;
                let bucket = std::str::from_utf8(&d.data)
                    .ok()
                    .and_then(|s| s.parse::<u64>().ok())
                    .filter(|b| delay::LADDER_MS.contains(b));
                if bucket.is_some_and(|b| buckets.insert(b)) {
                    last_tag = Some(d.delivery_tag);
                } else {
                    timed(
                        "basic.ack",
                        t,
                        channel.basic_ack(d.delivery_tag, BasicAckOptions { multiple: false }),
                    )
                    .await?;
                }
            }
            Ok::<_, QueueError>(buckets)
        }
        .await;
        if let Some(tag) = last_tag {
            let options = BasicNackOptions {
                multiple: true,
                requeue: true,
            };
            let _ = timed("basic.nack", t, channel.basic_nack(tag, options)).await;
        }
        read
    }

    /// Counts of the holding queues: those known here, plus those listed in
    /// the index (read at most every few seconds). Only queues known to
    /// have been declared are asked for, so no passive declare misses.
    async fn holding_counts(&self, link: &Link) -> Result<BTreeMap<u64, u64>> {
        let refresh = lock(&self.probed_at).is_none_or(|at| at.elapsed() >= PROBE_EVERY);
        let mut channel: Option<Channel> = None;
        if refresh {
            let ch = link.scratch_channel().await?;
            channel = Some(ch.clone());
            let listed = self.indexed_buckets(&ch).await;
            if listed.is_err() {
                ch.close_within(self.t()).await;
            }
            let listed = listed?;
            lock(&self.buckets).extend(listed);
            *lock(&self.probed_at) = Some(Instant::now());
        }
        let candidates: Vec<u64> = lock(&self.buckets).iter().copied().collect();
        let mut counts = BTreeMap::new();
        for bucket in candidates {
            let ch = match &channel {
                Some(c) => c.clone(),
                None => {
                    let c = link.scratch_channel().await?;
                    channel = Some(c.clone());
                    c
                }
            };
            let name = delay::holding_queue(&self.name, bucket);
            match self.passive_count(&ch, &name).await {
                Ok(n) => {
                    counts.insert(bucket, n);
                }
                Err(QueueError::QueueNotFound { .. }) => {
                    // Deleted by someone since: forgotten, so the next
                    // delayed push declares it again. The failed declare
                    // closed the channel.
                    lock(&self.buckets).remove(&bucket);
                    channel = None;
                }
                Err(e) => return Err(e),
            }
        }
        if let Some(c) = channel {
            c.close_within(self.t()).await;
        }
        Ok(counts)
    }

    async fn passive_count(&self, channel: &Channel, queue: &str) -> Result<u64> {
        let options = QueueDeclareOptions {
            passive: true,
            durable: true,
            ..QueueDeclareOptions::default()
        };
        match timed_raw(
            "queue.declare",
            self.t(),
            channel.queue_declare(ShortString::from(queue), options, FieldTable::default()),
        )
        .await?
        {
            Ok(q) => Ok(u64::from(q.message_count())),
            Err(e) if is_not_found(&e) => Err(QueueError::QueueNotFound {
                backend: BACKEND,
                queue: queue.to_owned(),
            }),
            Err(e) => Err(map(e)),
        }
    }

    /// Local counts over every handle of this queue opened by this client:
    /// (buffered, leased, oldest enqueued ms).
    fn local_counts(&self) -> (u64, u64, Option<i64>) {
        let (mut buffered, mut leased, mut oldest) = (0u64, 0u64, None::<i64>);
        for h in self.settings.handles.of(&self.name) {
            let (b, l, o) = lock(&h.state).counts();
            buffered += b;
            leased += l;
            oldest = match (oldest, o) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
        (buffered, leased, oldest)
    }

    pub(super) async fn stats(&self) -> Result<QueueStats> {
        let link = self.link().await?;
        let channel = link.scratch_channel().await?;
        let counts = async {
            let ready = self.passive_count(&channel, &self.name).await?;
            let dead = self.passive_count(&channel, &self.dlq).await?;
            Ok::<_, QueueError>((ready, dead))
        }
        .await;
        channel.close_within(self.t()).await;
        let (ready, dead) = counts?;
        let delayed: u64 = self.holding_counts(&link).await?.values().sum();
        let (buffered, leased, oldest) = self.local_counts();
        Ok(QueueStats::default()
            .with_depth(ready + buffered)
            .with_in_flight(leased)
            .with_delayed(delayed)
            .with_dead_lettered(dead)
            .with_oldest_age(oldest.map(codec::age)))
    }

    pub(super) async fn purge(&self) -> Result<u64> {
        let link = self.link().await?;
        let mut count = 0u64;
        {
            // No new deliveries while the buffer is emptied.
            let _ctl = self.consumer_ctl.lock().await;
            self.stop_consumer(&link).await;
            // Waiting messages held here go now; leased ones' future
            // redeliveries are dropped when they come due.
            let tags = lock(&self.state).purge();
            for tag in tags {
                self.ack(&link, tag).await?;
                count += 1;
            }
        }
        let channel = link.scratch_channel().await?;
        let main = timed(
            "queue.purge",
            self.t(),
            channel.queue_purge(
                ShortString::from(self.name.as_str()),
                QueuePurgeOptions::default(),
            ),
        )
        .await;
        channel.close_within(self.t()).await;
        count += u64::from(main?);
        let buckets: Vec<u64> = self
            .holding_counts(&link)
            .await?
            .into_iter()
            .filter(|(_, n)| *n > 0)
            .map(|(b, _)| b)
            .collect();
        if !buckets.is_empty() {
            let channel = link.scratch_channel().await?;
            let purged = async {
                let mut n = 0u64;
                for bucket in buckets {
                    let name = delay::holding_queue(&self.name, bucket);
                    n += u64::from(
                        timed(
                            "queue.purge",
                            self.t(),
                            channel
                                .queue_purge(ShortString::from(name), QueuePurgeOptions::default()),
                        )
                        .await?,
                    );
                }
                Ok::<_, QueueError>(n)
            }
            .await;
            channel.close_within(self.t()).await;
            count += purged?;
        }
        Ok(count)
    }
}
