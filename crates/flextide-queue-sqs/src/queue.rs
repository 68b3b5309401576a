//! `SqsQueue`: one SQS queue (and its dead-letter queue) as a `QueueProvider`.

use std::{collections::HashSet, fmt, time::Duration};

use async_trait::async_trait;
use aws_sdk_sqs::{
    Client,
    types::{
        DeleteMessageBatchRequestEntry, MessageAttributeValue, MessageSystemAttributeName,
        QueueAttributeName, SendMessageBatchRequestEntry,
    },
};
use bytes::Bytes;
use flextide_queue_core::{
    BatchFailure, Capabilities, DeadLetter, Delivery, Message, MessageId, QueueError, QueueOptions,
    QueueProvider, QueueStats, Receipt, Replay, Result,
    backend::{check_payload, system_time_from_millis},
};
use tokio::time::Instant;

mod dead_letters;

use crate::{
    BACKEND,
    client::{Names, queue_url},
    codec::{self, Envelope},
    error::Fault,
    inflight::{self, Inflight},
};

/// SQS's longest long poll.
const MAX_WAIT_SECONDS: u64 = 20;
/// Pause between short polls when less than a second of a wait is left.
const SHORT_POLL_PAUSE: Duration = Duration::from_millis(100);
/// SQS's longest per-message delay.
const MAX_DELAY: Duration = Duration::from_secs(900);
/// SQS's longest visibility timeout.
const MAX_VISIBILITY_SECONDS: u64 = 43_200;
/// SQS's default `MaximumMessageSize`, used when the queue does not say.
const DEFAULT_MAX_MESSAGE_SIZE: usize = 262_144;
/// How long dead letters stay hidden while they are listed or replayed.
const SCAN_VISIBILITY_SECONDS: i32 = 30;
/// Long poll used when scanning the dead-letter queue, so that an empty
/// answer means empty (a short poll samples only some SQS servers).
const SCAN_WAIT_SECONDS: i32 = 1;
/// Most dead letters one listing or replay looks at.
const MAX_SCAN: usize = 10_000;

/// The dead-letter queue of an [`SqsQueue`].
#[derive(Debug, Clone)]
struct DeadLetterQueue {
    url: String,
    /// `maxReceiveCount` of the main queue's redrive policy, when it has one.
    max_receive_count: Option<u32>,
}

/// One SQS queue, standard or FIFO, as a Flextide [`QueueProvider`].
///
/// Open it with [`SqsClient::open`](crate::SqsClient::open),
/// [`open_url`](crate::SqsClient::open_url) or
/// [`ensure_queue`](crate::SqsClient::ensure_queue). Its capabilities depend
/// on the queue: FIFO queues support ordering keys and dedup ids but no
/// per-message delay; dead letters need a dead-letter queue (the redrive
/// policy's target, or else `<name>-dlq`).
pub struct SqsQueue {
    sdk: Client,
    names: Names,
    url: String,
    dlq: Option<DeadLetterQueue>,
    lease: Duration,
    max_attempts: Option<u32>,
    max_message_size: usize,
    max_payload: usize,
}

impl fmt::Debug for SqsQueue {
    // No URL (it names the account) and no client (it holds credentials).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqsQueue")
            .field("name", &self.names.stem)
            .field("fifo", &self.names.fifo)
            .field("dead_letter_queue", &self.dlq.is_some())
            .field("lease", &self.lease)
            .field("max_attempts", &self.max_attempts)
            .field("max_payload", &self.max_payload)
            .finish()
    }
}

/// A message ready to be sent.
struct Outgoing {
    body: String,
    envelope: String,
    delay_seconds: Option<i32>,
    group: Option<String>,
    dedup: Option<String>,
}

impl Outgoing {
    fn size(&self) -> usize {
        codec::message_size(&self.body, &self.envelope)
    }

    fn attribute(&self) -> MessageAttributeValue {
        MessageAttributeValue::builder()
            .data_type(codec::ENVELOPE_TYPE)
            .string_value(self.envelope.clone())
            .build()
            .expect("data type is set")
    }

