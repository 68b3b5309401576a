//! Receiving: one look at the queue (a `ReceiveMessage`), decoding what
//! came back, and handing it over as deliveries.
//!
//! A receive that is cut short (its pop's future dropped) cannot be taken
//! back: the server may still lease messages to the abandoned request, and
//! a long poll keeps doing so for up to 20 s. So each look runs as a task of
//! its own that always finishes, and what it receives when its pop is gone
//! goes to the handle's [`Stash`], from which the next pop (or one waiting
//! now) takes it (contract clause 13). Giving such messages back to SQS
//! instead would cost each an attempt per abandoned receive.

use std::{collections::VecDeque, sync::Mutex, time::Duration};

use aws_sdk_sqs::types::MessageSystemAttributeName;
use bytes::Bytes;
use flextide_queue_core::{
    Delivery, Message, QueueError, Receipt, Result,
    backend::{Decoded, max_attempts_reason, system_time_from_millis},
};
use tokio::{
    sync::{Notify, oneshot},
    time::Instant,
};

use super::{MAX_VISIBILITY_SECONDS, MAX_WAIT_SECONDS, SqsQueue};
use crate::{
    BACKEND,
    codec::{self, Envelope},
    error::Fault,
    inflight::{self, Inflight},
};

/// A message as received from SQS.
pub(super) struct Received {
    pub(super) receipt: String,
    pub(super) sqs_id: String,
    pub(super) message: Message,
    pub(super) attempt: u32,
    pub(super) envelope: Option<Envelope>,
}

/// One receive, sorted: the entries that decoded, and those that did not
/// (as they are, body for payload and SQS's id for id) with their
/// `undecodable: …` reason.
pub(super) type Batch = Decoded<Received, Received>;

/// Deliveries received for pops that were dropped, in arrival order,
/// until a pop takes them or their lease ends (SQS then delivers them again).
#[derive(Debug, Default)]
pub(super) struct Stash {
    deliveries: Mutex<VecDeque<Delivery>>,
    /// Woken when deliveries are put in.
    added: Notify,
}

impl Stash {
    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Delivery>> {
        self.deliveries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn put(&self, deliveries: Vec<Delivery>) {
        if deliveries.is_empty() {
            return;
        }
        let now = Instant::now();
        let mut stash = self.lock();
        stash.retain(|d| d.lease_deadline > now);
        stash.extend(deliveries);
        drop(stash);
        self.added.notify_waiters();
    }

    /// Up to `max` deliveries whose lease has not ended; expired ones are
    /// dropped (their receipts may still settle them, as on every delivery).
    /// Forgets every delivery held (the queue was dropped).
    pub(super) fn take_all(&self) -> Vec<Delivery> {
        self.lock().drain(..).collect()
    }

    fn take(&self, max: usize) -> Vec<Delivery> {
        let now = Instant::now();
        let mut stash = self.lock();
        stash.retain(|d| d.lease_deadline > now);
        let n = max.min(stash.len());
        stash.drain(..n).collect()
    }

    /// Waits until deliveries are stashed and takes up to `max` of them.
    async fn wait(&self, max: usize) -> Vec<Delivery> {
        loop {
            let added = self.added.notified();
            tokio::pin!(added);
            added.as_mut().enable();
            let got = self.take(max);
            if !got.is_empty() {
                return got;
            }
            added.await;
        }
    }
}

impl SqsQueue {
    /// One `ReceiveMessage` on the queue at `url`.
    pub(super) async fn receive(
        &self,
        url: &str,
        max: usize,
        wait_seconds: u64,
        visibility: u64,
    ) -> Result<Batch> {
        let mut request = self
            .sdk
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(max.clamp(1, codec::MAX_BATCH_ENTRIES) as i32)
            .wait_time_seconds(wait_seconds.min(MAX_WAIT_SECONDS) as i32)
            .visibility_timeout(visibility.min(MAX_VISIBILITY_SECONDS) as i32)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .message_attribute_names("All");
        if self.names.fifo {
            // One id per receive, the same on each of the SDK's retries of
            // it: a retry after a response was lost (a timeout, a reset
            // connection) gets the messages that response leased, instead
            // of leaving them invisible, their groups blocked, until the
            // lease ends. Standard queues have no such id.
            request = request.receive_request_attempt_id(uuid::Uuid::new_v4().simple().to_string());
        }
        let out = request.send().await.map_err(|e| {
            match Fault::from_sdk(&e) {
                // A retry of a throttled receive may not reuse the id: the
                // next receive (a new id) is the retry.
                Fault::Invalid(why) if why.contains("ReceiveRequestAttemptId") => {
                    self.err(Fault::Throttled(why), "receive_message")
                }
                fault => self.err(fault, "receive_message"),
            }
        })?;
        Ok(Decoded::sort(out.messages().iter().filter_map(decode)))
    }

