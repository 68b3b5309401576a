//! Settling a delivery by publishing to its ack subject, as a request so
//! the server confirms it ("double ack"): `+ACK` deletes, `-NAK` gives back
//! (with a delay), `+WPI` restarts the lease, `+TERM` ends deliveries after
//! the message was copied to the dead-letter stream.
//!
//! JetStream does not fence: an ack on the subject of an older delivery of
//! a message that was delivered again is accepted and settles the message.

use std::time::Duration;

use async_nats::jetstream::message::PublishMessage;
use bytes::Bytes;
use flextide_queue_core::{
    BatchFailure, Message, QueueError, Receipt, Result,
    backend::{batch_result, max_attempts_reason},
};
use futures::future::join_all;

use super::NatsQueue;
use crate::{
    BACKEND, codec, error,
    receipt::{self, AckSubject},
};

impl NatsQueue {
    /// Sends one ack and waits for the server's confirmation (bounded by
    /// the client's request timeout, the operation timeout).
    async fn send_ack(&self, subject: &str, body: Bytes) -> Result<()> {
        self.client
            .request(subject.to_owned(), body)
            .await
            .map(|_| ())
            .map_err(|e| match error::map("ack", &self.name, e) {
                QueueError::Timeout {
                    backend, operation, ..
                } => QueueError::Timeout {
                    backend,
                    operation,
                    after: self.timeout(),
                },
                other => other,
            })
    }

    fn stop_keepalive(&self, subject: &str) {
        // Most settles find no extended lease: skip the lock then.
        if self.extended.load(std::sync::atomic::Ordering::Relaxed) == 0 {
            return;
        }
        if let Some(task) = self.keepalive.lock().unwrap().remove(subject) {
            task.abort();
            self.extended
                .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        }
    }

    pub(super) async fn ack(&self, receipt: &Receipt) -> Result<()> {
        let info = receipt::parse(receipt, &self.stream_name)?;
        self.stop_keepalive(info.subject);
        self.send_ack(info.subject, Bytes::from_static(b"+ACK"))
            .await?;
        self.attempts.forget(info.stream_seq);
        Ok(())
    }

    pub(super) async fn ack_many(&self, receipts: &[Receipt]) -> Result<()> {
        let mut failures = Vec::new();
        for (chunk_no, chunk) in receipts.chunks(self.settings.config.max_batch).enumerate() {
            let base = chunk_no * self.settings.config.max_batch;
            let results = join_all(chunk.iter().map(|r| self.ack(r))).await;
            for (i, result) in results.into_iter().enumerate() {
                if let Err(error) = result {
                    failures.push(BatchFailure {
                        index: base + i,
                        error,
                    });
                }
            }
        }
        batch_result(BACKEND, (), failures)
    }

    pub(super) async fn nak(&self, receipt: &Receipt, delay: Duration) -> Result<()> {
        let info = receipt::parse(receipt, &self.stream_name)?;
        let attempt = self.attempt_of(&info);
        if let Some(limit) = self.options.max_attempts
            && attempt >= limit
        {
            // This was the last attempt: dead-letter now, not at the next pop.
            let message = self.stored(&info).await?;
            return self
                .move_to_dead(&info, &message, &max_attempts_reason(limit), attempt)
                .await;
        }
        self.stop_keepalive(info.subject);
        let body = if delay.is_zero() {
            Bytes::from_static(b"-NAK")
        } else {
            let nanos = u64::try_from(delay.as_nanos()).unwrap_or(u64::MAX);
            Bytes::from(format!("-NAK {{\"delay\":{nanos}}}"))
        };
        self.send_ack(info.subject, body).await
    }

