//! One queue's group member in this process: a consumer whose task fetches
//! records into the [`Ledger`], commits what the ledger says is settled,
//! and forgets partitions a rebalance takes away. Shared by every handle a
//! [`Kafka`](crate::Kafka) client opened on the queue.

use std::sync::{
    Arc, Mutex,
    atomic::{AtomicBool, Ordering},
};
use std::time::Duration;

use flextide_queue_core::Result;
use futures::FutureExt;
use rdkafka::{
    ClientContext, Offset, TopicPartitionList,
    consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer},
};
use tokio::sync::Notify;

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
    running: tokio::sync::Mutex<Option<Running>>,
    /// The topics were created (or found) by this process.
    pub(crate) topics_ready: AtomicBool,
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
            running: tokio::sync::Mutex::new(None),
            topics_ready: AtomicBool::new(false),
        }
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
        let task = tokio::spawn(poll_loop(
            consumer.clone(),
            stop.clone(),
            self.ledger.clone(),
            self.wake.clone(),
            self.client.config.max_buffered,
        ));
        *running = Some(Running {
            consumer,
            joined,
            stop,
            task,
        });
        Ok(())
    }

    /// Whether the consumer runs (so the ledger is this process's view).
    pub(crate) async fn is_running(&self) -> bool {
        self.running.lock().await.is_some()
    }

    /// Commits a partition's new position (asynchronously: a commit lost in
    /// a crash only means the settled records behind it come again).
    pub(crate) async fn commit(&self, partition: i32, position: i64) {
        let running = self.running.lock().await;
        let Some(r) = running.as_ref() else { return };
        let mut tpl = TopicPartitionList::new();
        let _ = tpl.add_partition_offset(&self.topic, partition, Offset::Offset(position));
        if let Err(e) = r.consumer.commit(&tpl, CommitMode::Async) {
            tracing::warn!(error = %e, topic = %self.topic, "kafka: commit");
        }
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

/// Polls the consumer until told to stop: records into the ledger (waking
/// waiting pops), fetching paused while the ledger is full.
async fn poll_loop(
    consumer: Arc<Member>,
    stop: Arc<Notify>,
    ledger: Arc<Mutex<Ledger>>,
    wake: Arc<Notify>,
    max_buffered: usize,
) {
    let mut paused = false;
    loop {
        let held = ledger
            .lock()
            .expect("ledger lock")
            .ready_len(flextide_queue_core::backend::now_millis());
        if !paused && held >= max_buffered {
            if let Ok(a) = consumer.assignment() {
                paused = consumer.pause(&a).is_ok();
            }
        } else if paused
            && held < max_buffered / 2 + 1
            && let Ok(a) = consumer.assignment()
        {
            paused = consumer.resume(&a).is_err();
        }
        tokio::select! {
            _ = stop.notified() => return,
            got = consumer.recv() => match got {
                Ok(m) => {
                    let mut batch = vec![codec::Raw::of(&m)];
                    drop(m);
                    // Take what else is already fetched before waking the
                    // pops, so a batch pop sees the whole fetch.
                    while batch.len() < 500 {
                        match consumer.recv().now_or_never() {
                            Some(Ok(m)) => batch.push(codec::Raw::of(&m)),
                            _ => break,
                        }
                    }
                    let mut l = ledger.lock().expect("ledger lock");
                    for raw in batch {
                        let decoded = codec::decode(&raw);
                        l.fetched(raw, decoded);
                    }
                    drop(l);
                    wake.notify_waiters();
                }
                Err(e) => {
                    tracing::debug!(error = %e, "kafka: consumer");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            // Re-check the pause while nothing arrives.
            _ = tokio::time::sleep(Duration::from_millis(200)), if paused => {}
        }
    }
}