    /// One receive on a dead-letter queue, for listing: an entry that does
    /// not decode is shown as it is, with its `undecodable: …` reason.
    pub(super) async fn receive_listed(
        &self,
        url: &str,
        max: usize,
        wait_seconds: u64,
        visibility: u64,
    ) -> Result<Vec<Received>> {
        let batch = self.receive(url, max, wait_seconds, visibility).await?;
        let mut all = batch.ok;
        all.extend(batch.undecodable.into_iter().map(|(mut raw, reason)| {
            raw.envelope = Some(Envelope {
                id: raw.message.id.as_str().to_owned(),
                r: Some(reason),
                ..Envelope::default()
            });
            raw
        }));
        Ok(all)
    }

    /// One look at the queue for `pop_batch`: what dropped pops left in
    /// the stash, else one receive, run to its end even when this pop is
    /// dropped (see the module docs). While it waits, a delivery stashed by
    /// another abandoned receive is taken at once.
    pub(super) async fn look(
        &self,
        max: usize,
        wait_seconds: u64,
        lease_seconds: u64,
    ) -> Result<Vec<Delivery>> {
        let stashed = self.stash.take(max);
        if !stashed.is_empty() {
            return Ok(stashed);
        }
        let this = self.clone();
        let (tx, mut rx) = oneshot::channel();
        tokio::spawn(async move {
            let got = this.claim(max, wait_seconds, lease_seconds).await;
            if let Err(Ok(abandoned)) = tx.send(got) {
                this.stash.put(abandoned);
            }
        });
        tokio::select! {
            got = &mut rx => got.unwrap_or_else(|_| {
                Err(QueueError::backend_error(
                    BACKEND,
                    true,
                    "receive_message: the receiving task ended without an answer",
                ))
            }),
            stashed = self.stash.wait(max) => {
                // Our receive now finishes for the stash, unless it already has.
                rx.close();
                if let Ok(Ok(late)) = rx.try_recv() {
                    self.stash.put(late);
                }
                Ok(stashed)
            }
        }
    }

    /// Receives up to `max` deliveries. One FIFO receive returns several
    /// messages of a group at once, but a key's messages must go one at a
    /// time: FIFO queues receive one message per call, and the rest of the
    /// batch is whatever further calls find at once.
    async fn claim(
        &self,
        max: usize,
        wait_seconds: u64,
        lease_seconds: u64,
    ) -> Result<Vec<Delivery>> {
        let mut deliveries = self
            .receive_deliveries(max, wait_seconds, lease_seconds)
            .await?;
        while self.names.fifo && !deliveries.is_empty() && deliveries.len() < max {
            match self.receive_deliveries(1, 0, lease_seconds).await {
                Ok(more) if !more.is_empty() => deliveries.extend(more),
                // What was received is handed over; a lasting failure shows
                // on the next pop.
                _ => break,
            }
        }
        Ok(deliveries)
    }

