//! A queue handle: publishing with confirms, a demand-driven consumer that
//! buffers deliveries in process, and leases kept on this process's clock.
//!
//! RabbitMQ has no visibility timeout: a delivery belongs to its channel
//! until it is acknowledged or the channel closes. So the lease lives here:
//! each delivery handed to a caller gets a deadline and a fencing token
//! (the receipt names the handle, the link generation, the delivery tag and
//! the token). A background task of the handle watches the deadlines; when
//! one passes unsettled, it republishes the message with its attempt count
//! raised (or dead-letters it when the attempts are used up) and only then
//! acknowledges the old delivery, so the message is never lost and the old
//! receipt is stale from that moment.
//!
//! One job per file: [`state`] is the lease state machine (pure, tested on
//! a paused clock); `consumer` the pop path (subscription, prefetch,
//! `basic.get`); `publish` pushes and delays; `settle` acknowledgements
//! and the settling calls; `release` giving a delivery back uncounted;
//! `housekeeping` the background pass;
//! `dead_letters` the dead-letter queue; `stats` counts and purge; `close`
//! the end of a handle (prefetched deliveries given back uncounted).

mod close;
mod consumer;
mod dead_letters;
mod drop;
mod housekeeping;
mod publish;
mod receipt;
mod release;
mod settle;
mod state;
mod stats;

use std::{
    collections::HashMap,
    fmt,
    hash::{BuildHasher, Hasher},
    sync::{
        Arc, Mutex, MutexGuard, Weak,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, SystemTime},
};

use async_trait::async_trait;
use flextide_queue_core::{
    Capabilities, DeadLetter, Delivery, Message, MessageId, QueueError, QueueOptions,
    QueueProvider, QueueStats, Receipt, Replay, Result, backend::check_payload,
};
use lapin::types::ShortString;
use tokio::sync::{Notify, watch};

use crate::{BACKEND, Settings, codec, delay, link::Link};
use close::CloseOnDrop;
pub(crate) use drop::delete_with_own_connection;
use state::State;

/// Name of a queue's dead-letter queue.
pub(crate) fn dlq_name(queue: &str) -> String {
    format!("{queue}.dlq")
}

/// The live handles of one client, by uid, so a receipt can be settled
/// through any handle of its queue (the delivery lives on its own handle's
/// channel). Owned by the client ([`Settings`]), not the process: two
/// clients never see each other's handles.
#[derive(Default)]
pub(crate) struct Handles(Mutex<HashMap<u64, Weak<Inner>>>);

impl Handles {
    fn insert(&self, inner: &Arc<Inner>) {
        lock(&self.0).insert(inner.uid, Arc::downgrade(inner));
    }

    fn remove(&self, uid: u64) {
        lock(&self.0).remove(&uid);
    }

    fn get(&self, uid: u64) -> Option<Arc<Inner>> {
        lock(&self.0).get(&uid).and_then(Weak::upgrade)
    }

    /// The live handles of the queue `name`.
    fn of(&self, name: &str) -> Vec<Arc<Inner>> {
        let live: Vec<Arc<Inner>> = lock(&self.0).values().filter_map(Weak::upgrade).collect();
        // Filtered after the lock is released: the handles of other queues
        // are dropped here, and the last reference to one runs its `Drop`,
        // which takes this lock (a std mutex: it would deadlock the thread).
        live.into_iter().filter(|h| h.name == name).collect()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn fresh_uid() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.write_u128(
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.finish() | 1
}

fn lost() -> QueueError {
    QueueError::connection(
        BACKEND,
        "the connection to the broker was lost; the next call reconnects",
    )
}

fn closed() -> QueueError {
    QueueError::backend_error(BACKEND, false, "this queue handle was closed")
}

/// Runs `work` in a task of its own and waits for it: dropping the wait
/// (a pop cut short, contract clause 13) does not cut the work short.
async fn detached<T: Send + 'static>(
    work: impl std::future::Future<Output = Result<T>> + Send + 'static,
) -> Result<T> {
    match tokio::spawn(work).await {
        Ok(result) => result,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => Err(QueueError::backend_error(BACKEND, true, e.to_string())),
    }
}

pub(crate) struct Inner {
    uid: u64,
    name: String,
    dlq: String,
    options: QueueOptions,
    settings: Arc<Settings>,
    link: Mutex<Option<Arc<Link>>>,
    reconnecting: tokio::sync::Mutex<()>,
    consumer_ctl: tokio::sync::Mutex<()>,
    generations: AtomicU64,
    state: Mutex<State>,
    notify: Notify,
    shutdown: watch::Sender<()>,
    /// Holding queues known to exist: declared here (with when, so they are
    /// declared again before their `x-expires` could pass) or listed in
    /// the index (`None`).
    buckets: Mutex<HashMap<u64, Option<tokio::time::Instant>>>,
    probed_at: Mutex<Option<tokio::time::Instant>>,
    /// Held by a background pass while it runs, so `close` can wait for it.
    housekeeping: tokio::sync::Mutex<()>,
    /// `close` ran (or is running): no reconnect, no new subscription.
    closed: AtomicBool,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.settings.handles.remove(self.uid);
        if let Some(link) = lock(&self.link).take() {
            link.close_in_background();
        }
    }
}

