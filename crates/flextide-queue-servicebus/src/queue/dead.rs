//! The dead-letter sub-queue (`QUEUE/$DeadLetterQueue`), read over a
//! receive link of its own: every message read is held (locked) until
//! the scan ends, then completed (replayed or deleted) or given back.
//! A dead letter another consumer holds locked is not seen.

use std::time::{Duration, SystemTime};

use flextide_queue_core::{DeadLetter, MessageId, Replay, Result};

use super::ServiceBusQueue;
use crate::transport::Incoming;

/// The most dead letters one call reads.
const SCAN_LIMIT: usize = 5_000;
/// How long to wait for the sub-queue's first messages.
const FIRST_WAIT: Duration = Duration::from_secs(2);
/// Then, for each further batch.
const NEXT_WAIT: Duration = Duration::from_millis(500);
const BATCH: usize = 100;

/// What to do with each scanned dead letter.
enum Choice {
    Keep,
    Complete,
    Replay,
}

/// Scans up to `limit` dead letters, lets `choose` pick, settles, and
/// returns the scanned letters with what was done.
async fn scan(
    q: &ServiceBusQueue,
    limit: usize,
    mut choose: impl FnMut(usize, &Incoming) -> Choice,
) -> Result<Vec<(Incoming, bool)>> {
    let address = q.dead_letter_address();
    let entity = q.name.clone();
    let limit = limit.min(SCAN_LIMIT);
    let fresh_ids = q.config.duplicate_detection.is_some();
    q.with_links(async move |links| {
        let mut receiver = links.extra_receiver(&address, &entity).await?;
        let mut held = Vec::new();
        let mut wait = FIRST_WAIT;
        while held.len() < limit {
            let got = receiver
                .receive(BATCH.min(limit - held.len()), wait)
                .await?;
            if got.is_empty() {
                break;
            }
            held.extend(got);
            wait = NEXT_WAIT;
        }
        let mut out = Vec::with_capacity(held.len());
        for (i, d) in held.into_iter().enumerate() {
            let done = match choose(i, &d) {
                Choice::Keep => {
                    receiver.release(&d).await?;
                    false
                }
                Choice::Complete => {
                    receiver.accept(&d).await?;
                    true
                }
                Choice::Replay => match &d.received.message {
                    Ok(m) => {
                        let wire_id = super::copy_wire_id(fresh_ids, m);
                        links
                            .sender(&entity)
                            .await?
                            .send_as(m, &wire_id, 0, None)
                            .await?;
                        receiver.accept(&d).await?;
                        true
                    }
                    Err(_) => {
                        receiver.release(&d).await?;
                        false
                    }
                },
            };
            out.push((d, done));
        }
        receiver.close().await;
        Ok(out)
    })
    .await
}

fn letter(d: &Incoming) -> Option<DeadLetter> {
    let message = d.received.message.as_ref().ok()?.clone();
    let at = message.enqueued_at.unwrap_or_else(SystemTime::now);
    Some(DeadLetter::new(
        message,
        d.received.dead_letter_reason.clone().unwrap_or_default(),
        d.received.attempt().saturating_sub(1).max(1),
        at,
    ))
}

pub(super) async fn list(q: &ServiceBusQueue, limit: usize) -> Result<Vec<DeadLetter>> {
    let scanned = scan(q, limit, |_, _| Choice::Keep).await?;
    Ok(scanned.iter().filter_map(|(d, _)| letter(d)).collect())
}

pub(super) async fn count(q: &ServiceBusQueue) -> Result<u64> {
    let scanned = scan(q, SCAN_LIMIT, |_, _| Choice::Keep).await?;
    Ok(scanned.len() as u64)
}

pub(super) async fn replay(q: &ServiceBusQueue, which: Replay) -> Result<u64> {
    let scanned = scan(q, SCAN_LIMIT, |i, d| {
        let chosen = match &which {
            Replay::All => true,
            Replay::Oldest(n) => i < *n,
            Replay::Ids(ids) => is_one_of(d, ids),
        };
        if chosen { Choice::Replay } else { Choice::Keep }
    })
    .await?;
    Ok(scanned.iter().filter(|(_, done)| *done).count() as u64)
}

/// Deletes the dead letters with `ids`, or all of them.
pub(super) async fn delete(q: &ServiceBusQueue, ids: Option<&[MessageId]>) -> Result<u64> {
    let scanned = scan(q, SCAN_LIMIT, |_, d| match ids {
        Some(ids) if !is_one_of(d, ids) => Choice::Keep,
        _ => Choice::Complete,
    })
    .await?;
    Ok(scanned.iter().filter(|(_, done)| *done).count() as u64)
}

fn is_one_of(d: &Incoming, ids: &[MessageId]) -> bool {
    d.received
        .message
        .as_ref()
        .is_ok_and(|m| ids.iter().any(|id| id == &m.id))
}
