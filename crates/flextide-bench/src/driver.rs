//! One interface over the library and the raw clients, so every workload runs
//! the same loop against both.

use std::{sync::Arc, time::Duration};

use async_trait::async_trait;
use bytes::Bytes;
use flextide_queue_core::{Message, QueueProvider, Receipt};

/// Any error of a run; the harness only reports it.
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// Shorthand for results of the harness.
pub(crate) type Res<T> = Result<T, BoxError>;

/// What settles one received message.
#[derive(Debug, Clone)]
pub(crate) enum Handle {
    /// The library's receipt.
    Receipt(Receipt),
    /// A row's sequence number and lease token (raw SQL).
    Row(i64, Arc<str>),
    /// A text handle: a stream entry id (raw Redis), an SQS receipt handle.
    Text(String),
    /// An AMQP delivery tag (raw lapin).
    Tag(u64),
}

/// One received message.
#[derive(Debug)]
pub(crate) struct Popped {
    pub(crate) payload: Bytes,
    pub(crate) handle: Handle,
}

/// The three operations every workload needs.
#[async_trait]
pub(crate) trait Driver: Send + Sync {
    /// Enqueues the payloads: one push for one payload, else a batch push.
    async fn push(&self, batch: Vec<Bytes>) -> Res<()>;
    /// Waits up to `wait` for messages and takes up to `max` of them.
    async fn pop(&self, max: usize, wait: Duration) -> Res<Vec<Popped>>;
    /// Deletes (acknowledges) received messages: one call for the batch.
    async fn delete(&self, handles: Vec<Handle>) -> Res<()>;
    /// Removes what this driver created (its queue, stream or rows).
    async fn cleanup(&self) -> Res<()>;
}

/// How a backend's library queue is removed after a run.
pub(crate) type Dropper =
    Box<dyn Fn() -> futures::future::BoxFuture<'static, Res<()>> + Send + Sync>;

/// The library, through the `QueueProvider` trait object users hold.
pub(crate) struct LibDriver {
    pub(crate) queue: Arc<dyn QueueProvider>,
    pub(crate) dropper: Dropper,
}

#[async_trait]
impl Driver for LibDriver {
    async fn push(&self, mut batch: Vec<Bytes>) -> Res<()> {
        if batch.len() == 1 {
            let payload = batch.pop().expect("one payload");
            self.queue.push(Message::new(payload)).await?;
        } else {
            self.queue
                .push_batch(batch.into_iter().map(Message::new).collect())
                .await?;
        }
        Ok(())
    }

    async fn pop(&self, max: usize, wait: Duration) -> Res<Vec<Popped>> {
        let got = if max == 1 {
            self.queue.pop(wait).await?.into_iter().collect()
        } else {
            self.queue.pop_batch(max, wait).await?
        };
        Ok(got
            .into_iter()
            .map(|d| Popped {
                payload: d.message.payload,
                handle: Handle::Receipt(d.receipt),
            })
            .collect())
    }

    async fn delete(&self, handles: Vec<Handle>) -> Res<()> {
        let receipts: Vec<Receipt> = handles
            .into_iter()
            .map(|h| match h {
                Handle::Receipt(r) => Ok(r),
                other => Err(format!("library driver got a raw handle {other:?}")),
            })
            .collect::<Result<_, _>>()?;
        if receipts.len() == 1 {
            self.queue.delete(&receipts[0]).await?;
        } else {
            self.queue.delete_batch(&receipts).await?;
        }
        Ok(())
    }

    async fn cleanup(&self) -> Res<()> {
        (self.dropper)().await
    }
}

/// Takes the handles of one variant out of a list, failing on another kind.
pub(crate) fn expect_handles<T>(
    handles: Vec<Handle>,
    f: impl Fn(Handle) -> Option<T>,
) -> Res<Vec<T>> {
    handles
        .into_iter()
        .map(|h| f(h).ok_or_else(|| BoxError::from("wrong handle kind for this driver")))
        .collect()
}
