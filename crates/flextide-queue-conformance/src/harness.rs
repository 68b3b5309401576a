//! What a backend provides so the suite can run against it.

use std::{sync::Arc, time::Duration};

use async_trait::async_trait;
use flextide_queue_core::{QueueError, QueueOptions, QueueProvider};

/// Opens and removes queues of one backend for the suite.
///
/// Every case opens its own uniquely named queues through [`Harness::open`]
/// and the runner calls [`Harness::cleanup`] on each afterwards, pass or
/// fail, so runs can share a server.
#[async_trait]
pub trait Harness: Send + Sync + 'static {
    /// Opens the queue `name` with these options. The queue is new: nothing
    /// was ever pushed to it. Opening should create nothing on the broker
    /// (the first write does): a harness that lists leftovers is checked
    /// for that after read-only calls (`lifecycle::read_only_calls_create_nothing`).
    async fn open(
        &self,
        name: &str,
        options: QueueOptions,
    ) -> Result<Arc<dyn QueueProvider>, QueueError>;

    /// Removes everything the queue `name` stored: messages, dead letters,
    /// and the queue itself where the broker has such a thing.
    async fn cleanup(&self, name: &str) -> Result<(), QueueError>;

    /// Breaks the connections `queue` uses, from the server's side where
    /// possible (clause 11). Returns `Ok(false)` when this harness cannot,
    /// and then the reconnect cases are ignored.
    async fn disrupt(&self, queue: &Arc<dyn QueueProvider>) -> Result<bool, QueueError> {
        let _ = queue;
        Ok(false)
    }

    /// Writes `entry` into the queue `queue` with the broker's own client,
    /// as another producer would (a raw SQL insert, `XADD`,
    /// `basic.publish`, `SendMessage`): contract clause 12. Returns
    /// `Ok(false)` when this harness cannot; set
    /// [`HarnessSettings::foreign_plain`] / [`HarnessSettings::foreign_undecodable`]
    /// to say which kinds it writes, so the cases that need them run.
    async fn write_foreign(
        &self,
        queue: &Arc<dyn QueueProvider>,
        entry: ForeignEntry,
    ) -> Result<bool, QueueError> {
        let _ = (queue, entry);
        Ok(false)
    }

    /// What the backend still holds for the queue `name`, listed with the
    /// broker's own tools: keys (`flextide:{name}:s`), rows of the shared
    /// tables (`flextide_queue_messages: 3 rows`), queues (`name.dlq`),
    /// streams. An empty list means nothing is left. The lifecycle cases
    /// call it after `drop_queue` and after read-only calls on a fresh
    /// name. Returns `Ok(None)` when this harness cannot list them; set
    /// [`HarnessSettings::lists_leftovers`] when it can, so those cases run
    /// (otherwise they are ignored, never passed).
    async fn leftovers(&self, name: &str) -> Result<Option<Vec<String>>, QueueError> {
        let _ = name;
        Ok(None)
    }

    /// Timing and limits of this backend that the cases must respect.
    fn settings(&self) -> HarnessSettings {
        HarnessSettings::default()
    }
}

/// Timing and limits that make the cases fair to a backend.
#[derive(Debug, Clone)]
pub struct HarnessSettings {
    /// Tolerance added to every timing assertion (a wait returning "within
    /// `wait` plus slack", a lease expiring). Default 750 ms.
    pub timing_slack: Duration,
    /// The short lease the lease and fencing cases use; it must be one the
    /// backend honours (SQS counts whole seconds). Default 1 s.
    pub short_lease: Duration,
    /// Whether [`Harness::disrupt`] works, so the reconnect cases run.
    pub can_disrupt: bool,
    /// Whether [`Harness::write_foreign`] writes [`ForeignEntry::Plain`].
    pub foreign_plain: bool,
    /// Whether [`Harness::write_foreign`] writes [`ForeignEntry::Undecodable`].
    pub foreign_undecodable: bool,
    /// Whether [`Harness::leftovers`] lists what the backend holds for a
    /// queue, so the lifecycle cases that check nothing is left run.
    pub lists_leftovers: bool,
    /// Whether [`Harness::open`] creates the queue on the broker, because
    /// the backend cannot open one that does not exist (SQS needs a queue
    /// URL). The read-only case then checks that the calls add nothing to
    /// what opening made, instead of checking that nothing exists.
    pub open_creates: bool,
    /// How many messages the volume cases (concurrency, burn-down) push.
    /// Keep it small for slow emulators. Default 200.
    pub volume: usize,
    /// The largest payload the suite round-trips when the backend has no
    /// limit. Default 1 MiB.
    pub unlimited_payload_probe: usize,
    /// Whether the server may, rarely, deliver a message a second time while
    /// its lease holds: SQS standard queues do by design (at-least-once,
    /// "occasionally more than one copy"), and so does an emulator that
    /// races concurrent receives (moto's threaded server). The concurrency
    /// cases then accept such duplicates, up to one message in ten, and
    /// still check that every message was delivered and deleted. Default
    /// `false`: a duplicate while a lease holds fails.
    pub rare_duplicates: bool,
    /// Whether [`QueueOptions::dedup_window`](flextide_queue_core::QueueOptions::dedup_window)
    /// sets the window of a new queue, so the case that waits the window
    /// out runs with a short one. `false` where the broker fixes it (SQS
    /// FIFO: 5 minutes). Default `true`.
    pub dedup_window_settable: bool,
    /// Whether the broker drops a duplicate push without saying so, so the
    /// backend cannot report it (SQS FIFO answers a duplicate send as it
    /// answers a new one). The dedup cases then also accept `Enqueued` with
    /// the push's own id where `Duplicate` with the first id is due, and
    /// check what is delivered: still exactly one message per dedup id.
    /// Default `false`.
    pub dedup_silent: bool,
    /// Whether the server remembers a dedup id for its whole window even
    /// after the message was handled and deleted, as clause 16 asks.
    /// `false` only for an emulator that does not (moto's SQS FIFO queues
    /// look for a duplicate among the messages still in the queue; AWS
    /// keeps the id): the case that checks it is then ignored with that
    /// reason. Default `true`.
    pub dedup_outlives_message: bool,
}

impl Default for HarnessSettings {
    fn default() -> Self {
        HarnessSettings {
            timing_slack: Duration::from_millis(750),
            short_lease: Duration::from_secs(1),
            can_disrupt: false,
            foreign_plain: false,
            foreign_undecodable: false,
            lists_leftovers: false,
            open_creates: false,
            volume: 200,
            unlimited_payload_probe: 1024 * 1024,
            rare_duplicates: false,
            dedup_window_settable: true,
            dedup_silent: false,
            dedup_outlives_message: true,
        }
    }
}

/// An entry written by another producer with the broker's own client
/// (contract clause 12).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ForeignEntry {
    /// A plain body with no Flextide envelope: delivered with this body as
    /// its payload and a stable id.
    Plain(bytes::Bytes),
    /// An entry that cannot be decoded into a message at all (a missing
    /// field the backend needs, headers that are not what it wrote): moved
    /// to the dead letters by itself with a reason starting `undecodable:`.
    Undecodable,
}

/// The outcome of connecting to a backend before the suite runs.
#[derive(Debug)]
pub enum Connect<H> {
    /// Ready to run.
    Ready(H),
    /// Not configured (no address in the environment and no container
    /// runtime): the suite is skipped with this explanation, or fails when
    /// the backend is required by `FLEXTIDE_TEST_REQUIRE`.
    NotConfigured(String),
    /// Configured but unreachable or broken: skipped, or failed when required.
    Failed(String),
}
