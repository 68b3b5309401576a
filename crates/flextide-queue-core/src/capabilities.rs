//! What a backend can and cannot do.

use std::time::Duration;

/// The features a backend (or one of its queues) supports.
///
/// A plain struct so a backend builds it in one expression:
/// `Capabilities { fifo: true, ..Capabilities::default() }`. The default is
/// the minimal at-least-once queue: nothing optional supported. The
/// conformance suite runs exactly the cases these flags claim, and checks
/// that each operation claimed missing fails with `Unsupported`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Capabilities {
    /// Available messages are delivered in push order (within a priority),
    /// and a nacked or expired message keeps its place at the head.
    pub fifo: bool,
    /// Messages with the same ordering key are delivered one at a time in
    /// push order; a key is blocked while one of its messages is leased.
    pub ordering_key: bool,
    /// Higher [`Message::priority`](crate::Message::priority) is delivered first.
    pub priority: bool,
    /// [`Message::delay`](crate::Message::delay) and `nack` delays are honoured.
    pub delay: bool,
    /// Longest delay accepted, when there is a limit (SQS: 15 minutes).
    pub max_delay: Option<Duration>,
    /// Largest payload in bytes, when there is a limit.
    pub max_payload_bytes: Option<usize>,
    /// Largest batch one `push_batch` / `pop_batch` / `delete_batch` round trip
    /// takes, when there is a limit (larger batches are split).
    pub max_batch: Option<usize>,
    /// `extend` lengthens a lease.
    pub extend_lease: bool,
    /// A stale receipt can neither delete, nack nor extend a newer delivery.
    pub fenced_receipts: bool,
    /// `dead_letter`, listing, replay and purge of dead letters are supported.
    pub dead_letters: bool,
    /// Messages are deduplicated by [`Message::dedup_id`](crate::Message::dedup_id):
    /// a push whose dedup id was pushed within `dedup_window` is not
    /// enqueued, atomically (concurrent pushes of one id from any number of
    /// handles enqueue exactly one), and
    /// [`QueueProvider::push_unique`](crate::QueueProvider::push_unique)
    /// says so. Without it a push carrying a dedup id fails with
    /// `Unsupported` rather than ignoring the id.
    pub dedup: bool,
    /// How long a dedup id is remembered, where `dedup` holds.
    pub dedup_window: Option<Duration>,
    /// `delete_dead_letters` removes chosen dead letters by id.
    pub delete_dead_letters: bool,
    /// `stats()` counts are exact, not approximations.
    pub exact_stats: bool,
    /// `peek` lists waiting messages without leasing them.
    pub peek: bool,
    /// The queue-wide `purge` is supported.
    pub purge: bool,
    /// `release` gives a delivery back without counting an attempt.
    pub release: bool,
    /// `drop_queue` removes the queue and everything it created.
    pub drop_queue: bool,
    /// `stats()` cannot count the queue's ready, leased or delayed
    /// messages: the broker has no such count (Google Cloud Pub/Sub keeps
    /// it in Cloud Monitoring only). `depth`, `in_flight` and `delayed` are
    /// then always 0 and `oldest_age` is `None`; `dead_lettered` is still
    /// counted where `dead_letters` holds. Implies `exact_stats: false`.
    pub blind_stats: bool,
}
