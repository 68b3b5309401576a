//! `push` and `push_batch`: publish, then wait for JetStream's PubAck.
//!
//! `Nats-Msg-Id` is the message's dedup id when it has one (contract clause
//! 16: the server drops a second publish of it within the stream's
//! duplicate window, atomically), else the message id, so a publish
//! retried after a timeout (which the server may have stored already) is
//! dropped by the server as a duplicate instead of being enqueued twice.
//! `push_batch` sends every publish first and then waits for all the acks.
//!
//! The PubAck of a duplicate names only the first message's stream
//! sequence. Its id is read from that message while it is in the stream,
//! and once it was handled (a work-queue stream deletes what is acked) from
//! the record each first push of a dedup id leaves in the queue's dedup
//! stream for the window.

use async_nats::jetstream::{
    context::PublishAckFuture, message::PublishMessage, publish::PublishAck,
};
use bytes::Bytes;
use flextide_queue_core::{
    BatchFailure, Message, MessageId, Pushed, QueueError, Result,
    backend::{batch_result, check_payload, foreign_id},
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
        let key = message.dedup_id.as_deref().unwrap_or(message.id.as_str());
        let mut headers = codec::encode(message, enqueued, key);
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

    async fn acked(&self, future: PublishAckFuture) -> Result<PublishAck> {
        future
            .await
            .map_err(|e| error::map("publish ack", &self.name, e))
    }

    /// What a stored publish came to. Without a dedup id a duplicate is
    /// fine: an earlier publish of this very message was stored.
    async fn outcome(&self, message: &Message, ack: PublishAck) -> Result<Pushed> {
        let Some(dedup) = &message.dedup_id else {
            return Ok(Pushed::Enqueued(message.id.clone()));
        };
        if ack.duplicate {
            return Ok(Pushed::Duplicate(self.first_id(dedup, ack.sequence).await?));
        }
        if let Err(e) = self.remember(dedup, &message.id).await {
            // The message is enqueued and its dedup id taken; only naming
            // it to a later duplicate once it was handled is lost.
            tracing::warn!(
                queue = %self.name,
                error = %e,
                "could not record the first message of a dedup id"
            );
        }
        Ok(Pushed::Enqueued(message.id.clone()))
    }

    /// Records `id` as the first message of `dedup` for the window.
    async fn remember(&self, dedup: &str, id: &MessageId) -> Result<()> {
        let subject = layout::dedup_subject(&self.name, dedup);
        let mut again = true;
        loop {
            self.ensure_dedup_stream().await?;
            let stored = async {
                self.js
                    .publish(
                        subject.clone(),
                        Bytes::copy_from_slice(id.as_str().as_bytes()),
                    )
                    .await
                    .map_err(|e| error::map("dedup record", &self.name, e))?
                    .await
                    .map_err(|e| error::map("dedup record ack", &self.name, e))
            };
            match error::timed("dedup record", self.timeout(), stored).await {
                // Another handle dropped the queue since this one made the
                // stream: make it again, once.
                Err(QueueError::QueueNotFound { .. }) if again => {
                    again = false;
                    self.dedup_made
                        .store(false, std::sync::atomic::Ordering::Release);
                }
                other => return other.map(|_| ()),
            }
        }
    }

    /// The id of the message stored at stream sequence `seq` as the first
    /// of `dedup`: from that message while the stream holds it, else from
    /// its record. Should neither be there (the record could not be
    /// written and the message was handled since), the id the backend
    /// gives a message it cannot name, `nats-<seq>`.
    async fn first_id(&self, dedup: &str, seq: u64) -> Result<MessageId> {
        let stored = async {
            match self.stream.get_raw_message(seq).await {
                Ok(m) => Ok(Some(m)),
                Err(e) if error::class_of(&e) == error::Class::NotFound => Ok(None),
                Err(e) => Err(error::map("message get", &self.name, e)),
            }
        };
        if let Some(m) = error::timed("message get", self.timeout(), stored).await? {
            let at = codec::system_time_from_nanos(m.time.unix_timestamp_nanos());
            return Ok(codec::decode(Some(&m.headers), m.payload, seq, at)
                .message
                .id);
        }
        let subject = layout::dedup_subject(&self.name, dedup);
        let record = async {
            match self.dedup.get_last_raw_message_by_subject(&subject).await {
                Ok(m) => Ok(Some(m)),
                Err(e) if error::class_of(&e) == error::Class::NotFound => Ok(None),
                Err(e) => Err(error::map("dedup record get", &self.name, e)),
            }
        };
        if let Some(m) = error::timed("dedup record get", self.timeout(), record).await?
            && let Ok(id) = std::str::from_utf8(&m.payload)
            && !id.is_empty()
        {
            return Ok(MessageId::new(id));
        }
        tracing::warn!(
            queue = %self.name,
            seq,
            "the first message of a dedup id is gone and has no record; naming it by sequence"
        );
        Ok(foreign_id(BACKEND, seq))
    }

    pub(super) async fn push_one(&self, message: Message) -> Result<Pushed> {
        self.check(&message)?;
        self.ensure().await?;
        let ack = match self.send_acked(&message).await {
            // No stream (another handle dropped the queue): create it again
            // and push once more.
            Err(QueueError::QueueNotFound { .. }) if self.recreate_if_gone().await? => {
                self.send_acked(&message).await?
            }
            other => other?,
        };
        self.outcome(&message, ack).await
    }

    async fn send_acked(&self, message: &Message) -> Result<PublishAck> {
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
                Ok(future) => sent.push((index, message, future)),
                Err(error) => failures.push(BatchFailure { index, error }),
            }
        }
        // Acks come back in order, so a duplicate within the batch finds
        // the first of its dedup id stored (and readable) already.
        let acks = join_all(sent.into_iter().map(|(index, message, future)| async move {
            let outcome = match self.acked(future).await {
                Ok(ack) => self.outcome(message, ack).await,
                Err(e) => Err(e),
            };
            (index, outcome)
        }))
        .await;
        let mut ids = Vec::with_capacity(acks.len());
        for (index, result) in acks {
            match result {
                Ok(pushed) => ids.push(pushed.into_id()),
                Err(error) => failures.push(BatchFailure { index, error }),
            }
        }
        batch_result(BACKEND, ids, failures)
    }
}
