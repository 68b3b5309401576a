//! One queue's group member in this process: a consumer whose task fetches
//! records into the [`Ledger`], commits what the ledger says is settled,
//! and forgets partitions a rebalance takes away. Shared by every handle a
//! [`Kafka`](crate::Kafka) client opened on the queue.

use std::collections::HashMap;
use std::sync::{
    Arc, Mutex,
    atomic::{AtomicBool, AtomicU64, Ordering},
};
use std::time::Duration;

use flextide_queue_core::Result;
use futures::FutureExt;
use rdkafka::{
    ClientContext, Offset, TopicPartitionList,
    consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer},
};
use tokio::{sync::Notify, time::Instant};

use crate::{Client, codec, error, layout, ledger::Ledger};

/// The consumer's context: sees rebalances, to commit and forget the
/// partitions taken away.
pub(crate) struct Context {
    ledger: Arc<Mutex<Ledger>>,
    topic: String,
    wake: Arc<Notify>,
    /// The first assignment arrived (the join completed).
    joined: Arc<AtomicBool>,
}

impl ClientContext for Context {}

impl ConsumerContext for Context {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let Rebalance::Revoke(revoked) = rebalance else {
            return;
        };
        let partitions: Vec<i32> = revoked
            .elements()
            .iter()
            .filter(|e| e.topic() == self.topic)
            .map(|e| e.partition())
            .collect();
        let mut ledger = self.ledger.lock().expect("ledger lock");
        // Commit what is settled before the partitions go, so the next
        // owner starts after it; what is leased here goes to that owner.
        let mut tpl = TopicPartitionList::new();
        for (p, pos) in ledger.positions() {
            if partitions.contains(&p) {
                let _ = tpl.add_partition_offset(&self.topic, p, Offset::Offset(pos));
            }
        }
        if tpl.count() > 0
            && let Err(e) = consumer.commit(&tpl, CommitMode::Sync)
        {
            tracing::warn!(error = %e, topic = %self.topic, "kafka: commit on revoke");
        }
        ledger.revoke(&partitions);
        tracing::debug!(topic = %self.topic, ?partitions, "kafka: partitions revoked");
        self.wake.notify_waiters();
    }

    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = rebalance {
            self.joined.store(true, Ordering::Release);
            tracing::debug!(topic = %self.topic, count = tpl.count(), "kafka: partitions assigned");
        }
    }
}

type Member = StreamConsumer<Context>;

/// A running consumer and the task that polls it.
struct Running {
    consumer: Arc<Member>,
    joined: Arc<AtomicBool>,
    stop: Arc<Notify>,
    task: tokio::task::JoinHandle<()>,
}

/// One queue's consumer in this process, started by the first pop.
pub(crate) struct Engine {
    pub(crate) client: Arc<Client>,
    pub(crate) queue: String,
    pub(crate) topic: String,
    pub(crate) ledger: Arc<Mutex<Ledger>>,
    pub(crate) wake: Arc<Notify>,
    /// Pops took records from the ledger: a paused fetch may resume.
    pub(crate) taken: Arc<Notify>,
    /// A settle moved a partition's position: commit soon.
    commits: Arc<Notify>,
    running: tokio::sync::Mutex<Option<Running>>,
    /// The topics were created (or found) by this process.
    pub(crate) topics_ready: AtomicBool,
    /// Fencing tokens: a random prefix per engine and a counter, unique
    /// across processes without a random draw per delivery.
    token_prefix: String,
    token_next: AtomicU64,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("topic", &self.topic)
            .finish()
    }
}

impl Engine {
    pub(crate) fn new(client: Arc<Client>, queue: &str) -> Self {
        Engine {
            client,
            queue: queue.to_owned(),
            topic: layout::topic(queue),
            ledger: Arc::new(Mutex::new(Ledger::default())),
            wake: Arc::new(Notify::new()),
            taken: Arc::new(Notify::new()),
            commits: Arc::new(Notify::new()),
            running: tokio::sync::Mutex::new(None),
            topics_ready: AtomicBool::new(false),
            token_prefix: flextide_queue_core::backend::new_token(),
            token_next: AtomicU64::new(0),
        }
    }

    /// A fresh fencing token for one delivery.
    pub(crate) fn token(&self) -> String {
        let n = self.token_next.fetch_add(1, Ordering::Relaxed);
        format!("{}{n:x}", self.token_prefix)
    }

    /// Creates the queue's topics unless this process already did.
    pub(crate) async fn ensure_topics(&self) -> Result<()> {
        if self.topics_ready.load(Ordering::Acquire) {
            return Ok(());
        }
        super::admin::create_topics(&self.client, &self.queue).await?;
        self.topics_ready.store(true, Ordering::Release);
        Ok(())
    }

