//! The `QueueProvider` trait.

use std::{
    fmt,
    time::{Duration, SystemTime},
};

use async_trait::async_trait;

use crate::backend::batch_result;
use crate::{
    BatchFailure, Capabilities, Delivery, Message, MessageId, QueueError, Receipt, Result,
};

/// A message in the dead-letter store.
///
/// `#[non_exhaustive]`: backends build it with [`DeadLetter::new`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct DeadLetter {
    /// The message as it was pushed.
    pub message: Message,
    /// Why it was dead-lettered (the handler's error chain, or
    /// "max attempts exceeded").
    pub reason: String,
    /// How many times it had been delivered.
    pub attempts: u32,
    /// When it was moved to the dead letters.
    pub dead_lettered_at: SystemTime,
}

impl DeadLetter {
    /// A dead letter of `message`, moved for `reason` after `attempts`
    /// deliveries at `dead_lettered_at`.
    pub fn new(
        message: Message,
        reason: impl Into<String>,
        attempts: u32,
        dead_lettered_at: SystemTime,
    ) -> Self {
        DeadLetter {
            message,
            reason: reason.into(),
            attempts,
            dead_lettered_at,
        }
    }
}

/// Which dead letters to put back on the queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Replay {
    /// These messages (ids not found are ignored).
    Ids(Vec<MessageId>),
    /// The `n` oldest dead letters.
    Oldest(usize),
    /// Every dead letter.
    All,
}

/// What [`QueueProvider::push_unique`] did with a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pushed {
    /// The message was enqueued under this id.
    Enqueued(MessageId),
    /// A message with the same [`Message::dedup_id`] was pushed within the
    /// queue's dedup window; this one was not enqueued. The id is the first
    /// message's.
    Duplicate(MessageId),
}

impl Pushed {
    /// The id of the message that holds the place: the new one, or the
    /// first push of its dedup id.
    pub fn id(&self) -> &MessageId {
        match self {
            Pushed::Enqueued(id) | Pushed::Duplicate(id) => id,
        }
    }

    /// Whether the push was dropped as a duplicate.
    pub fn is_duplicate(&self) -> bool {
        matches!(self, Pushed::Duplicate(_))
    }

    /// The id, consuming the outcome.
    pub fn into_id(self) -> MessageId {
        match self {
            Pushed::Enqueued(id) | Pushed::Duplicate(id) => id,
        }
    }
}

/// A snapshot of a queue's counts. Approximate unless
/// [`Capabilities::exact_stats`] says otherwise.
///
/// `#[non_exhaustive]`: backends start from [`QueueStats::default`] and set
/// the fields they know (`let mut s = QueueStats::default(); s.depth = n;`),
/// or use the `with_*` methods.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct QueueStats {
    /// Messages ready to be delivered now.
    pub depth: u64,
    /// Messages leased to a consumer and not yet settled.
    pub in_flight: u64,
    /// Messages waiting for their delay to pass.
    pub delayed: u64,
    /// Messages in the dead-letter store.
    pub dead_lettered: u64,
    /// Age of the oldest message that is ready or in flight, if any.
    pub oldest_age: Option<Duration>,
}

impl QueueStats {
    /// Sets [`QueueStats::depth`].
    pub fn with_depth(mut self, depth: u64) -> Self {
        self.depth = depth;
        self
    }
    /// Sets [`QueueStats::in_flight`].
    pub fn with_in_flight(mut self, in_flight: u64) -> Self {
        self.in_flight = in_flight;
        self
    }
    /// Sets [`QueueStats::delayed`].
    pub fn with_delayed(mut self, delayed: u64) -> Self {
        self.delayed = delayed;
        self
    }
    /// Sets [`QueueStats::dead_lettered`].
    pub fn with_dead_lettered(mut self, dead_lettered: u64) -> Self {
        self.dead_lettered = dead_lettered;
        self
    }
    /// Sets [`QueueStats::oldest_age`].
    pub fn with_oldest_age(mut self, oldest_age: Option<Duration>) -> Self {
        self.oldest_age = oldest_age;
        self
    }
}