/// One handle on a RabbitMQ queue; implements [`QueueProvider`].
///
/// Open it with [`RabbitMq::open`](crate::RabbitMq::open). A handle owns one
/// connection, reconnects on the call after a failure, and keeps the leases
/// of the deliveries it handed out (see the crate documentation for what a
/// lease means on RabbitMQ). Cloning is cheap and shares the handle.
///
/// End it with [`QueueProvider::close`]: deliveries it received but never
/// handed out go back without an attempt counted. When the last clone is
/// dropped without `close`, the same is done in a background task (when a
/// tokio runtime is running); a process that dies leaves them to the
/// broker, which counts a delivery for each.
#[derive(Clone)]
pub struct RabbitMqQueue {
    inner: Arc<Inner>,
    _close_on_drop: Arc<CloseOnDrop>,
}

impl fmt::Debug for RabbitMqQueue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RabbitMqQueue")
            .field("name", &self.inner.name)
            .field("broker", &self.inner.settings.shown)
            .field("options", &self.inner.options)
            .finish()
    }
}

impl RabbitMqQueue {
    pub(crate) async fn open(
        settings: Arc<Settings>,
        name: &str,
        options: QueueOptions,
    ) -> Result<Self> {
        let (shutdown, _) = watch::channel(());
        let uid = fresh_uid();
        let state = State::new(uid, &options, settings.config.expired_grace);
        let inner = Arc::new(Inner {
            uid,
            name: name.to_owned(),
            dlq: dlq_name(name),
            options,
            settings,
            link: Mutex::new(None),
            reconnecting: tokio::sync::Mutex::new(()),
            consumer_ctl: tokio::sync::Mutex::new(()),
            generations: AtomicU64::new(0),
            state: Mutex::new(state),
            notify: Notify::new(),
            shutdown,
            buckets: Mutex::new(HashMap::new()),
            probed_at: Mutex::new(None),
            housekeeping: tokio::sync::Mutex::new(()),
            closed: AtomicBool::new(false),
        });
        // Connect now, so a wrong URL or refused login shows at open; the
        // queue is declared by the first write or pop.
        inner.link().await?;
        inner.settings.handles.insert(&inner);
        housekeeping::spawn(&inner);
        Ok(RabbitMqQueue {
            _close_on_drop: Arc::new(CloseOnDrop(inner.clone())),
            inner,
        })
    }

    /// Declares the queue and its dead-letter queue now. A handle declares
    /// them by itself on its first write or pop; call this when another
    /// producer publishes to the queue before any Flextide handle wrote to
    /// it (a publish to a queue that does not exist is dropped by the broker).
    pub async fn declare(&self) -> Result<()> {
        self.inner.ready_link().await.map(drop)
    }

    /// Whether the queue exists on the broker (declared by any client),
    /// asked without creating it.
    pub async fn exists(&self) -> Result<bool> {
        let link = self.inner.link().await?;
        self.inner.present(&link).await
    }

    /// Closes this handle's connection as if it had dropped: deliveries it
    /// holds (leased or buffered) go back to the broker, their receipts
    /// become stale, and the next call reconnects. Meant for tests of
    /// connection loss.
    pub async fn disconnect(&self) {
        let link = lock(&self.inner.link).clone();
        if let Some(link) = link {
            let _ = tokio::time::timeout(
                Duration::from_secs(5),
                link.connection
                    .close(320, ShortString::from("closed by disconnect()")),
            )
            .await;
        }
    }

    /// The connection name this handle shows the broker (the
    /// `connection_name` client property), if it is connected.
    pub fn connection_name(&self) -> Option<String> {
        lock(&self.inner.link).as_ref().map(|l| l.name.clone())
    }
}

impl Inner {
    fn t(&self) -> Duration {
        self.settings.config.operation_timeout
    }

    /// The main queue's type, which its holding queues follow.
    fn queue_type(&self) -> crate::QueueType {
        self.settings.config.queue_type
    }

    /// The current link when it is usable.
    fn current_link(&self) -> Option<Arc<Link>> {
        let link = lock(&self.link).clone()?;
        let st = lock(&self.state);
        (link.healthy() && st.generation == link.generation && !st.broken).then_some(link)
    }

    /// Passes a result through; a timeout on a connection the broker has not
    /// blocked means the connection is dead without our knowing (a silent
    /// network failure): the next call replaces it.
    fn check_link<T>(&self, link: &Link, result: Result<T>) -> Result<T> {
        if let Err(QueueError::Timeout { .. }) = &result
            && !link.connection.status().blocked()
        {
            self.mark_broken(link);
        }
        result
    }

    /// The link is to be replaced on the next call.
    fn mark_broken(&self, link: &Link) {
        let mut st = lock(&self.state);
        if st.generation == link.generation {
            st.broken = true;
        }
    }