    /// Starts the consumer (joining the queue's group) unless it runs.
    pub(crate) async fn ensure_consumer(&self) -> Result<()> {
        let mut running = self.running.lock().await;
        if running.as_ref().is_some_and(|r| !r.task.is_finished()) {
            return Ok(());
        }
        self.ensure_topics().await?;
        let joined = Arc::new(AtomicBool::new(false));
        let context = Context {
            ledger: self.ledger.clone(),
            topic: self.topic.clone(),
            wake: self.wake.clone(),
            joined: joined.clone(),
        };
        let consumer: Member = super::admin::consumer_config(&self.client, &self.queue)
            .create_with_context(context)
            .map_err(|e| error::map("create consumer", e))?;
        consumer
            .subscribe(&[&self.topic])
            .map_err(|e| error::map("subscribe", e))?;
        let consumer = Arc::new(consumer);
        let stop = Arc::new(Notify::new());
        let task = tokio::spawn(poll_loop(Poll {
            consumer: consumer.clone(),
            topic: self.topic.clone(),
            stop: stop.clone(),
            ledger: self.ledger.clone(),
            wake: self.wake.clone(),
            taken: self.taken.clone(),
            commits: self.commits.clone(),
            max_buffered: self.client.config.max_buffered,
            pause_after: pause_after(self.client.config.session_timeout),
        }));
        *running = Some(Running {
            consumer,
            joined,
            stop,
            task,
        });
        Ok(())
    }

