//! The deliveries this process holds, by receipt handle.
//!
//! SQS cannot return a message's body from a receipt handle, yet
//! `dead_letter(receipt, reason)` must copy the message to the dead-letter
//! queue. So every delivery is remembered here (the payload is shared with
//! the `Delivery`, not copied) until it is settled or its lease ended long
//! ago. It is process-wide so that a second handle on the same queue can
//! settle the first one's deliveries, as with every other backend.

use std::{
    collections::HashMap,
    sync::{LazyLock, Mutex},
    time::Duration,
};

use flextide_queue_core::Message;
use tokio::time::Instant;

/// How long after its lease ended a delivery is still remembered: the
/// receipt may still settle the message until SQS delivers it again.
const GRACE: Duration = Duration::from_secs(15 * 60);
/// Size above which a registration first drops forgotten entries.
const PRUNE_FLOOR: usize = 1024;

/// One delivery held by this process.
#[derive(Debug, Clone)]
pub(crate) struct Inflight {
    /// URL of the queue it came from.
    pub(crate) queue_url: String,
    /// SQS's id of this copy of the message.
    pub(crate) sqs_id: String,
    /// The message as delivered.
    pub(crate) message: Message,
    /// Its attempt number.
    pub(crate) attempt: u32,
    /// End of the lease.
    pub(crate) lease_deadline: Instant,
}

#[derive(Default)]
struct Registry {
    by_receipt: HashMap<String, Inflight>,
    prune_at: usize,
}

static REGISTRY: LazyLock<Mutex<Registry>> = LazyLock::new(Mutex::default);

fn registry() -> std::sync::MutexGuard<'static, Registry> {
    REGISTRY
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Remembers a delivery.
pub(crate) fn insert(receipt: &str, inflight: Inflight) {
    let mut reg = registry();
    if reg.by_receipt.len() >= reg.prune_at.max(PRUNE_FLOOR) {
        let now = Instant::now();
        reg.by_receipt.retain(|_, d| d.lease_deadline + GRACE > now);
        reg.prune_at = reg.by_receipt.len() * 2;
    }
    reg.by_receipt.insert(receipt.to_owned(), inflight);
}

/// The delivery of `receipt` from the queue at `queue_url`, if this process holds it.
pub(crate) fn get(queue_url: &str, receipt: &str) -> Option<Inflight> {
    registry()
        .by_receipt
        .get(receipt)
        .filter(|d| d.queue_url == queue_url)
        .cloned()
}

/// Forgets a settled delivery.
pub(crate) fn remove(receipt: &str) {
    registry().by_receipt.remove(receipt);
}

/// Records a lease extended to `deadline`.
pub(crate) fn extend(receipt: &str, deadline: Instant) {
    if let Some(d) = registry().by_receipt.get_mut(receipt) {
        d.lease_deadline = deadline;
    }
}
