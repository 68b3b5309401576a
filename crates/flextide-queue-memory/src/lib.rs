#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

mod connector;
mod state;

use std::{
    collections::HashMap,
    fmt,
    sync::{Arc, Mutex},
    time::Duration,
};

use async_trait::async_trait;
use flextide_queue_core::{
    MessageId, Pushed, Result,
    backend::{self, PollBackoff},
    validate_queue_name,
};
use tokio::{sync::Notify, time::Instant};

pub use crate::connector::{MemoryConnector, SCHEMES};
use crate::state::{QueueState, Settle};
pub use flextide_queue_core as core;
pub use flextide_queue_core::{
    Capabilities, Connector, DeadLetter, Delivery, Message, QueueError, QueueOptions,
    QueueProvider, QueueStats, Receipt, Replay,
};

/// The backend's name in errors, logs and metrics.
pub const BACKEND: &str = "memory";

/// A set of in-memory queues. Handles opened with the same name share one
/// queue. Cloning is cheap and shares the queues.
#[derive(Clone, Default)]
pub struct MemoryBroker {
    queues: Arc<Queues>,
}

impl fmt::Debug for MemoryBroker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<String> = self.queues.lock().unwrap().keys().cloned().collect();
        f.debug_struct("MemoryBroker")
            .field("queues", &names)
            .finish()
    }
}

impl MemoryBroker {
    /// An empty broker.
    pub fn new() -> Self {
        Self::default()
    }

    /// Opens the queue `name`, creating it if needed. The options of the
    /// handle that created the queue (lease, max attempts) apply to it.
    pub fn open(&self, name: &str, options: QueueOptions) -> Result<MemoryQueue> {
        validate_queue_name(name)?;
        let shared = self
            .queues
            .lock()
            .unwrap()
            .entry(name.to_owned())
            .or_insert_with(|| Arc::new(Shared::new(options.clone())))
            .clone();
        Ok(MemoryQueue::from_shared(
            name,
            shared,
            options,
            Arc::downgrade(&self.queues),
        ))
    }

    /// Removes the queue `name` and everything in it; open handles keep
    /// working on their now-detached copy. Returns whether it existed.
    pub fn drop_queue(&self, name: &str) -> bool {
        self.queues.lock().unwrap().remove(name).is_some()
    }

    /// What the broker holds for the queue `name`: `None` when it has no
    /// such queue, else the counts of its messages (waiting, leased,
    /// delayed) and dead letters. An open handle keeps an empty queue in
    /// the broker; it costs no more than the handle.
    pub fn held(&self, name: &str) -> Option<QueueStats> {
        let shared = self.queues.lock().unwrap().get(name).cloned()?;
        let mut state = shared.state.lock().unwrap();
        state.pump(Instant::now());
        Some(state.stats())
    }
}

type Queues = Mutex<HashMap<String, Arc<Shared>>>;

struct Shared {
    /// The options of the handle that created the queue, which it keeps.
    options: QueueOptions,
    state: Mutex<QueueState>,
    /// Woken when a message may have become available.
    available: Notify,
}

impl Shared {
    fn new(options: QueueOptions) -> Self {
        Shared {
            state: Mutex::new(QueueState::new(options.clone())),
            options,
            available: Notify::new(),
        }
    }
}

/// A handle on one in-memory queue; see [`MemoryBroker`].
#[derive(Clone)]
pub struct MemoryQueue {
    name: Arc<str>,
    shared: Arc<Shared>,
    options: QueueOptions,
    /// The broker's queues, for `drop_queue`.
    broker: std::sync::Weak<Queues>,
}

impl fmt::Debug for MemoryQueue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryQueue")
            .field("name", &self.name)
            .field("options", &self.options)
            .finish()
    }
}

impl MemoryQueue {
    /// A standalone queue on a broker of its own.
    pub fn new(name: &str, options: QueueOptions) -> Result<Self> {
        MemoryBroker::new().open(name, options)
    }

    fn from_shared(
        name: &str,
        shared: Arc<Shared>,
        options: QueueOptions,
        broker: std::sync::Weak<Queues>,
    ) -> Self {
        MemoryQueue {
            name: name.into(),
            shared,
            options,
            broker,
        }
    }

    fn settle(&self, receipt: &Receipt, how: Settle<'_>) -> Result<()> {
        let (seq, token) = backend::decode_receipt(BACKEND, receipt)?;
        let token: u64 = token
            .parse()
            .map_err(|_| QueueError::invalid_receipt(BACKEND, "token is not a number"))?;
        let seq =
            u64::try_from(seq).map_err(|_| QueueError::invalid_receipt(BACKEND, "negative key"))?;
        let wake = self
            .shared
            .state
            .lock()
            .unwrap()
            .settle(seq, token, how, Instant::now())?;
        if wake {
            self.shared.available.notify_waiters();
        }
        Ok(())
    }
}

const CAPABILITIES: Capabilities = Capabilities {
    fifo: true,
    ordering_key: true,
    priority: true,
    delay: true,
    max_delay: None,
    max_payload_bytes: None,
    max_batch: None,
    extend_lease: true,
    fenced_receipts: true,
    dead_letters: true,
    dedup: true,
    dedup_window: None,
    delete_dead_letters: true,
    exact_stats: true,
    peek: true,
    purge: true,
    release: true,
    drop_queue: true,
    blind_stats: false,
};