    fn entry(&self, id: usize) -> SendMessageBatchRequestEntry {
        SendMessageBatchRequestEntry::builder()
            .id(id.to_string())
            .message_body(self.body.clone())
            .message_attributes(codec::ENVELOPE_ATTRIBUTE, self.attribute())
            .set_delay_seconds(self.delay_seconds)
            .set_message_group_id(self.group.clone())
            .set_message_deduplication_id(self.dedup.clone())
            .build()
            .expect("id and body are set")
    }
}

/// A message as received from SQS.
struct Received {
    receipt: String,
    sqs_id: String,
    message: Message,
    attempt: u32,
    envelope: Option<Envelope>,
}

/// Whole seconds covering `d` (SQS counts whole seconds; rounding up never
/// shortens a delay or a lease).
fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

impl SqsQueue {
    /// Reads the queue's attributes and finds its dead-letter queue.
    pub(crate) async fn open(
        sdk: Client,
        names: Names,
        url: String,
        options: QueueOptions,
    ) -> Result<SqsQueue> {
        let sqs_name = names.sqs_name();
        let attrs = sdk
            .get_queue_attributes()
            .queue_url(&url)
            .attribute_names(QueueAttributeName::All)
            .send()
            .await
            .map_err(|e| Fault::from_sdk(&e).into_error(&sqs_name, "get_queue_attributes"))?;
        let attrs = attrs.attributes().cloned().unwrap_or_default();
        let max_message_size = attrs
            .get(&QueueAttributeName::MaximumMessageSize)
            .and_then(|v| v.parse().ok())
            .unwrap_or(DEFAULT_MAX_MESSAGE_SIZE);
        let fifo_attr = attrs
            .get(&QueueAttributeName::FifoQueue)
            .is_some_and(|v| v == "true");
        if fifo_attr != names.fifo {
            return Err(QueueError::configuration(
                BACKEND,
                format!(
                    "queue {sqs_name:?}: FifoQueue is {fifo_attr}, which does not match its name"
                ),
            ));
        }

        let dlq = match attrs
            .get(&QueueAttributeName::RedrivePolicy)
            .filter(|p| !p.is_empty())
        {
            Some(policy) => {
                let policy: serde_json::Value = serde_json::from_str(policy).map_err(|e| {
                    QueueError::backend_error(
                        BACKEND,
                        false,
                        format!("queue {sqs_name:?}: unreadable RedrivePolicy: {e}"),
                    )
                })?;
                let arn = policy["deadLetterTargetArn"].as_str().unwrap_or_default();
                let max_receive_count = match &policy["maxReceiveCount"] {
                    serde_json::Value::Number(n) => n.as_u64().map(|n| n as u32),
                    serde_json::Value::String(s) => s.parse().ok(),
                    _ => None,
                };
                // arn:aws:sqs:<region>:<account>:<name>
                let parts: Vec<&str> = arn.split(':').collect();
                let (account, dlq_name) = match parts.as_slice() {
                    [.., account, name] if parts.len() >= 6 => (Some(*account), *name),
                    _ => {
                        return Err(QueueError::backend_error(
                            BACKEND,
                            false,
                            format!(
                                "queue {sqs_name:?}: RedrivePolicy has no usable deadLetterTargetArn"
                            ),
                        ));
                    }
                };
                let account = account.filter(|a| !a.is_empty());
                let dlq_url = queue_url(&sdk, dlq_name, account).await?.ok_or_else(|| {
                    QueueError::QueueNotFound {
                        backend: BACKEND,
                        queue: dlq_name.to_owned(),
                    }
                })?;
                Some(DeadLetterQueue {
                    url: dlq_url,
                    max_receive_count,
                })
            }
            None => queue_url(&sdk, &names.dlq_name(), None)
                .await?
                .map(|url| DeadLetterQueue {
                    url,
                    max_receive_count: None,
                }),
        };

        Ok(SqsQueue {
            sdk,
            names,
            url,
            dlq,
            lease: options.lease,
            max_attempts: options.max_attempts,
            max_message_size,
            max_payload: codec::max_payload_for(max_message_size),
        })
    }

    /// The queue's URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The queue's SQS name (with `.fifo` on FIFO queues).
    pub fn sqs_name(&self) -> String {
        self.names.sqs_name()
    }