    /// One receive on the queue, as deliveries (see [`SqsQueue::deliver`]);
    /// undecodable entries go to the dead letters on their own.
    async fn receive_deliveries(
        &self,
        max: usize,
        wait_seconds: u64,
        lease_seconds: u64,
    ) -> Result<Vec<Delivery>> {
        let max = if self.names.fifo { 1 } else { max };
        let sent_at = Instant::now();
        let batch = self
            .receive(&self.url, max, wait_seconds, lease_seconds)
            .await?;
        let lease_deadline = sent_at + Duration::from_secs(lease_seconds);
        for (raw, reason) in batch.undecodable {
            self.dead_letter_undecodable(raw, &reason, lease_deadline)
                .await;
        }
        let mut deliveries = Vec::with_capacity(batch.ok.len());
        for r in batch.ok {
            if let Some(d) = self.deliver(r, lease_deadline).await {
                deliveries.push(d);
            }
        }
        Ok(deliveries)
    }

    /// Registers a received message as a delivery, or moves it to the dead
    /// letters when it has been delivered more than `max_attempts` times
    /// (SQS's redrive does this first when the queue has a policy; this
    /// covers queues without one, or with a larger `maxReceiveCount`).
    async fn deliver(&self, r: Received, lease_deadline: Instant) -> Option<Delivery> {
        let inflight = Inflight {
            queue_url: self.url.clone(),
            sqs_id: r.sqs_id,
            message: r.message,
            attempt: r.attempt,
            lease_deadline,
        };
        if let (Some(max), Some(_)) = (self.max_attempts, &self.dlq)
            && r.attempt > max
        {
            let reason = max_attempts_reason(max);
            if let Err(e) = self
                .move_to_dlq(&r.receipt, &inflight, &reason, r.attempt - 1)
                .await
            {
                tracing::warn!(queue = %self.names.stem, error = %e, "could not dead-letter an exhausted message; it will be retried");
            }
            return None;
        }
        let delivery = Delivery::new(
            inflight.message.clone(),
            Receipt::new(r.receipt.as_str()),
            r.attempt,
            lease_deadline,
        );
        inflight::insert(&r.receipt, inflight);
        Some(delivery)
    }

    /// Moves an entry that did not decode to the dead letters as it is (its
    /// body becomes the payload), so that no pop fails on it and no other
    /// message pays an attempt for it. Without a dead-letter queue, or when
    /// the move fails, it stays leased and comes back after the lease.
    async fn dead_letter_undecodable(&self, raw: Received, reason: &str, lease_deadline: Instant) {
        if self.dlq.is_none() {
            tracing::warn!(queue = %self.names.stem, sqs_id = %raw.sqs_id, reason,
                "an undecodable message is skipped: the queue has no dead-letter queue to move it to");
            return;
        }
        let inflight = Inflight {
            queue_url: self.url.clone(),
            sqs_id: raw.sqs_id,
            message: raw.message,
            attempt: raw.attempt,
            lease_deadline,
        };
        if let Err(e) = self
            .move_to_dlq(&raw.receipt, &inflight, reason, raw.attempt)
            .await
        {
            tracing::warn!(queue = %self.names.stem, error = %e,
                "could not dead-letter an undecodable message; it will be retried");
        }
    }
}

/// Reads a received SQS message: `Ok` when it decodes, `Err` with the entry
/// as it is and what is wrong when it does not, `None` without a receipt
/// handle (nothing can be done with it).
///
/// Messages without our envelope attribute (sent by other producers) decode
/// as their body for payload and SQS's message id for id, which SQS keeps
/// across redeliveries (contract clause 12). A message that carries the
/// attribute but whose attribute or body is not what we write does not
/// decode.
fn decode(
    m: &aws_sdk_sqs::types::Message,
) -> Option<std::result::Result<Received, (Received, String)>> {
    let receipt = m.receipt_handle()?.to_owned();
    let sqs_id = m.message_id().unwrap_or_default().to_owned();
    let body = m.body().unwrap_or_default();
    let system = m.attributes();
    let sys = |k: MessageSystemAttributeName| system.and_then(|a| a.get(&k));
    let attempt = sys(MessageSystemAttributeName::ApproximateReceiveCount)
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    let enqueued_at = sys(MessageSystemAttributeName::SentTimestamp)
        .and_then(|v| v.parse::<i64>().ok())
        .map(system_time_from_millis);
    let mut raw = Message::from_parts(sqs_id.clone(), Bytes::copy_from_slice(body.as_bytes()));
    raw.ordering_key = sys(MessageSystemAttributeName::MessageGroupId).cloned();
    raw.dedup_id = sys(MessageSystemAttributeName::MessageDeduplicationId).cloned();
    raw.enqueued_at = enqueued_at;
    let raw = Received {
        receipt,
        sqs_id,
        message: raw,
        attempt,
        envelope: None,
    };
    let Some(attribute) = m
        .message_attributes()
        .and_then(|a| a.get(codec::ENVELOPE_ATTRIBUTE))
    else {
        return Some(Ok(raw));
    };
    let envelope = match attribute
        .string_value()
        .ok_or_else(|| "it has no text value".to_owned())
        .and_then(Envelope::decode)
    {
        Ok(env) if env.id.is_empty() => {
            return Some(Err((
                raw,
                format!(
                    "the {:?} attribute has an empty id",
                    codec::ENVELOPE_ATTRIBUTE
                ),
            )));
        }
        Ok(env) => env,
        Err(what) => {
            return Some(Err((
                raw,
                format!(
                    "the {:?} attribute is not a Flextide envelope: {what}",
                    codec::ENVELOPE_ATTRIBUTE
                ),
            )));
        }
    };
    let Some(payload) = codec::decode_body(body) else {
        return Some(Err((
            raw,
            format!("the body of message {} is not base64", envelope.id),
        )));
    };
    let mut message = Message::from_parts(envelope.id.clone(), Bytes::from(payload))
        .with_headers(envelope.h.clone());
    message.ordering_key = envelope.k.clone();
    message.dedup_id = envelope.d.clone();
    message.enqueued_at = enqueued_at;
    Some(Ok(Received {
        message,
        envelope: Some(envelope),
        ..raw
    }))
}

#[cfg(test)]
mod tests {
    use aws_sdk_sqs::types::{Message as SqsMessage, MessageAttributeValue};