#[async_trait]
impl QueueProvider for MemoryQueue {
    fn queue_name(&self) -> &str {
        &self.name
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            dedup_window: Some(self.options.dedup_window),
            ..CAPABILITIES
        }
    }

    fn backend_name(&self) -> &'static str {
        BACKEND
    }

    async fn push(&self, message: Message) -> Result<MessageId> {
        self.push_unique(message).await.map(Pushed::into_id)
    }

    async fn push_unique(&self, message: Message) -> Result<Pushed> {
        let pushed = self
            .shared
            .state
            .lock()
            .unwrap()
            .push_unique(message, Instant::now());
        if !pushed.is_duplicate() {
            self.shared.available.notify_waiters();
        }
        Ok(pushed)
    }

    async fn push_batch(&self, messages: Vec<Message>) -> Result<Vec<MessageId>> {
        // A duplicate's place holds the first push's id.
        let ids = {
            let now = Instant::now();
            let mut state = self.shared.state.lock().unwrap();
            messages
                .into_iter()
                .map(|m| state.push_unique(m, now).into_id())
                .collect()
        };
        self.shared.available.notify_waiters();
        Ok(ids)
    }

    async fn pop_batch(&self, max: usize, wait: Duration) -> Result<Vec<Delivery>> {
        if max == 0 {
            return Ok(Vec::new());
        }
        // Pushes and settles wake the wait; otherwise it sleeps until the
        // next delay or lease ends, or the wait does. No polling: the
        // backoff's own step is the whole wait (capped, so it cannot overflow).
        let step = wait.min(Duration::from_secs(3600));
        backend::wait_for_deliveries(
            &self.shared.available,
            PollBackoff::new(wait, step, step),
            |backoff| {
                let mut state = self.shared.state.lock().unwrap();
                let claimed = state.claim(max, Instant::now());
                if claimed.is_empty()
                    && let Some(due) = state.next_due()
                {
                    backoff.wake_by(due);
                }
                let deliveries = claimed
                    .into_iter()
                    .map(|c| {
                        Delivery::new(
                            c.message,
                            Receipt::new(format!("{}:{}", c.seq, c.token)),
                            c.attempt,
                            c.lease_deadline,
                        )
                    })
                    .collect();
                std::future::ready(Ok(deliveries))
            },
        )
        .await
    }

    async fn delete(&self, receipt: &Receipt) -> Result<()> {
        self.settle(receipt, Settle::Delete)
    }

    async fn nack(&self, receipt: &Receipt, delay: Duration) -> Result<()> {
        self.settle(receipt, Settle::Nack(delay))
    }

    async fn release(&self, receipt: &Receipt) -> Result<()> {
        self.settle(receipt, Settle::Release)
    }

    async fn extend(&self, receipt: &Receipt, by: Duration) -> Result<()> {
        self.settle(receipt, Settle::Extend(by))
    }

    async fn dead_letter(&self, receipt: &Receipt, reason: &str) -> Result<()> {
        self.settle(receipt, Settle::DeadLetter(reason))
    }

    async fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>> {
        let mut state = self.shared.state.lock().unwrap();
        state.pump(Instant::now());
        Ok(state.dead_letters(limit))
    }

    async fn replay_dead_letters(&self, which: Replay) -> Result<u64> {
        let n = self
            .shared
            .state
            .lock()
            .unwrap()
            .replay(which, Instant::now());
        if n > 0 {
            self.shared.available.notify_waiters();
        }
        Ok(n)
    }

    async fn delete_dead_letters(&self, ids: &[MessageId]) -> Result<u64> {
        Ok(self.shared.state.lock().unwrap().delete_dead_letters(ids))
    }

    async fn purge_dead_letters(&self) -> Result<u64> {
        Ok(self.shared.state.lock().unwrap().purge_dead_letters())
    }

    async fn peek(&self, limit: usize) -> Result<Vec<Message>> {
        let mut state = self.shared.state.lock().unwrap();
        state.pump(Instant::now());
        Ok(state.peek(limit))
    }

    async fn purge(&self) -> Result<u64> {
        Ok(self.shared.state.lock().unwrap().purge())
    }

    /// Empties the queue (every handle on it sees it empty: they share it)
    /// and removes it from its broker, so the next `open` starts afresh.
    async fn drop_queue(&self) -> Result<()> {
        if let Some(queues) = self.broker.upgrade() {
            let mut queues = queues.lock().unwrap();
            if queues
                .get(&*self.name)
                .is_some_and(|s| Arc::ptr_eq(s, &self.shared))
            {
                queues.remove(&*self.name);
            }
        }
        *self.shared.state.lock().unwrap() = QueueState::new(self.shared.options.clone());
        self.shared.available.notify_waiters();
        Ok(())
    }

    async fn stats(&self) -> Result<QueueStats> {
        let mut state = self.shared.state.lock().unwrap();
        state.pump(Instant::now());
        Ok(state.stats())
    }
}
