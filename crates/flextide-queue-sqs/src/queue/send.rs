//! Sending: encoding messages for SQS and sending them in batches cut to
//! SQS's limits.

use std::collections::HashSet;

use aws_sdk_sqs::types::{MessageAttributeValue, SendMessageBatchRequestEntry};
use flextide_queue_core::{Message, QueueError, Result, backend::check_payload};

use super::{MAX_DELAY, SqsQueue, ceil_secs};
use crate::{
    BACKEND,
    codec::{self, Envelope},
    error::Fault,
};

/// A message ready to be sent.
pub(super) struct Outgoing {
    pub(super) body: String,
    pub(super) envelope: String,
    pub(super) delay_seconds: Option<i32>,
    pub(super) group: Option<String>,
    pub(super) dedup: Option<String>,
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

impl SqsQueue {
    /// Checks a message against the queue's capabilities and encodes it.
    pub(super) fn prepare(&self, message: &Message) -> Result<Outgoing> {
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
    pub(super) async fn send_all(&self, url: &str, items: &[&Outgoing]) -> Vec<Option<Fault>> {
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

    pub(super) async fn send_one(
        &self,
        url: &str,
        out: &Outgoing,
    ) -> std::result::Result<(), Fault> {
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
}

/// A group or deduplication id derived from `value` when SQS accepts it as
/// one, or a fresh random one.
pub(super) fn fresh_token(value: &str) -> String {
    if codec::valid_sqs_token(value) {
        value.to_owned()
    } else {
        uuid::Uuid::new_v4().simple().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fresh_tokens() {
        assert_eq!(fresh_token("0190-abc"), "0190-abc");
        let t = fresh_token("has space");
        assert!(codec::valid_sqs_token(&t) && t != "has space");
    }
}
