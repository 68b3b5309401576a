//! Producing: pushes, and the copies that nacks, dead letters and replays
//! write. Every send waits for the broker's acknowledgement (`acks=all`).

use flextide_queue_core::{
    BatchFailure, Message, MessageId, QueueError, Result,
    backend::{batch_result, check_payload},
};
use futures::future::join_all;
use rdkafka::{
    message::{Header, OwnedHeaders},
    producer::FutureRecord,
    util::Timeout,
};

use super::{KafkaQueue, MAX_PAYLOAD_BYTES};
use crate::{BACKEND, Client, codec, error};

/// Produces `record` to `topic` and waits for the acknowledgement; returns
/// the partition and offset it landed at.
pub(crate) async fn send(
    client: &Client,
    topic: &str,
    record: &codec::Record,
) -> Result<(i32, i64)> {
    let producer = client.producer()?;
    let mut headers = OwnedHeaders::new_with_capacity(record.headers.len());
    for (k, v) in &record.headers {
        headers = headers.insert(Header {
            key: k,
            value: Some(v),
        });
    }
    let mut r: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(topic)
        .payload(record.value.as_ref())
        .headers(headers);
    if let Some(k) = &record.key {
        r = r.key(k.as_slice());
    }
    let sent = producer
        .send(r, Timeout::After(client.config.operation_timeout))
        .await;
    match sent {
        Ok(d) => Ok((d.partition, d.offset)),
        Err((e, _)) => Err(error::map("produce", e)),
    }
}

/// Refuses what the backend cannot carry, before anything is sent.
fn check(message: &Message) -> Result<()> {
    check_payload(BACKEND, message.payload.len(), Some(MAX_PAYLOAD_BYTES))?;
    if message.priority > 0 {
        return Err(QueueError::unsupported(BACKEND, "priority"));
    }
    if message.dedup_id.is_some() {
        return Err(QueueError::unsupported(BACKEND, "dedup_id"));
    }
    codec::check(message)
}

pub(crate) async fn push(q: &KafkaQueue, message: Message) -> Result<MessageId> {
    check(&message)?;
    q.engine.ensure_topics().await?;
    let record = codec::encode(&message, 0, codec::due_after(message.delay));
    send(&q.client, &q.topic, &record).await?;
    Ok(message.id)
}

pub(crate) async fn push_batch(q: &KafkaQueue, messages: Vec<Message>) -> Result<Vec<MessageId>> {
    if messages.is_empty() {
        return Ok(Vec::new());
    }
    // An item refused outright refuses the whole batch: nothing is sent.
    for m in &messages {
        check(m)?;
    }
    q.engine.ensure_topics().await?;
    let records: Vec<codec::Record> = messages
        .iter()
        .map(|m| codec::encode(m, 0, codec::due_after(m.delay)))
        .collect();
    // All in flight at once: the producer batches them into few requests.
    let sent = join_all(records.iter().map(|r| send(&q.client, &q.topic, r))).await;
    let mut ids = Vec::with_capacity(messages.len());
    let mut failures = Vec::new();
    for (index, (m, result)) in messages.into_iter().zip(sent).enumerate() {
        match result {
            Ok(_) => ids.push(m.id),
            Err(error) => failures.push(BatchFailure { index, error }),
        }
    }
    batch_result(BACKEND, ids, failures)
}
