//! Settling deliveries: delete, nack (a copy produced back to the queue's
//! topic with its attempts and not-before time; a keyed record stays in its
//! place instead), dead-letter, release and extend. Each checks the receipt's lease in the ledger first: a receipt
//! of an earlier delivery, of a partition this process no longer owns, or
//! of another process, is stale.

use std::time::Duration;

use flextide_queue_core::{
    BatchFailure, QueueError, Receipt, Result,
    backend::{batch_result, max_attempts_reason},
};
use tokio::time::Instant;

use super::{KafkaQueue, dead, push};
use crate::{BACKEND, codec, ledger::Stale, receipt};

fn stale(_: Stale) -> QueueError {
    QueueError::StaleReceipt { backend: BACKEND }
}

/// What a settle needs of the leased record.
struct Held {
    partition: i32,
    offset: i64,
    token: String,
    decoded: codec::Decoded,
    attempt: u32,
}

fn held(q: &KafkaQueue, r: &Receipt) -> Result<Held> {
    let (partition, offset, token) = receipt::decode(r)?;
    let ledger = q.engine.ledger.lock().expect("ledger lock");
    let entry = ledger.leased(partition, offset, token).map_err(stale)?;
    let decoded = entry
        .decoded
        .clone()
        .map_err(|_| QueueError::StaleReceipt { backend: BACKEND })?;
    Ok(Held {
        partition,
        offset,
        token: token.to_owned(),
        decoded,
        attempt: entry.spent + 1,
    })
}

/// Marks the record done; its partition's commit follows if it moved.
async fn finish(q: &KafkaQueue, h: &Held) -> Result<()> {
    let moved = q
        .engine
        .ledger
        .lock()
        .expect("ledger lock")
        .settle(h.partition, h.offset, &h.token)
        .map_err(stale)?;
    if moved.is_some() {
        q.engine.commit_soon();
    }
    Ok(())
}

pub(crate) async fn delete(q: &KafkaQueue, r: &Receipt) -> Result<()> {
    let h = held(q, r)?;
    finish(q, &h).await
}

/// Deletes several, settled under one lock.
pub(crate) async fn delete_batch(q: &KafkaQueue, receipts: &[Receipt]) -> Result<()> {
    let mut failures = Vec::new();
    let mut moved = false;
    {
        let mut ledger = q.engine.ledger.lock().expect("ledger lock");
        for (index, r) in receipts.iter().enumerate() {
            let settled = receipt::decode(r).and_then(|(partition, offset, token)| {
                ledger.settle(partition, offset, token).map_err(stale)
            });
            match settled {
                Ok(pos) => moved |= pos.is_some(),
                Err(error) => failures.push(BatchFailure { index, error }),
            }
        }
    }
    if moved {
        q.engine.commit_soon();
    }
    batch_result(BACKEND, (), failures)
}

pub(crate) async fn nack(q: &KafkaQueue, r: &Receipt, delay: Duration) -> Result<()> {
    let h = held(q, r)?;
    if q.options.max_attempts.is_some_and(|m| h.attempt >= m) {
        let reason = max_attempts_reason(q.options.max_attempts.unwrap_or_default());
        return bury(q, &h, &reason).await;
    }
    let not_before = codec::due_after(Some(delay));
    if h.decoded.message.ordering_key.is_some() {
        // A copy at the end of the partition would let the key's next
        // records pass it: the record stays in its place (see the README).
        q.engine
            .ledger
            .lock()
            .expect("ledger lock")
            .retry_in_place(h.partition, h.offset, &h.token, not_before)
            .map_err(stale)?;
        q.engine.wake.notify_waiters();
        return Ok(());
    }
    let copy = codec::encode(&h.decoded.message, h.attempt, not_before);
    push::send(&q.client, &q.topic, &copy).await?;
    finish(q, &h).await
}

pub(crate) async fn dead_letter(q: &KafkaQueue, r: &Receipt, reason: &str) -> Result<()> {
    let h = held(q, r)?;
    bury(q, &h, reason).await
}

async fn bury(q: &KafkaQueue, h: &Held, reason: &str) -> Result<()> {
    let record = codec::dead_letter(&h.decoded.message, h.attempt, reason);
    dead::store(q, &record).await?;
    finish(q, h).await
}

pub(crate) fn release(q: &KafkaQueue, r: &Receipt) -> Result<()> {
    let (partition, offset, token) = receipt::decode(r)?;
    q.engine
        .ledger
        .lock()
        .expect("ledger lock")
        .release(partition, offset, token)
        .map_err(stale)?;
    q.engine.wake.notify_waiters();
    Ok(())
}

pub(crate) fn extend(q: &KafkaQueue, r: &Receipt, by: Duration) -> Result<()> {
    let (partition, offset, token) = receipt::decode(r)?;
    q.engine
        .ledger
        .lock()
        .expect("ledger lock")
        .extend(partition, offset, token, Instant::now() + by)
        .map_err(stale)
}
