//! `push` and `push_batch`: one `Publish` request per chunk of at most
//! `max_batch` messages and 9 MB, the chunks of a batch sent at once; a
//! chunk that fails fails each of its messages, reported by index.

use flextide_queue_core::{
    BatchFailure, Message, MessageId, QueueError, Result,
    backend::{batch_result, check_payload},
};
use gcloud_gax::grpc::Code;
use gcloud_googleapis::pubsub::v1::PubsubMessage;

use super::{MAX_PAYLOAD, PubSubQueue};
use crate::{BACKEND, codec, error};

/// Most bytes of messages in one `Publish` request (Pub/Sub's limit is 10 MB).
const CHUNK_BYTES: usize = 9_000_000;

/// Refuses what Pub/Sub cannot do for a message, before anything is sent.
fn check(message: &Message) -> Result<()> {
    check_payload(BACKEND, message.payload.len(), Some(MAX_PAYLOAD))?;
    if message.priority > 0 {
        return Err(QueueError::unsupported(BACKEND, "priority"));
    }
    if message.delay.is_some_and(|d| !d.is_zero()) {
        return Err(QueueError::unsupported_because(
            BACKEND,
            "delay",
            "Pub/Sub has no delayed delivery",
        ));
    }
    if message.ordering_key.is_some() {
        return Err(QueueError::unsupported_because(
            BACKEND,
            "ordering_key",
            "Pub/Sub's ordering keys deliver in order but not one at a time",
        ));
    }
    if message.dedup_id.is_some() {
        return Err(QueueError::unsupported(BACKEND, "dedup_id"));
    }
    Ok(())
}

impl PubSubQueue {
    pub(super) async fn publish(&self, messages: Vec<Message>) -> Result<Vec<MessageId>> {
        if messages.is_empty() {
            return Ok(Vec::new());
        }
        let mut encoded = Vec::with_capacity(messages.len());
        for m in &messages {
            check(m)?;
            encoded.push(codec::encode(m, None)?);
        }
        let ids: Vec<MessageId> = messages.into_iter().map(|m| m.id).collect();
        self.ensure().await?;
        let chunks = chunk(encoded, self.config.max_batch);
        let sent = futures::future::join_all(chunks.into_iter().map(|(first, chunk)| async move {
            (first, chunk.len(), self.publish_chunk(chunk).await)
        }))
        .await;
        let mut failures = Vec::new();
        for (first, len, outcome) in sent {
            if let Err(e) = outcome {
                let shown = e.to_string();
                let retryable = e.is_retryable();
                failures.push(BatchFailure {
                    index: first,
                    error: e,
                });
                for index in first + 1..first + len {
                    failures.push(BatchFailure {
                        index,
                        error: QueueError::backend_error(BACKEND, retryable, shown.clone()),
                    });
                }
            }
        }
        failures.sort_by_key(|f| f.index);
        batch_result(BACKEND, ids, failures)
    }

    /// One `Publish` request; when the topic is gone (another handle
    /// dropped the queue), the queue is created again and the chunk sent
    /// once more.
    async fn publish_chunk(&self, chunk: Vec<PubsubMessage>) -> Result<()> {
        match self.conn.publish(&self.names.topic, chunk.clone()).await {
            Ok(_) => Ok(()),
            Err(s) if s.code() == Code::NotFound && self.forget_created() => {
                tracing::info!(queue = %self.name, "the queue's topic was gone; creating it again");
                self.ensure().await?;
                self.conn
                    .publish(&self.names.topic, chunk)
                    .await
                    .map(|_| ())
                    .map_err(|s| error::map("publish", s))
            }
            Err(s) => Err(error::map("publish", s)),
        }
    }
}

/// Splits messages into requests of at most `max` messages and
/// `CHUNK_BYTES` bytes, each with the index of its first message.
fn chunk(messages: Vec<PubsubMessage>, max: usize) -> Vec<(usize, Vec<PubsubMessage>)> {
    let mut out: Vec<(usize, Vec<PubsubMessage>)> = Vec::new();
    let mut bytes = 0;
    for (i, m) in messages.into_iter().enumerate() {
        let size = m.data.len()
            + m.attributes
                .iter()
                .map(|(k, v)| k.len() + v.len())
                .sum::<usize>();
        match out.last_mut() {
            Some((_, c)) if c.len() < max && bytes + size <= CHUNK_BYTES => {
                bytes += size;
                c.push(m);
            }
            _ => {
                bytes = size;
                out.push((i, vec![m]));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(len: usize) -> PubsubMessage {
        PubsubMessage {
            data: vec![0; len],
            ..Default::default()
        }
    }

    #[test]
    fn chunks_by_count_and_bytes() {
        let c = chunk((0..5).map(|_| msg(1)).collect(), 2);
        assert_eq!(
            c.iter().map(|(i, c)| (*i, c.len())).collect::<Vec<_>>(),
            [(0, 2), (2, 2), (4, 1)]
        );
        let c = chunk(vec![msg(5_000_000), msg(5_000_000), msg(10)], 1000);
        assert_eq!(
            c.iter().map(|(i, c)| (*i, c.len())).collect::<Vec<_>>(),
            [(0, 1), (1, 2)]
        );
    }

    #[test]
    fn refuses_what_pubsub_lacks() {
        assert!(matches!(
            check(&Message::new("x").with_priority(1)),
            Err(QueueError::Unsupported { .. })
        ));
        assert!(matches!(
            check(&Message::new("x").with_delay(std::time::Duration::from_secs(1))),
            Err(QueueError::Unsupported { .. })
        ));
        assert!(matches!(
            check(&Message::new("x").with_ordering_key("k")),
            Err(QueueError::Unsupported { .. })
        ));
        assert!(matches!(
            check(&Message::new("x").with_dedup_id("d")),
            Err(QueueError::Unsupported { .. })
        ));
        assert!(check(&Message::new("x")).is_ok());
    }
}