/// A queue on some broker, with the same meaning on every backend.
///
/// Delivery is at least once: a popped message is leased for the queue's
/// lease time ([`QueueOptions::lease`](crate::QueueOptions::lease)) and
/// delivered again after that unless it is deleted, nacked or dead-lettered.
/// `docs/contract.md` states the full contract; the conformance suite checks
/// it. The trait is object safe: pass an `Arc<dyn QueueProvider>` around.
///
/// Optional operations return [`QueueError::Unsupported`] where
/// [`QueueProvider::capabilities`] says they are missing.
#[async_trait]
pub trait QueueProvider: Send + Sync + fmt::Debug {
    /// The queue's name, as validated when it was opened.
    fn queue_name(&self) -> &str;

    /// What this queue supports.
    fn capabilities(&self) -> Capabilities;

    /// Enqueues one message and returns its id once the broker holds it
    /// durably (as durable as the broker is configured to be).
    ///
    /// A message with a [`Message::dedup_id`] pushed within the queue's
    /// dedup window after another with the same id is not enqueued, and the
    /// first message's id is returned; [`QueueProvider::push_unique`] tells
    /// the two cases apart. Without the `dedup` capability such a push fails
    /// with `Unsupported`.
    async fn push(&self, message: Message) -> Result<MessageId>;

    /// Pushes like [`QueueProvider::push`] and says whether the message was
    /// enqueued or dropped as a duplicate of an earlier push with the same
    /// [`Message::dedup_id`] (with that push's id). Backends with the
    /// `dedup` capability implement it and their `push` calls it; the
    /// default, for backends without, pushes and reports `Enqueued`.
    async fn push_unique(&self, message: Message) -> Result<Pushed> {
        self.push(message).await.map(Pushed::Enqueued)
    }

    /// Enqueues several messages, in one round trip where the backend can.
    /// On a partial failure the error is [`QueueError::PartialBatch`], whose
    /// indexes say which messages were not enqueued.
    async fn push_batch(&self, messages: Vec<Message>) -> Result<Vec<MessageId>> {
        let mut ids = Vec::with_capacity(messages.len());
        let mut failures = Vec::new();
        for (index, message) in messages.into_iter().enumerate() {
            match self.push(message).await {
                Ok(id) => ids.push(id),
                Err(error) => failures.push(BatchFailure { index, error }),
            }
        }
        batch_result(self.backend_name(), ids, failures)
    }

    /// Waits up to `wait` for a message and leases it. Returns `None` when
    /// none arrived in time; returns as soon as one is available.
    async fn pop(&self, wait: Duration) -> Result<Option<Delivery>> {
        Ok(self.pop_batch(1, wait).await?.pop())
    }

    /// Waits up to `wait` for at least one message, then leases up to `max`
    /// of those available at once. Returns an empty vector when none arrived.
    async fn pop_batch(&self, max: usize, wait: Duration) -> Result<Vec<Delivery>>;

    /// Acknowledges a delivery: the message is removed for good.
    /// Fails with [`QueueError::StaleReceipt`] if the receipt lost its lease
    /// (on a backend with fenced receipts).
    async fn delete(&self, receipt: &Receipt) -> Result<()>;

    /// Deletes several deliveries, in one round trip where the backend can.
    /// Failed items are reported by index in [`QueueError::PartialBatch`].
    async fn delete_batch(&self, receipts: &[Receipt]) -> Result<()> {
        let mut failures = Vec::new();
        for (index, receipt) in receipts.iter().enumerate() {
            if let Err(error) = self.delete(receipt).await {
                failures.push(BatchFailure { index, error });
            }
        }
        batch_result(self.backend_name(), (), failures)
    }

    /// Gives a delivery back: the message becomes visible again after
    /// `delay` (zero: at once). The delivery counts as an attempt.
    async fn nack(&self, receipt: &Receipt, delay: Duration) -> Result<()>;

    /// Gives back a delivery that was never handed to a handler (prefetched,
    /// then not started because the worker is shutting down): the message
    /// becomes available at once and its next delivery carries the same
    /// attempt number as this one, as if this delivery had not happened.
    /// A stale receipt fails as for `nack`. Backends that cannot undo the
    /// count return `Unsupported` (capability `release`); callers then fall
    /// back to `nack` with zero delay, which spends the attempt.
    async fn release(&self, receipt: &Receipt) -> Result<()> {
        let _ = receipt;
        Err(QueueError::unsupported(self.backend_name(), "release"))
    }

