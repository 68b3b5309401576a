//! What a consumer receives: the message, its receipt, attempt and lease.

use std::{fmt, sync::Arc};

use tokio::time::Instant;

use crate::Message;

/// An opaque handle that settles one delivery: pass it to `delete`, `nack`,
/// `extend` or `dead_letter`.
///
/// A receipt belongs to one delivery, not to the message: once the lease
/// expires and the message is delivered again, a fencing backend refuses the
/// old receipt with [`QueueError::StaleReceipt`](crate::QueueError::StaleReceipt).
/// Cloning is cheap.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Receipt(Arc<str>);

impl Receipt {
    /// Wraps a backend's handle. Only backends build receipts.
    pub fn new(handle: impl Into<Arc<str>>) -> Self {
        Receipt(handle.into())
    }

    /// The backend's handle.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Receipt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Receipts are bearer tokens for one message: show only a prefix.
        let shown: String = self.0.chars().take(12).collect();
        if shown.len() < self.0.len() {
            write!(f, "Receipt({shown}…)")
        } else {
            write!(f, "Receipt({shown})")
        }
    }
}

/// One delivery of a message to a consumer.
///
/// `#[non_exhaustive]`: backends build it with [`Delivery::new`], so a field
/// added later does not break them.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Delivery {
    /// The message as pushed, with `enqueued_at` filled in.
    pub message: Message,
    /// Settles this delivery; see [`Receipt`].
    pub receipt: Receipt,
    /// 1 on the first delivery, +1 on each redelivery (after a nack or an
    /// expired lease).
    pub attempt: u32,
    /// When the lease ends and the message becomes visible to others again,
    /// unless it is deleted, nacked or extended first. Measured on this
    /// process's clock, conservatively (from before the request was sent).
    pub lease_deadline: Instant,
}

impl Delivery {
    /// A delivery of `message` under `receipt`, its `attempt` (1 on the
    /// first delivery) and the end of its lease.
    pub fn new(message: Message, receipt: Receipt, attempt: u32, lease_deadline: Instant) -> Self {
        Delivery {
            message,
            receipt,
            attempt,
            lease_deadline,
        }
    }

    /// Decodes the payload as JSON.
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> crate::Result<T> {
        self.message.json_payload()
    }
}