    /// `+WPI` restarts the lease at the consumer's full `ack_wait` (the
    /// server cannot set another length). A `by` longer than that is kept
    /// alive from this handle with further `+WPI`s until `by` has passed.
    pub(super) async fn in_progress(&self, receipt: &Receipt, by: Duration) -> Result<()> {
        let info = receipt::parse(receipt, &self.stream_name)?;
        self.stop_keepalive(info.subject);
        self.send_ack(info.subject, Bytes::from_static(b"+WPI"))
            .await?;
        if by > self.lease() {
            let (client, subject, lease) =
                (self.client.clone(), info.subject.to_owned(), self.lease());
            let key = subject.clone();
            let task = tokio::spawn(async move {
                let end = tokio::time::Instant::now() + by;
                // Renew at half the lease, so one lost renewal is survivable;
                // the last renewal lands no later than `by - ack_wait`.
                let step = (lease / 2).max(Duration::from_millis(1));
                loop {
                    let renew_at = (tokio::time::Instant::now() + step).min(end - lease);
                    if renew_at <= tokio::time::Instant::now() {
                        break;
                    }
                    tokio::time::sleep_until(renew_at).await;
                    let _ = client
                        .publish(subject.clone(), Bytes::from_static(b"+WPI"))
                        .await;
                }
            });
            if let Some(old) = self
                .keepalive
                .lock()
                .unwrap()
                .insert(key, task.abort_handle())
            {
                old.abort();
            } else {
                self.extended
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        }
        Ok(())
    }

    pub(super) async fn terminate(&self, receipt: &Receipt, reason: &str) -> Result<()> {
        let info = receipt::parse(receipt, &self.stream_name)?;
        let message = self.stored(&info).await?;
        // The dead-letter stream exists when the queue does (unless it was
        // dropped in between: then it is made again).
        self.ensure().await?;
        let attempt = self.attempt_of(&info);
        self.move_to_dead(&info, &message, reason, attempt).await
    }

    /// The attempt a receipt's delivery was handed out as (see `attempts.rs`).
    fn attempt_of(&self, info: &AckSubject<'_>) -> u32 {
        self.attempts
            .of(info.stream_seq, info.consumer_seq, info.delivered)
    }

    /// The message a receipt names, read from the stream; a message that
    /// is gone was settled already.
    async fn stored(&self, info: &AckSubject<'_>) -> Result<Message> {
        let get = async {
            match self.stream.get_raw_message(info.stream_seq).await {
                Ok(m) => Ok(m),
                Err(e) if error::class_of(&e) == error::Class::NotFound => {
                    Err(QueueError::StaleReceipt { backend: BACKEND })
                }
                Err(e) => Err(error::map("message get", &self.name, e)),
            }
        };
        let m = error::timed("message get", self.timeout(), get).await?;
        let stored = codec::system_time_from_nanos(m.time.unix_timestamp_nanos());
        Ok(codec::decode(Some(&m.headers), m.payload, info.stream_seq, stored).message)
    }

    /// Copies a message to the dead-letter stream (reason, attempts and
    /// time in headers), then ends its deliveries with `+TERM`. The copy's
    /// `Nats-Msg-Id` is derived from the stream sequence, so a retry after a
    /// failed `+TERM` does not store a second dead letter.
    pub(super) async fn move_to_dead(
        &self,
        info: &AckSubject<'_>,
        message: &Message,
        reason: &str,
        attempts: u32,
    ) -> Result<()> {
        self.stop_keepalive(info.subject);
        let key = format!("dl-{}-{}", self.stream_name, info.stream_seq);
        let headers = codec::dead_letter_headers(message, reason, attempts, &key);
        let publish = PublishMessage::build()
            .payload(message.payload.clone())
            .headers(headers);
        let stored = async {
            self.js
                .send_publish(self.dlq_subject.clone(), publish)
                .await
                .map_err(|e| error::map("dead-letter publish", &self.name, e))?
                .await
                .map_err(|e| error::map("dead-letter ack", &self.name, e))
        };
        error::timed("dead-letter publish", self.timeout(), stored).await?;
        self.send_ack(info.subject, Bytes::from_static(b"+TERM"))
            .await?;
        self.attempts.forget(info.stream_seq);
        Ok(())
    }
}