    /// Whether this is a FIFO queue.
    pub fn is_fifo(&self) -> bool {
        self.names.fifo
    }

    /// The dead-letter queue's URL, if the queue has one.
    pub fn dead_letter_queue_url(&self) -> Option<&str> {
        self.dlq.as_ref().map(|d| d.url.as_str())
    }

    fn err(&self, fault: Fault, op: &'static str) -> QueueError {
        fault.into_error(&self.names.sqs_name(), op)
    }

    fn dlq(&self, op: &'static str) -> Result<&DeadLetterQueue> {
        self.dlq
            .as_ref()
            .ok_or(QueueError::unsupported(BACKEND, op))
    }

    fn batch_limit(&self) -> usize {
        self.max_message_size.max(codec::CLASSIC_BATCH_BYTES)
    }

    // ---- sending ------------------------------------------------------

    /// Checks a message against the queue's capabilities and encodes it.
    fn prepare(&self, message: &Message) -> Result<Outgoing> {
        let fifo = self.names.fifo;
        if message.priority > 0 {
            return Err(QueueError::unsupported(BACKEND, "priority"));
        }
        if message.ordering_key.is_some() && !fifo {
            return Err(QueueError::unsupported(BACKEND, "ordering_key"));
        }
        if message.dedup_id.is_some() && !fifo {
            return Err(QueueError::unsupported(BACKEND, "dedup_id"));
        }
        let delay_seconds = match message.delay {
            Some(_) if fifo => return Err(QueueError::unsupported(BACKEND, "delay")),
            Some(d) if d > MAX_DELAY => {
                return Err(QueueError::invalid_message(
                    BACKEND,
                    format!("delay {d:?} exceeds SQS's 15 minutes"),
                ));
            }
            Some(d) => Some(ceil_secs(d) as i32),
            None => None,
        };
        for (what, value) in [
            ("ordering key", &message.ordering_key),
            ("dedup id", &message.dedup_id),
        ] {
            if let Some(v) = value
                && !codec::valid_sqs_token(v)
            {
                return Err(QueueError::invalid_message(
                    BACKEND,
                    format!(
                        "the {what} must be 1 to 128 ASCII letters, digits or punctuation characters"
                    ),
                ));
            }
        }
        check_payload(BACKEND, message.payload.len(), Some(self.max_payload))?;

        let envelope = Envelope {
            id: message.id.as_str().to_owned(),
            h: message.headers.clone(),
            k: message.ordering_key.clone(),
            d: message.dedup_id.clone(),
            ..Envelope::default()
        }
        .encode();
        if envelope.len() > codec::MAX_PUSH_ENVELOPE {
            return Err(QueueError::invalid_message(
                BACKEND,
                format!(
                    "id, headers, ordering key and dedup id take {} bytes; SQS leaves room for {}",
                    envelope.len(),
                    codec::MAX_PUSH_ENVELOPE
                ),
            ));
        }
        let (group, dedup) = if fifo {
            // A message without a key gets a group of its own, so it holds up
            // no other message. The dedup id defaults to the message id, so a
            // retried push is not enqueued twice.
            let group = message
                .ordering_key
                .clone()
                .unwrap_or_else(|| fresh_token(message.id.as_str()));
            let dedup = message
                .dedup_id
                .clone()
                .unwrap_or_else(|| fresh_token(message.id.as_str()));
            (Some(group), Some(dedup))
        } else {
            (None, None)
        };
        Ok(Outgoing {
            body: codec::encode_body(&message.payload),
            envelope,
            delay_seconds,
            group,
            dedup,
        })
    }