    use super::*;

    fn sqs_message(body: &str, envelope: Option<&str>) -> SqsMessage {
        let mut m = SqsMessage::builder()
            .receipt_handle("rh")
            .message_id("sqs-1")
            .body(body)
            .attributes(MessageSystemAttributeName::ApproximateReceiveCount, "2");
        if let Some(text) = envelope {
            m = m.message_attributes(
                codec::ENVELOPE_ATTRIBUTE,
                MessageAttributeValue::builder()
                    .data_type(codec::ENVELOPE_TYPE)
                    .string_value(text)
                    .build()
                    .unwrap(),
            );
        }
        m.build()
    }

    #[test]
    fn plain_bodies_keep_the_sqs_id() {
        let r = decode(&sqs_message("{\"raw\":1}", None))
            .unwrap()
            .ok()
            .unwrap();
        assert_eq!(r.message.id.as_str(), "sqs-1");
        assert_eq!(&r.message.payload[..], b"{\"raw\":1}");
        assert_eq!(r.attempt, 2);
        assert!(r.envelope.is_none());
    }

    #[test]
    fn our_messages_decode() {
        let env = Envelope {
            id: "m1".into(),
            ..Envelope::default()
        }
        .encode();
        let body = codec::encode_body(b"\xffbinary");
        let r = decode(&sqs_message(&body, Some(&env)))
            .unwrap()
            .ok()
            .unwrap();
        assert_eq!(r.message.id.as_str(), "m1");
        assert_eq!(&r.message.payload[..], b"\xffbinary");
    }

    #[test]
    fn malformed_envelopes_and_bodies_do_not_decode() {
        let good = Envelope {
            id: "m1".into(),
            ..Envelope::default()
        }
        .encode();
        for (body, env) in [
            ("aGk=", "{\"id\":"),
            ("aGk=", "[1,2]"),
            ("aGk=", "{\"id\":\"\"}"),
            ("not base64!", good.as_str()),
        ] {
            let Err((raw, what)) = decode(&sqs_message(body, Some(env))).unwrap() else {
                panic!("{body} {env} decoded");
            };
            assert_eq!(raw.message.id.as_str(), "sqs-1");
            assert_eq!(&raw.message.payload[..], body.as_bytes());
            assert!(!what.is_empty());
        }
    }
}