    /// The current link, reconnecting first when it is gone.
    async fn link(&self) -> Result<Arc<Link>> {
        if self.is_closed() {
            return Err(closed());
        }
        if let Some(link) = self.current_link() {
            return Ok(link);
        }
        let _guard = self.reconnecting.lock().await;
        if let Some(link) = self.current_link() {
            return Ok(link);
        }
        if self.is_closed() {
            return Err(closed());
        }
        if let Some(old) = lock(&self.link).take() {
            old.close_in_background();
        }
        let generation = self.generations.fetch_add(1, Ordering::Relaxed) + 1;
        let name = format!(
            "flextide-queue-rabbitmq/{}/{:x}/{}",
            self.name, self.uid, generation
        );
        let link = Arc::new(Link::open(&self.settings, generation, name).await?);
        lock(&self.state).reset(generation);
        *lock(&self.link) = Some(link.clone());
        if generation > 1 {
            tracing::info!(queue = %self.name, broker = %self.settings.shown, generation, "rabbitmq: reconnected");
        }
        self.notify.notify_waiters();
        Ok(link)
    }

    /// The current link with the queue declared on it: for every call that
    /// writes or consumes (read-only calls use [`Inner::link`] and create
    /// nothing).
    async fn ready_link(&self) -> Result<Arc<Link>> {
        let link = self.link().await?;
        let declared = link
            .declare_topology(&self.settings, &self.name, &self.dlq)
            .await;
        self.check_link(&link, declared)?;
        Ok(link)
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            fifo: false,
            ordering_key: false,
            priority: false,
            delay: true,
            max_delay: Some(delay::MAX_DELAY),
            max_payload_bytes: Some(self.settings.config.max_payload_bytes),
            max_batch: Some(self.settings.config.max_batch),
            extend_lease: true,
            fenced_receipts: true,
            dead_letters: true,
            dedup: false,
            dedup_window: None,
            delete_dead_letters: true,
            exact_stats: false,
            peek: false,
            purge: true,
            release: true,
            drop_queue: true,
            blind_stats: false,
        }
    }

    /// Refuses what this backend cannot carry, before anything is sent.
    fn check(&self, message: &Message) -> Result<()> {
        check_payload(
            BACKEND,
            message.payload.len(),
            Some(self.settings.config.max_payload_bytes),
        )?;
        if message.priority > 0 {
            return Err(QueueError::unsupported(BACKEND, "priority"));
        }
        if message.ordering_key.is_some() {
            return Err(QueueError::unsupported(BACKEND, "ordering_key"));
        }
        if message.dedup_id.is_some() {
            return Err(QueueError::unsupported(BACKEND, "dedup"));
        }
        if let Some(d) = message.delay
            && d > delay::MAX_DELAY
        {
            return Err(QueueError::invalid_message(
                BACKEND,
                format!("delay {d:?} exceeds the maximum of 7 days"),
            ));
        }
        codec::check_message(message)
    }
}

#[async_trait]
impl QueueProvider for RabbitMqQueue {
    fn queue_name(&self) -> &str {
        &self.inner.name
    }

    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }

    async fn push(&self, message: Message) -> Result<MessageId> {
        self.inner.push(message).await
    }

    async fn push_batch(&self, messages: Vec<Message>) -> Result<Vec<MessageId>> {
        self.inner.push_batch(messages).await
    }

    async fn pop_batch(&self, max: usize, wait: Duration) -> Result<Vec<Delivery>> {
        self.inner.pop_batch(max, wait).await
    }

    async fn delete(&self, receipt: &Receipt) -> Result<()> {
        self.inner.delete(receipt).await
    }

    async fn delete_batch(&self, receipts: &[Receipt]) -> Result<()> {
        self.inner.delete_batch(receipts).await
    }

    async fn nack(&self, receipt: &Receipt, delay: Duration) -> Result<()> {
        self.inner.nack(receipt, delay).await
    }

    async fn release(&self, receipt: &Receipt) -> Result<()> {
        self.inner.release(receipt).await
    }

    async fn extend(&self, receipt: &Receipt, by: Duration) -> Result<()> {
        self.inner.extend(receipt, by)
    }

    async fn dead_letter(&self, receipt: &Receipt, reason: &str) -> Result<()> {
        self.inner.dead_letter(receipt, reason).await
    }

    async fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>> {
        self.inner.dead_letters(limit).await
    }

    async fn replay_dead_letters(&self, which: Replay) -> Result<u64> {
        self.inner.replay_dead_letters(which).await
    }

    async fn delete_dead_letters(&self, ids: &[MessageId]) -> Result<u64> {
        self.inner.delete_dead_letters(ids).await
    }

    async fn purge_dead_letters(&self) -> Result<u64> {
        self.inner.purge_dead_letters().await
    }

    async fn purge(&self) -> Result<u64> {
        self.inner.purge().await
    }

    async fn drop_queue(&self) -> Result<()> {
        self.inner.drop_queue().await
    }

    async fn stats(&self) -> Result<QueueStats> {
        self.inner.stats().await
    }

    async fn close(&self) -> Result<()> {
        self.inner.close().await
    }

    fn backend_name(&self) -> &'static str {
        BACKEND
    }
}