    /// Sends messages in batches of at most 10 and the size limit, in order.
    /// Returns one entry per message: `None` when it was enqueued. On a FIFO
    /// queue, the chunks after a failed one are not sent (that would break
    /// group order); they fail with the same error.
    async fn send_all(&self, url: &str, items: &[&Outgoing]) -> Vec<Option<Fault>> {
        let mut results: Vec<Option<Fault>> = vec![None; items.len()];
        let sizes: Vec<usize> = items.iter().map(|o| o.size()).collect();
        let mut stop: Option<Fault> = None;
        for range in codec::chunk(&sizes, codec::MAX_BATCH_ENTRIES, self.batch_limit()) {
            if let Some(fault) = &stop {
                for i in range {
                    results[i] = Some(fault.clone());
                }
                continue;
            }
            let entries: Vec<_> = range.clone().map(|i| items[i].entry(i)).collect();
            let mut failed_here = None;
            match self
                .sdk
                .send_message_batch()
                .queue_url(url)
                .set_entries(Some(entries))
                .send()
                .await
            {
                Ok(out) => {
                    let mut seen = HashSet::new();
                    for ok in out.successful() {
                        if let Ok(i) = ok.id().parse::<usize>() {
                            seen.insert(i);
                        }
                    }
                    for bad in out.failed() {
                        if let Ok(i) = bad.id().parse::<usize>() {
                            let fault = Fault::from_code(
                                bad.code(),
                                bad.message().unwrap_or_default(),
                                !bad.sender_fault(),
                            );
                            failed_here.get_or_insert(fault.clone());
                            results[i] = Some(fault);
                            seen.insert(i);
                        }
                    }
                    // SQS answers for every entry; one it did not mention is
                    // reported rather than assumed sent.
                    for i in range.clone().filter(|i| !seen.contains(i)) {
                        let fault = Fault::Other {
                            retryable: true,
                            text: "SQS did not report this entry".into(),
                        };
                        failed_here.get_or_insert(fault.clone());
                        results[i] = Some(fault);
                    }
                }
                Err(e) => {
                    let fault = Fault::from_sdk(&e);
                    for i in range {
                        results[i] = Some(fault.clone());
                    }
                    failed_here = Some(fault);
                }
            }
            if self.names.fifo && failed_here.is_some() {
                stop = failed_here;
            }
        }
        results
    }

    async fn send_one(&self, url: &str, out: &Outgoing) -> std::result::Result<(), Fault> {
        self.sdk
            .send_message()
            .queue_url(url)
            .message_body(out.body.clone())
            .message_attributes(codec::ENVELOPE_ATTRIBUTE, out.attribute())
            .set_delay_seconds(out.delay_seconds)
            .set_message_group_id(out.group.clone())
            .set_message_deduplication_id(out.dedup.clone())
            .send()
            .await
            .map(|_| ())
            .map_err(|e| Fault::from_sdk(&e))
    }

    // ---- receiving ----------------------------------------------------

    async fn receive(
        &self,
        url: &str,
        max: usize,
        wait_seconds: u64,
        visibility: u64,
    ) -> Result<Vec<Received>> {
        let out = self
            .sdk
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(max.clamp(1, codec::MAX_BATCH_ENTRIES) as i32)
            .wait_time_seconds(wait_seconds.min(MAX_WAIT_SECONDS) as i32)
            .visibility_timeout(visibility.min(MAX_VISIBILITY_SECONDS) as i32)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .message_attribute_names("All")
            .send()
            .await
            .map_err(|e| self.err(Fault::from_sdk(&e), "receive_message"))?;
        Ok(out.messages().iter().filter_map(decode).collect())
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
            let reason = format!("max attempts exceeded ({max})");
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

    /// One receive on the queue, as deliveries (see [`SqsQueue::deliver`]).
    async fn receive_deliveries(
        &self,
        max: usize,
        wait_seconds: u64,
        lease_seconds: u64,
    ) -> Result<Vec<Delivery>> {
        let max = if self.names.fifo { 1 } else { max };
        let sent_at = Instant::now();
        let received = self
            .receive(&self.url, max, wait_seconds, lease_seconds)
            .await?;
        let lease_deadline = sent_at + Duration::from_secs(lease_seconds);
        let mut deliveries = Vec::with_capacity(received.len());
        for r in received {
            if let Some(d) = self.deliver(r, lease_deadline).await {
                deliveries.push(d);
            }
        }
        Ok(deliveries)
    }

    // ---- settling -----------------------------------------------------

    async fn change_visibility(&self, receipt: &str, seconds: u64, op: &'static str) -> Result<()> {
        self.sdk
            .change_message_visibility()
            .queue_url(&self.url)
            .receipt_handle(receipt)
            .visibility_timeout(seconds as i32)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| self.err(Fault::from_sdk(&e), op))
    }