    /// Waits up to `timeout` for the running consumer's first assignment
    /// (its group join finished); false when it did not come in time or no
    /// consumer runs.
    pub(crate) async fn wait_joined(&self, timeout: Duration) -> bool {
        let Some(joined) = self.running.lock().await.as_ref().map(|r| r.joined.clone()) else {
            return false;
        };
        let until = Instant::now() + timeout;
        loop {
            if joined.load(Ordering::Acquire) {
                return true;
            }
            if Instant::now() >= until {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Whether the consumer runs (so the ledger is this process's view).
    pub(crate) async fn is_running(&self) -> bool {
        self.running.lock().await.is_some()
    }

    /// A settle moved a partition's commit position: the poll task
    /// commits the ledger's positions within [`COMMIT_EVERY`]
    /// (asynchronously: a commit lost in a crash only means the settled
    /// records behind it come again). Leaving the group, or losing
    /// partitions to a rebalance, commits at once.
    pub(crate) fn commit_soon(&self) {
        self.commits.notify_one();
    }

    /// Stops the consumer: commits what is settled, leaves the group and
    /// forgets every lease (its records go to the group's other members).
    pub(crate) async fn stop(&self) {
        let Some(r) = self.running.lock().await.take() else {
            return;
        };
        // A member that leaves in the middle of its first join can leave
        // tansu's group stuck, so that no later member is ever assigned
        // (Apache Kafka drops such a member after its session timeout):
        // let the join finish first, for a while.
        let until = tokio::time::Instant::now() + self.client.config.session_timeout * 2;
        while !r.joined.load(Ordering::Acquire) && tokio::time::Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        r.stop.notify_one();
        let _ = r.task.await;
        let positions = self.ledger.lock().expect("ledger lock").positions();
        self.ledger.lock().expect("ledger lock").clear();
        let topic = self.topic.clone();
        let consumer = r.consumer;
        // Committing and leaving the group block on the broker.
        let _ = tokio::task::spawn_blocking(move || leave(consumer, &topic, positions)).await;
        self.wake.notify_waiters();
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        let Some(r) = self.running.get_mut().take() else {
            return;
        };
        r.stop.notify_one();
        let consumer = r.consumer;
        let positions = self
            .ledger
            .lock()
            .map(|l| l.positions())
            .unwrap_or_default();
        let topic = self.topic.clone();
        let joined = r.joined;
        let join_wait = self.client.config.session_timeout * 2;
        // Leaving the group blocks: on a thread of its own, once the poll
        // task let go of the consumer and the first join finished (see
        // `stop`); `drop_queue` waits for it.
        let closing = std::thread::spawn(move || {
            let until = std::time::Instant::now() + join_wait;
            while !joined.load(Ordering::Acquire) && std::time::Instant::now() < until {
                std::thread::sleep(Duration::from_millis(20));
            }
            let until = std::time::Instant::now() + Duration::from_secs(10);
            while Arc::strong_count(&consumer) > 1 && std::time::Instant::now() < until {
                std::thread::sleep(Duration::from_millis(5));
            }
            leave(consumer, &topic, positions);
        });
        self.client
            .closing
            .lock()
            .expect("closing lock")
            .push((self.queue.clone(), closing));
    }
}

/// Commits the settled positions and leaves the group (blocking).
fn leave(consumer: Arc<Member>, topic: &str, positions: Vec<(i32, i64)>) {
    let mut tpl = TopicPartitionList::new();
    for (p, pos) in positions {
        let _ = tpl.add_partition_offset(topic, p, Offset::Offset(pos));
    }
    if tpl.count() > 0 {
        let _ = consumer.commit(&tpl, CommitMode::Sync);
    }
    consumer.unsubscribe();
}

/// How long the ledger may stay full before the fetch is paused: one
/// session timeout, a third of `max.poll.interval.ms` (three session
/// timeouts, at least 3 s), since not polling that long would drop the
/// member from the group. Until then the task only stops taking records
/// from librdkafka, whose own queue keeps what it prefetched (bounded by
/// `queued.max.messages.kbytes`): a pause drops that prefetch, and every
/// fetch after the resume is a broker round trip. With a pause after 1 s,
/// a backlog written while the consumer waited full was fetched again
/// after the resume, and the 100,000-message burn-down ran at a twentieth
/// of the raw client's rate.
fn pause_after(session_timeout: Duration) -> Duration {
    session_timeout.max(Duration::from_secs(1))
}

/// Settled positions are committed at most this often (each commit is a
/// broker request; one per delete cut the worker's rate to a quarter of
/// the raw client's). A crash loses at most this much of commits: the
/// records settled in it come again.
const COMMIT_EVERY: Duration = Duration::from_millis(20);

/// What the poll task works with.
struct Poll {
    consumer: Arc<Member>,
    topic: String,
    stop: Arc<Notify>,
    ledger: Arc<Mutex<Ledger>>,
    wake: Arc<Notify>,
    taken: Arc<Notify>,
    commits: Arc<Notify>,
    max_buffered: usize,
    pause_after: Duration,
}

/// Polls the consumer until told to stop: records into the ledger (waking
/// waiting pops), no more taken while the ledger is full (paused when it
/// stays full), settled positions committed every [`COMMIT_EVERY`].
async fn poll_loop(p: Poll) {
    let mut paused = false;
    let mut full_since: Option<Instant> = None;
    let mut commit_at: Option<Instant> = None;
    let mut committed: HashMap<i32, i64> = HashMap::new();
    loop {
        let now = Instant::now();
        let held = p
            .ledger
            .lock()
            .expect("ledger lock")
            .ready_len(flextide_queue_core::backend::now_millis());
        let full = held >= p.max_buffered;
        full_since = if full { full_since.or(Some(now)) } else { None };
        if !paused
            && full_since.is_some_and(|t| now >= t + p.pause_after)
            && let Ok(a) = p.consumer.assignment()
        {
            paused = p.consumer.pause(&a).is_ok();
        } else if paused
            && held < p.max_buffered / 2 + 1
            && let Ok(a) = p.consumer.assignment()
        {
            paused = p.consumer.resume(&a).is_err();
        }
        // Paused partitions deliver nothing, but polling serves the
        // group's events (rebalances).
        let take = !full || paused;
        let recheck = match full_since {
            Some(t) if !paused => t + p.pause_after,
            _ => now + Duration::from_millis(200),
        };
        tokio::select! {
            _ = p.stop.notified() => return,
            got = p.consumer.recv(), if take => match got {
                Ok(m) => {
                    let mut batch = vec![codec::Raw::of(&m)];
                    drop(m);
                    // Take what else is already fetched before waking the
                    // pops, so a batch pop sees the whole fetch.
                    while batch.len() < 500 {
                        match p.consumer.recv().now_or_never() {
                            Some(Ok(m)) => batch.push(codec::Raw::of(&m)),
                            _ => break,
                        }
                    }
                    let mut l = p.ledger.lock().expect("ledger lock");
                    for raw in batch {
                        let decoded = codec::decode(&raw);
                        l.fetched(raw, decoded);
                    }
                    drop(l);
                    p.wake.notify_waiters();
                }
                Err(e) => {
                    tracing::debug!(error = %e, "kafka: consumer");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            // Re-check as soon as pops take records.
            _ = p.taken.notified(), if full || paused => {}
            _ = tokio::time::sleep_until(recheck), if full || paused => {}
            _ = p.commits.notified(), if commit_at.is_none() => {
                commit_at = Some(now + COMMIT_EVERY);
            }
            _ = tokio::time::sleep_until(commit_at.unwrap_or(now)), if commit_at.is_some() => {
                commit_at = None;
                let positions = p.ledger.lock().expect("ledger lock").positions();
                let mut tpl = TopicPartitionList::new();
                for (partition, pos) in positions {
                    if committed.insert(partition, pos) != Some(pos) {
                        let _ = tpl.add_partition_offset(&p.topic, partition, Offset::Offset(pos));
                    }
                }
                if tpl.count() > 0
                    && let Err(e) = p.consumer.commit(&tpl, CommitMode::Async)
                {
                    tracing::warn!(error = %e, topic = %p.topic, "kafka: commit");
                }
            }
        }
    }
}