    /// Extends a delivery's lease so that it ends `by` from now.
    async fn extend(&self, receipt: &Receipt, by: Duration) -> Result<()> {
        let _ = (receipt, by);
        Err(QueueError::unsupported(self.backend_name(), "extend"))
    }

    /// Moves a delivered message to the dead-letter store in one atomic step,
    /// keeping `reason` and its attempt count.
    async fn dead_letter(&self, receipt: &Receipt, reason: &str) -> Result<()> {
        let _ = (receipt, reason);
        Err(QueueError::unsupported(self.backend_name(), "dead_letter"))
    }

    /// Lists up to `limit` dead letters, oldest first, without changing them.
    async fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>> {
        let _ = limit;
        Err(QueueError::unsupported(self.backend_name(), "dead_letters"))
    }

    /// Puts dead letters back on the queue with their attempts reset and
    /// returns how many were replayed.
    async fn replay_dead_letters(&self, which: Replay) -> Result<u64> {
        let _ = which;
        Err(QueueError::unsupported(
            self.backend_name(),
            "replay_dead_letters",
        ))
    }

    /// Deletes the dead letters with these ids (ids not found are ignored)
    /// and returns how many were deleted. Capability `delete_dead_letters`.
    async fn delete_dead_letters(&self, ids: &[MessageId]) -> Result<u64> {
        let _ = ids;
        Err(QueueError::unsupported(
            self.backend_name(),
            "delete_dead_letters",
        ))
    }

    /// Deletes every dead letter and returns how many there were.
    async fn purge_dead_letters(&self) -> Result<u64> {
        Err(QueueError::unsupported(
            self.backend_name(),
            "purge_dead_letters",
        ))
    }

    /// Lists up to `limit` waiting messages in delivery order without leasing them.
    async fn peek(&self, limit: usize) -> Result<Vec<Message>> {
        let _ = limit;
        Err(QueueError::unsupported(self.backend_name(), "peek"))
    }

    /// Deletes every message of the queue and returns how many were removed.
    /// Messages leased at that moment are never delivered again; whether
    /// their current receipts can still settle them is up to the backend.
    /// Dead letters are kept.
    async fn purge(&self) -> Result<u64> {
        Err(QueueError::unsupported(self.backend_name(), "purge"))
    }

    /// Removes the queue and everything it created on its backend: waiting,
    /// leased and delayed messages, dead letters, and helper structures
    /// (tables' rows, keys, holding queues, streams). Dropping a queue that
    /// does not exist succeeds. Other handles open on the queue must not be
    /// used afterwards: their operations may fail, or re-create the queue
    /// empty, depending on the backend. Irreversible.
    async fn drop_queue(&self) -> Result<()> {
        Err(QueueError::unsupported(self.backend_name(), "drop_queue"))
    }

    /// Counts of the queue; see [`QueueStats`].
    async fn stats(&self) -> Result<QueueStats>;

    /// Ends this handle the way a process that exits cleanly should:
    /// messages it received from the broker but never handed to a caller
    /// (prefetched) go back without an attempt counted, and its
    /// connections close. Deliveries handed out and not settled are left to
    /// their leases, as after a crash. Dropping a handle without `close` is
    /// a crash as far as the broker can tell: on some brokers (RabbitMQ)
    /// prefetched messages then come back with a delivery counted. Calls
    /// after `close` may fail. The default does nothing: most backends hold
    /// nothing a caller has not seen.
    async fn close(&self) -> Result<()> {
        Ok(())
    }

    /// The backend's short name (`"memory"`, `"postgres"`, …), used in errors,
    /// logs and metrics.
    fn backend_name(&self) -> &'static str;
}

/// Gives back a delivery whose message was never handed to a handler
/// (prefetched, or not printed): [`QueueProvider::release`] where the
/// backend has it, so the attempt is not spent, else `nack` with zero delay,
/// which spends it. Either way the message is available again at once.
/// Returns whether the attempt was kept (released).
pub async fn give_back_unstarted(queue: &dyn QueueProvider, receipt: &Receipt) -> Result<bool> {
    if queue.capabilities().release {
        match queue.release(receipt).await {
            Err(QueueError::Unsupported { .. }) => {}
            other => return other.map(|()| true),
        }
    }
    queue.nack(receipt, Duration::ZERO).await.map(|()| false)
}