    async fn delete_receipts(&self, url: &str, receipts: &[&str]) -> Vec<Option<Fault>> {
        let mut results = vec![None; receipts.len()];
        for start in (0..receipts.len()).step_by(codec::MAX_BATCH_ENTRIES) {
            let end = (start + codec::MAX_BATCH_ENTRIES).min(receipts.len());
            let entries: Vec<_> = (start..end)
                .map(|i| {
                    DeleteMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(receipts[i])
                        .build()
                        .expect("id and handle are set")
                })
                .collect();
            match self
                .sdk
                .delete_message_batch()
                .queue_url(url)
                .set_entries(Some(entries))
                .send()
                .await
            {
                Ok(out) => {
                    let mut seen: HashSet<usize> = out
                        .successful()
                        .iter()
                        .filter_map(|e| e.id().parse().ok())
                        .collect();
                    for bad in out.failed() {
                        if let Ok(i) = bad.id().parse::<usize>() {
                            results[i] = Some(Fault::from_code(
                                bad.code(),
                                bad.message().unwrap_or_default(),
                                !bad.sender_fault(),
                            ));
                            seen.insert(i);
                        }
                    }
                    for i in (start..end).filter(|i| !seen.contains(i)) {
                        results[i] = Some(Fault::Other {
                            retryable: true,
                            text: "SQS did not report this entry".into(),
                        });
                    }
                }
                Err(e) => {
                    let fault = Fault::from_sdk(&e);
                    for slot in &mut results[start..end] {
                        *slot = Some(fault.clone());
                    }
                }
            }
        }
        results
    }
}

/// A group or deduplication id derived from `value` when SQS accepts it as
/// one, or a fresh random one.
fn fresh_token(value: &str) -> String {
    if codec::valid_sqs_token(value) {
        value.to_owned()
    } else {
        uuid::Uuid::new_v4().simple().to_string()
    }
}

/// Reads a received SQS message. Messages without our envelope (sent by
/// other producers) are delivered with their body as the payload and SQS's
/// message id as the id.
fn decode(m: &aws_sdk_sqs::types::Message) -> Option<Received> {
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
    let envelope = m
        .message_attributes()
        .and_then(|a| a.get(codec::ENVELOPE_ATTRIBUTE))
        .and_then(|v| v.string_value())
        .and_then(Envelope::decode);
    let message = match &envelope {
        Some(env) => {
            let payload = codec::decode_body(body).unwrap_or_else(|| {
                tracing::warn!(id = %env.id, "message body is not base64; delivering it as it is");
                body.as_bytes().to_vec()
            });
            let mut m = Message::from_parts(env.id.clone(), Bytes::from(payload))
                .with_headers(env.h.clone());
            m.ordering_key = env.k.clone();
            m.dedup_id = env.d.clone();
            m.enqueued_at = enqueued_at;
            m
        }
        None => {
            let mut m =
                Message::from_parts(sqs_id.clone(), Bytes::copy_from_slice(body.as_bytes()));
            m.ordering_key = sys(MessageSystemAttributeName::MessageGroupId).cloned();
            m.dedup_id = sys(MessageSystemAttributeName::MessageDeduplicationId).cloned();
            m.enqueued_at = enqueued_at;
            m
        }
    };
    Some(Received {
        receipt,
        sqs_id,
        message,
        attempt,
        envelope,
    })
}

fn partial(failures: Vec<BatchFailure>) -> QueueError {
    QueueError::PartialBatch {
        backend: BACKEND,
        failures,
    }
}

#[async_trait]
impl QueueProvider for SqsQueue {
    fn queue_name(&self) -> &str {
        &self.names.stem
    }

    fn capabilities(&self) -> Capabilities {
        let fifo = self.names.fifo;
        Capabilities {
            // Unkeyed messages of a FIFO queue each get a group of their own,
            // and SQS orders nothing across groups.
            fifo: false,
            ordering_key: fifo,
            priority: false,
            delay: !fifo,
            max_delay: (!fifo).then_some(MAX_DELAY),
            max_payload_bytes: Some(self.max_payload),
            max_batch: Some(codec::MAX_BATCH_ENTRIES),
            extend_lease: true,
            fenced_receipts: false,
            dead_letters: self.dlq.is_some(),
            dedup: fifo,
            exact_stats: false,
            peek: false,
            purge: true,
        }
    }

