//! [`Compressed`]: a [`QueueProvider`] that compresses what it pushes and
//! decodes what it receives, over any other one.

use std::{sync::Arc, time::Duration};

use async_trait::async_trait;
use flextide_queue_core::{
    Capabilities, DeadLetter, Delivery, Message, MessageId, Pushed, QueueError, QueueProvider,
    QueueStats, Receipt, Replay, Result, backend::undecodable_reason,
};
use tokio::time::Instant;

use crate::Compression;

const BACKEND: &str = "compression";

/// Compresses payloads above the threshold on push and decodes them on
/// pop, peek and dead-letter listing; every other operation goes straight
/// to the queue underneath.
///
/// The queue's payload limit applies to the bytes sent, so a payload above
/// it is accepted when it compresses below it. A delivery whose payload is
/// marked as zstd but cannot be decoded (corrupt, or larger than
/// [`Compression::max_decoded`]) is moved to the dead letters with an
/// `undecodable:` reason and the pop goes on, as a backend does with an
/// entry it cannot decode (contract clause 12); peek and the dead-letter
/// list show such a message as it is, header included.
#[derive(Debug, Clone)]
pub struct Compressed {
    inner: Arc<dyn QueueProvider>,
    settings: Compression,
}

impl Compressed {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn QueueProvider>, settings: Compression) -> Self {
        Compressed { inner, settings }
    }

    /// The queue underneath.
    pub fn inner(&self) -> &Arc<dyn QueueProvider> {
        &self.inner
    }

    fn encode(&self, message: Message) -> Result<Message> {
        self.settings
            .encode(message)
            .map_err(|e| QueueError::backend_error(BACKEND, false, e))
    }

    /// Decodes a batch; what cannot be decoded goes to the dead letters.
    async fn decode_deliveries(&self, deliveries: Vec<Delivery>) -> Vec<Delivery> {
        let mut out = Vec::with_capacity(deliveries.len());
        for mut d in deliveries {
            match self.settings.decode(&mut d.message) {
                Ok(()) => out.push(d),
                Err(why) => {
                    let id = &d.message.id;
                    tracing::warn!(%id, %why, "moving an undecodable compressed message to the dead letters");
                    if let Err(e) = self
                        .inner
                        .dead_letter(&d.receipt, &undecodable_reason(&why))
                        .await
                    {
                        // It stays leased and comes back after the lease: nothing is lost.
                        tracing::warn!(%id, error = %e, "could not dead-letter an undecodable compressed message; it will be delivered again");
                    }
                }
            }
        }
        out
    }

    /// Decodes a message shown (peek, dead letters): one that cannot be
    /// decoded is shown as it is, header included.
    fn decode_shown(&self, message: &mut Message) {
        let _ = self.settings.decode(message);
    }
}

#[async_trait]
impl QueueProvider for Compressed {
    fn queue_name(&self) -> &str {
        self.inner.queue_name()
    }

    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }

    async fn push(&self, message: Message) -> Result<MessageId> {
        self.inner.push(self.encode(message)?).await
    }

    async fn push_unique(&self, message: Message) -> Result<Pushed> {
        self.inner.push_unique(self.encode(message)?).await
    }

    async fn push_batch(&self, messages: Vec<Message>) -> Result<Vec<MessageId>> {
        let encoded = messages
            .into_iter()
            .map(|m| self.encode(m))
            .collect::<Result<Vec<_>>>()?;
        self.inner.push_batch(encoded).await
    }

    async fn pop(&self, wait: Duration) -> Result<Option<Delivery>> {
        let end = Instant::now() + wait;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            let Some(d) = self.inner.pop(left).await? else {
                return Ok(None);
            };
            if let Some(d) = self.decode_deliveries(vec![d]).await.pop() {
                return Ok(Some(d));
            }
            if Instant::now() >= end {
                return Ok(None);
            }
        }
    }

    async fn pop_batch(&self, max: usize, wait: Duration) -> Result<Vec<Delivery>> {
        let end = Instant::now() + wait;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            let got = self.inner.pop_batch(max, left).await?;
            let was_empty = got.is_empty();
            let out = self.decode_deliveries(got).await;
            if !out.is_empty() || was_empty || Instant::now() >= end {
                return Ok(out);
            }
        }
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
        self.inner.extend(receipt, by).await
    }

    async fn dead_letter(&self, receipt: &Receipt, reason: &str) -> Result<()> {
        self.inner.dead_letter(receipt, reason).await
    }

    async fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>> {
        let mut list = self.inner.dead_letters(limit).await?;
        for d in &mut list {
            self.decode_shown(&mut d.message);
        }
        Ok(list)
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

    async fn peek(&self, limit: usize) -> Result<Vec<Message>> {
        let mut list = self.inner.peek(limit).await?;
        list.iter_mut().for_each(|m| self.decode_shown(m));
        Ok(list)
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
        self.inner.backend_name()
    }
}
