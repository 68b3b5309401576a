//! `push` and `push_batch`: publish, then wait for JetStream's PubAck.
//!
//! `Nats-Msg-Id` is the message id, so a publish retried after a timeout
//! (which the server may have stored already) is dropped by the server as a
//! duplicate instead of being enqueued twice. `push_batch` sends every
//! publish first and then waits for all the acks.

use async_nats::jetstream::{context::PublishAckFuture, message::PublishMessage};
use flextide_queue_core::{
    BatchFailure, Message, MessageId, QueueError, Result,
    backend::{batch_result, check_payload},
};
use futures::future::join_all;

use super::NatsQueue;
use crate::{BACKEND, codec, error, layout, schedule};

impl NatsQueue {
    /// Refuses what this queue cannot carry, before anything is sent.
    fn check(&self, message: &Message) -> Result<()> {
        check_payload(BACKEND, message.payload.len(), Some(self.max_payload))?;
        codec::check_message(message)?;
        if message.priority > 0 {
            return Err(QueueError::unsupported_because(
                BACKEND,
                "priority",
                "JetStream delivers in stream order",
            ));
        }
        if message.ordering_key.is_some() {
            return Err(QueueError::unsupported(BACKEND, "ordering_key"));
        }
        if message.dedup_id.is_some() {
            return Err(QueueError::unsupported_because(
                BACKEND,
                "dedup_id",
                "Nats-Msg-Id carries the message id",
            ));
        }
        if message.delay.is_some_and(|d| !d.is_zero()) && !self.schedules() {
            return Err(QueueError::unsupported_because(
                BACKEND,
                "delay",
                format!(
                    "a delayed push needs message schedules (nats-server {}.{}+, on a stream created there); this server is {}",
                    schedule::MIN_VERSION.0,
                    schedule::MIN_VERSION.1,
                    self.server_version
                ),
            ));
        }
        Ok(())
    }

    /// Sends one publish and returns the future of its PubAck.
    async fn send(&self, message: &Message) -> Result<PublishAckFuture> {
        let delay = message.delay.filter(|d| !d.is_zero());
        // The enqueue time is the server's time of storing, unless the
        // message carries one or is stored only at its due time.
        let enqueued = match (codec::enqueued_ms(message), delay) {
            (Some(ms), _) => Some(ms),
            (None, Some(_)) => Some(flextide_queue_core::backend::now_millis()),
            (None, None) => None,
        };
        let mut headers = codec::encode(message, enqueued, message.id.as_str());
        let subject = match delay {
            None => self.subject.clone(),
            Some(delay) => {
                headers.insert("Nats-Schedule", schedule::at(delay).as_str());
                headers.insert("Nats-Schedule-Target", self.subject.as_str());
                // The server drops `Nats-Msg-Id` from the message it
                // publishes at the scheduled time: carry the id ourselves.
                headers.insert(codec::H_ID, message.id.as_str());
                let token = uuid::Uuid::new_v4().simple().to_string();
                layout::schedule_subject(&self.name, &token)
            }
        };
        let publish = PublishMessage::build()
            .payload(message.payload.clone())
            .headers(headers);
        self.js
            .send_publish(subject, publish)
            .await
            .map_err(|e| error::map("publish", &self.name, e))
    }

    async fn acked(&self, future: PublishAckFuture) -> Result<()> {
        // A duplicate is fine: an earlier publish of this id was stored.
        future
            .await
            .map(|_| ())
            .map_err(|e| error::map("publish ack", &self.name, e))
    }

    pub(super) async fn push_one(&self, message: Message) -> Result<MessageId> {
        self.check(&message)?;
        self.ensure().await?;
        match self.send_acked(&message).await {
            // No stream (another handle dropped the queue): create it again
            // and push once more.
            Err(QueueError::QueueNotFound { .. }) if self.recreate_if_gone().await? => {
                self.send_acked(&message).await?;
            }
            other => other?,
        }
        Ok(message.id)
    }

    async fn send_acked(&self, message: &Message) -> Result<()> {
        let future = self.send(message).await?;
        self.acked(future).await
    }

    pub(super) async fn push_many(&self, messages: Vec<Message>) -> Result<Vec<MessageId>> {
        match self.push_each(&messages).await {
            // Nothing stored, for want of a stream (another handle dropped
            // the queue): create it again and push the batch once more.
            Err(QueueError::PartialBatch { failures, .. })
                if failures.len() == messages.len()
                    && failures
                        .iter()
                        .all(|f| matches!(f.error, QueueError::QueueNotFound { .. }))
                    && self.recreate_if_gone().await? =>
            {
                self.push_each(&messages).await
            }
            other => other,
        }
    }

    async fn push_each(&self, messages: &[Message]) -> Result<Vec<MessageId>> {
        let mut failures = Vec::new();
        let mut sent = Vec::with_capacity(messages.len());
        for (index, message) in messages.iter().enumerate() {
            let result = match self.check(message) {
                Ok(()) => match self.ensure().await {
                    Ok(()) => self.send(message).await,
                    Err(e) => Err(e),
                },
                Err(e) => Err(e),
            };
            match result {
                Ok(future) => sent.push((index, message.id.clone(), future)),
                Err(error) => failures.push(BatchFailure { index, error }),
            }
        }
        let acks = join_all(
            sent.into_iter()
                .map(|(index, id, future)| async move { (index, id, self.acked(future).await) }),
        )
        .await;
        let mut ids = Vec::with_capacity(acks.len());
        for (index, id, result) in acks {
            match result {
                Ok(()) => ids.push(id),
                Err(error) => failures.push(BatchFailure { index, error }),
            }
        }
        batch_result(BACKEND, ids, failures)
    }
}