    async fn push(&self, message: Message) -> Result<MessageId> {
        let out = self.prepare(&message)?;
        self.send_one(&self.url, &out)
            .await
            .map_err(|f| self.err(f, "send_message"))?;
        Ok(message.id)
    }

    async fn push_batch(&self, messages: Vec<Message>) -> Result<Vec<MessageId>> {
        let mut failures = Vec::new();
        let mut ready = Vec::new();
        for (index, message) in messages.iter().enumerate() {
            match self.prepare(message) {
                Ok(out) => ready.push((index, out)),
                Err(error) => failures.push(BatchFailure { index, error }),
            }
        }
        let outs: Vec<&Outgoing> = ready.iter().map(|(_, o)| o).collect();
        let results = self.send_all(&self.url, &outs).await;
        for ((index, _), result) in ready.iter().zip(results) {
            if let Some(fault) = result {
                failures.push(BatchFailure {
                    index: *index,
                    error: self.err(fault, "send_message_batch"),
                });
            }
        }
        if failures.is_empty() {
            Ok(messages.into_iter().map(|m| m.id).collect())
        } else {
            failures.sort_by_key(|f| f.index);
            Err(partial(failures))
        }
    }

    async fn pop(&self, wait: Duration) -> Result<Option<Delivery>> {
        Ok(self.pop_batch(1, wait).await?.pop())
    }

