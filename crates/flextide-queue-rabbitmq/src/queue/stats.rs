//! Counts and purge: the main and dead-letter queues' counts from passive
//! declares, the delay holding queues', and what this client's handles hold
//! in process (buffered and leased deliveries the broker counts as unacked).

use std::collections::{BTreeMap, BTreeSet};

use flextide_queue_core::{QueueError, QueueStats, Result};
use futures::future::join_all;
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
    /// back in place. Every declaration of a bucket writes an entry that
    /// expires before the holding queue could; of several entries for one
    /// bucket the latest (longest-lived) is kept and the older ones are
    /// acknowledged, so the index stays about one entry per bucket.
    async fn indexed_buckets(&self, channel: &Channel) -> Result<BTreeSet<u64>> {
        let t = self.t();
        let index = delay::index_queue(&self.name, self.queue_type());
        // The last entry kept (never acknowledged after): a multiple nack
        // naming an acknowledged tag is refused and closes the channel.
        let mut last_tag = None;
        let read = async {
            // Declared, not probed: a queue that never had a delay has no
            // index yet, and a passive declare would close the channel.
            // Only called once the main queue is known to exist.
            link::declare(channel, t, &index, link::index_arguments()).await?;
            let mut kept: BTreeMap<u64, u64> = BTreeMap::new();
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
                let older = match bucket {
                    Some(b) => {
                        last_tag = Some(d.delivery_tag);
                        kept.insert(b, d.delivery_tag)
                    }
                    None => Some(d.delivery_tag),
                };
                if let Some(tag) = older {
                    timed(
                        "basic.ack",
                        t,
                        channel.basic_ack(tag, BasicAckOptions { multiple: false }),
                    )
                    .await?;
                }
            }
            let buckets: BTreeSet<u64> = kept.into_keys().collect();
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
    /// have been declared are asked for, all at once on one channel (the
    /// passive declares are pipelined: one round trip however many buckets
    /// are in use), so no passive declare misses unless a holding queue
    /// expired (`x-expires`) or was deleted since; such a bucket is
    /// forgotten and counts nothing this time.
    async fn holding_counts(&self, link: &Link) -> Result<BTreeMap<u64, u64>> {
        let refresh = lock(&self.probed_at).is_none_or(|at| at.elapsed() >= PROBE_EVERY);
        let ch = link.scratch_channel().await?;
        if refresh {
            let listed = self.indexed_buckets(&ch).await;
            if listed.is_err() {
                ch.close_within(self.t()).await;
            }
            let listed = listed?;
            let mut known = lock(&self.buckets);
            for bucket in listed {
                known.entry(bucket).or_insert(None);
            }
            drop(known);
            *lock(&self.probed_at) = Some(Instant::now());
        }
        let candidates: Vec<u64> = lock(&self.buckets).keys().copied().collect();
        let asked = join_all(candidates.into_iter().map(|bucket| {
            let ch = &ch;
            async move {
                let name = delay::holding_queue(&self.name, self.queue_type(), bucket);
                (bucket, self.passive_count(ch, &name).await)
            }
        }))
        .await;
        let mut counts = BTreeMap::new();
        let (mut failed, mut missing) = (None, false);
        for (bucket, asked) in asked {
            match asked {
                Ok(n) => {
                    counts.insert(bucket, n);
                }
                Err(QueueError::QueueNotFound { .. }) => {
                    // Expired or deleted since: forgotten, so the next
                    // delayed push declares it again.
                    lock(&self.buckets).remove(&bucket);
                    missing = true;
                }
                Err(e) => failed = failed.or(Some(e)),
            }
        }
        ch.close_within(self.t()).await;
        match failed {
            // Not an error of its own when a miss closed the channel under
            // the other declares.
            Some(e) if !missing => Err(e),
            _ => Ok(counts),
        }
    }

    /// Whether the main queue exists: known on this connection once
    /// declared or seen, else asked with one passive declare. A queue never
    /// written to does not exist, and read-only calls then create nothing.
    /// (lapin logs the broker's refusal of that passive declare at ERROR
    /// level; it happens once per connection and name, only for a queue
    /// that was never created or was dropped.)
    pub(super) async fn present(&self, link: &Link) -> Result<bool> {
        if link.seen() {
            return Ok(true);
        }
        let ch = link.scratch_channel().await?;
        let found = self.passive_count(&ch, &self.name).await;
        ch.close_within(self.t()).await;
        match found {
            Ok(_) => {
                link.mark_seen();
                Ok(true)
            }
            Err(QueueError::QueueNotFound { .. }) => Ok(false),
            Err(e) => Err(e),
        }
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
        let (buffered, leased, oldest) = self.local_counts();
        let channel = link.scratch_channel().await?;
        let counts = async {
            let ready = match self.passive_count(&channel, &self.name).await {
                Ok(n) => n,
                // Never written to (or dropped): nothing to count, nothing
                // to create. The miss closed the channel.
                Err(QueueError::QueueNotFound { .. }) => return Ok(None),
                Err(e) => return Err(e),
            };
            link.mark_seen();
            let dead = self.passive_count(&channel, &self.dlq).await?;
            Ok::<_, QueueError>(Some((ready, dead)))
        }
        .await;
        channel.close_within(self.t()).await;
        let Some((ready, dead)) = counts? else {
            return Ok(QueueStats::default()
                .with_depth(buffered)
                .with_in_flight(leased)
                .with_oldest_age(oldest.map(codec::age)));
        };
        let delayed: u64 = self.holding_counts(&link).await?.values().sum();
        Ok(QueueStats::default()
            .with_depth(ready + buffered)
            .with_in_flight(leased)
            .with_delayed(delayed)
            .with_dead_lettered(dead)
            .with_oldest_age(oldest.map(codec::age)))
    }

    pub(super) async fn purge(&self) -> Result<u64> {
        let link = self.link().await?;
        if !self.present(&link).await? {
            return Ok(0);
        }
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
                    let name = delay::holding_queue(&self.name, self.queue_type(), bucket);
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