    async fn pop_batch(&self, max: usize, wait: Duration) -> Result<Vec<Delivery>> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let max = max.min(codec::MAX_BATCH_ENTRIES);
        let deadline = Instant::now() + wait;
        let lease_seconds = ceil_secs(self.lease).min(MAX_VISIBILITY_SECONDS);
        loop {
            // Long-poll whole seconds (at most 20 per call); the last
            // fraction of a second is covered by short polls.
            let remaining = deadline.saturating_duration_since(Instant::now());
            let wait_seconds = remaining.as_secs().min(MAX_WAIT_SECONDS);
            let mut deliveries = self
                .receive_deliveries(max, wait_seconds, lease_seconds)
                .await?;
            if !deliveries.is_empty() {
                // One FIFO receive returns several messages of a group at
                // once, but a key's messages must go one at a time: FIFO
                // queues receive one message per call, and the rest of the
                // batch is whatever further calls find at once.
                while self.names.fifo && deliveries.len() < max {
                    let more = self.receive_deliveries(1, 0, lease_seconds).await?;
                    if more.is_empty() {
                        break;
                    }
                    deliveries.extend(more);
                }
                return Ok(deliveries);
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(Vec::new());
            }
            if wait_seconds == 0 {
                tokio::time::sleep(SHORT_POLL_PAUSE.min(deadline - now)).await;
            }
        }
    }

    async fn delete(&self, receipt: &Receipt) -> Result<()> {
        self.sdk
            .delete_message()
            .queue_url(&self.url)
            .receipt_handle(receipt.as_str())
            .send()
            .await
            .map_err(|e| self.err(Fault::from_sdk(&e), "delete_message"))?;
        inflight::remove(receipt.as_str());
        Ok(())
    }

    async fn delete_batch(&self, receipts: &[Receipt]) -> Result<()> {
        let handles: Vec<&str> = receipts.iter().map(Receipt::as_str).collect();
        let results = self.delete_receipts(&self.url, &handles).await;
        let mut failures = Vec::new();
        for (index, result) in results.into_iter().enumerate() {
            match result {
                None => inflight::remove(handles[index]),
                Some(fault) => failures.push(BatchFailure {
                    index,
                    error: self.err(fault, "delete_message_batch"),
                }),
            }
        }
        if failures.is_empty() {
            Ok(())
        } else {
            Err(partial(failures))
        }
    }

    async fn nack(&self, receipt: &Receipt, delay: Duration) -> Result<()> {
        let seconds = ceil_secs(delay);
        if seconds > MAX_VISIBILITY_SECONDS {
            return Err(QueueError::invalid_message(
                BACKEND,
                format!("nack delay {delay:?} exceeds SQS's 12 hours"),
            ));
        }
        // The last allowed attempt: dead-letter now rather than on the next receive.
        if let (Some(max), Some(_)) = (self.max_attempts, &self.dlq)
            && let Some(d) = inflight::get(&self.url, receipt.as_str())
            && d.attempt >= max
        {
            return self
                .move_to_dlq(
                    receipt.as_str(),
                    &d,
                    &format!("max attempts exceeded ({max})"),
                    d.attempt,
                )
                .await;
        }
        self.change_visibility(receipt.as_str(), seconds, "nack")
            .await?;
        inflight::remove(receipt.as_str());
        Ok(())
    }

    async fn extend(&self, receipt: &Receipt, by: Duration) -> Result<()> {
        let seconds = ceil_secs(by);
        if seconds > MAX_VISIBILITY_SECONDS {
            return Err(QueueError::invalid_message(
                BACKEND,
                format!("lease {by:?} exceeds SQS's 12 hours"),
            ));
        }
        let sent_at = Instant::now();
        self.change_visibility(receipt.as_str(), seconds, "extend")
            .await?;
        inflight::extend(receipt.as_str(), sent_at + Duration::from_secs(seconds));
        Ok(())
    }

    async fn dead_letter(&self, receipt: &Receipt, reason: &str) -> Result<()> {
        self.dlq("dead_letter")?;
        // SQS cannot give a message's body back from a receipt: the delivery
        // must have been received by this process and not settled since.
        let d = inflight::get(&self.url, receipt.as_str())
            .ok_or(QueueError::StaleReceipt { backend: BACKEND })?;
        self.move_to_dlq(receipt.as_str(), &d, reason, d.attempt)
            .await
    }

    async fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>> {
        self.list_dead_letters(limit).await
    }

    async fn replay_dead_letters(&self, which: Replay) -> Result<u64> {
        self.replay(which).await
    }

    async fn purge_dead_letters(&self) -> Result<u64> {
        self.purge_dlq().await
    }

    async fn purge(&self) -> Result<u64> {
        let before = self.stats().await?;
        self.sdk
            .purge_queue()
            .queue_url(&self.url)
            .send()
            .await
            .map_err(|e| self.err(Fault::from_sdk(&e), "purge_queue"))?;
        Ok(before.depth + before.in_flight + before.delayed)
    }

    async fn stats(&self) -> Result<QueueStats> {
        let counts = |url: String| async move {
            let out = self
                .sdk
                .get_queue_attributes()
                .queue_url(url)
                .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
                .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
                .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesDelayed)
                .send()
                .await
                .map_err(|e| self.err(Fault::from_sdk(&e), "get_queue_attributes"))?;
            let attrs = out.attributes().cloned().unwrap_or_default();
            let n = |k: QueueAttributeName| {
                attrs
                    .get(&k)
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(0)
            };
            Ok::<_, QueueError>((
                n(QueueAttributeName::ApproximateNumberOfMessages),
                n(QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
                n(QueueAttributeName::ApproximateNumberOfMessagesDelayed),
            ))
        };
        let (depth, in_flight, delayed) = counts(self.url.clone()).await?;
        let dead_lettered = match &self.dlq {
            Some(dlq) => {
                let (visible, hidden, delayed) = counts(dlq.url.clone()).await?;
                visible + hidden + delayed
            }
            None => 0,
        };
        Ok(QueueStats::default()
            .with_depth(depth)
            .with_in_flight(in_flight)
            .with_delayed(delayed)
            .with_dead_lettered(dead_lettered)
            .with_oldest_age(None))
    }

    fn backend_name(&self) -> &'static str {
        BACKEND
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_round_up() {
        assert_eq!(ceil_secs(Duration::ZERO), 0);
        assert_eq!(ceil_secs(Duration::from_millis(1)), 1);
        assert_eq!(ceil_secs(Duration::from_secs(2)), 2);
        assert_eq!(ceil_secs(Duration::from_millis(2001)), 3);
    }

    #[test]
    fn fresh_tokens() {
        assert_eq!(fresh_token("0190-abc"), "0190-abc");
        let t = fresh_token("has space");
        assert!(codec::valid_sqs_token(&t) && t != "has space");
    }
}
