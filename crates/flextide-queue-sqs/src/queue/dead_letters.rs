//! Dead letters on SQS: moving a delivery to the dead-letter queue, and
//! listing, replaying, deleting from and purging it by receiving its
//! messages.

use std::{
    collections::{HashMap, HashSet},
    time::SystemTime,
};

use aws_sdk_sqs::types::ChangeMessageVisibilityBatchRequestEntry;
#[cfg(doc)]
use flextide_queue_core::QueueProvider;
use flextide_queue_core::{
    DeadLetter, MessageId, Replay, Result,
    backend::{max_attempts_reason, now_millis, system_time_from_millis},
};

use super::{
    DeadLetterQueue, MAX_SCAN, Outgoing, SCAN_VISIBILITY_SECONDS, SCAN_WAIT_SECONDS, SqsQueue,
    receive::Received, send::fresh_token,
};
use crate::{
    codec::{self, Envelope},
    error::Fault,
    inflight::{self, Inflight},
};

impl SqsQueue {
    /// Copies a delivery to the dead-letter queue with `reason`, then deletes
    /// it from the queue.
    ///
    /// Not atomic: a crash between the two leaves the message in both. It is
    /// then delivered again; dead-lettering it again adds no second copy on
    /// a FIFO dead-letter queue (deduplicated by SQS's message id), and on a
    /// standard one the copies share the message id, which listing, replay
    /// and purge collapse into one.
    pub(super) async fn move_to_dlq(
        &self,
        receipt: &str,
        d: &Inflight,
        reason: &str,
        attempts: u32,
    ) -> Result<()> {
        let dlq = self.dlq("dead_letter")?;
        let base = Envelope {
            id: d.message.id.as_str().to_owned(),
            h: d.message.headers.clone(),
            k: d.message.ordering_key.clone(),
            d: d.message.dedup_id.clone(),
            a: Some(attempts),
            t: Some(now_millis()),
            ..Envelope::default()
        };
        let body = codec::encode_body(&d.message.payload);
        // Cut the reason until the copy fits in a message.
        let mut reason = codec::truncate(reason, codec::MAX_REASON);
        let envelope = loop {
            let envelope = Envelope {
                r: Some(reason.to_owned()),
                ..base.clone()
            }
            .encode();
            if codec::message_size(&body, &envelope) <= self.max_message_size || reason.is_empty() {
                break envelope;
            }
            reason = codec::truncate(reason, reason.len() / 2);
        };
        let (group, dedup) = if self.names.fifo {
            (Some(fresh_token(&d.sqs_id)), Some(fresh_token(&d.sqs_id)))
        } else {
            (None, None)
        };
        let out = Outgoing {
            body,
            envelope,
            delay_seconds: None,
            group,
            dedup,
        };
        self.send_one(&dlq.url, &out)
            .await
            .map_err(|f| self.err(f, "dead_letter"))?;
        self.sdk
            .delete_message()
            .queue_url(&self.url)
            .receipt_handle(receipt)
            .send()
            .await
            .map_err(|e| self.err(Fault::from_sdk(&e), "dead_letter"))?;
        inflight::remove(receipt);
        Ok(())
    }

    /// Makes scanned dead letters visible again; failures only delay them.
    pub(super) async fn release(&self, url: &str, receipts: &[&str]) {
        for chunk in receipts.chunks(codec::MAX_BATCH_ENTRIES) {
            let entries: Vec<_> = chunk
                .iter()
                .enumerate()
                .map(|(i, r)| {
                    ChangeMessageVisibilityBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(*r)
                        .visibility_timeout(0)
                        .build()
                        .expect("id and handle are set")
                })
                .collect();
            if let Err(e) = self
                .sdk
                .change_message_visibility_batch()
                .queue_url(url)
                .set_entries(Some(entries))
                .send()
                .await
            {
                tracing::warn!(queue = %self.names.stem, error = %Fault::from_sdk(&e).into_error(url, "release").to_string(),
                    "dead letters stay hidden until their scan visibility ends");
            }
        }
    }

    /// Receives up to `cap` dead letters, hiding them for the scan.
    async fn scan(&self, dlq: &DeadLetterQueue, cap: usize) -> Result<Vec<Received>> {
        let mut found: Vec<Received> = Vec::new();
        while found.len() < cap {
            let batch = match self
                .receive_listed(
                    &dlq.url,
                    cap - found.len(),
                    SCAN_WAIT_SECONDS as u64,
                    SCAN_VISIBILITY_SECONDS as u64,
                )
                .await
            {
                Ok(batch) => batch,
                Err(e) => {
                    let receipts: Vec<&str> = found.iter().map(|r| r.receipt.as_str()).collect();
                    self.release(&dlq.url, &receipts).await;
                    return Err(e);
                }
            };
            if batch.is_empty() {
                break;
            }
            found.extend(batch);
        }
        Ok(found)
    }

    /// A scanned dead letter as the trait shows it.
    fn dead_letter_of(&self, dlq: &DeadLetterQueue, r: &Received) -> DeadLetter {
        let env = r.envelope.as_ref();
        // Messages SQS moved by its redrive policy carry no reason of ours.
        let limit = dlq.max_receive_count.or(self.max_attempts);
        let reason = env
            .and_then(|e| e.r.clone())
            .unwrap_or_else(|| match limit {
                Some(n) => max_attempts_reason(n),
                None => "max attempts exceeded".to_owned(),
            });
        let attempts = env.and_then(|e| e.a).or(limit).unwrap_or(0);
        let dead_lettered_at = env
            .and_then(|e| e.t)
            .map(system_time_from_millis)
            .or(r.message.enqueued_at)
            .unwrap_or_else(SystemTime::now);
        DeadLetter::new(r.message.clone(), reason, attempts, dead_lettered_at)
    }

    /// Scanned dead letters grouped by message id (copies from a repeated
    /// dead-lettering share one), oldest first.
    fn by_id<'a>(
        &self,
        dlq: &DeadLetterQueue,
        scanned: &'a [Received],
    ) -> Vec<(DeadLetter, Vec<&'a Received>)> {
        let mut groups: Vec<(DeadLetter, Vec<&Received>)> = Vec::new();
        let mut index: HashMap<&MessageId, usize> = HashMap::new();
        for r in scanned {
            let dl = self.dead_letter_of(dlq, r);
            match index.get(&r.message.id) {
                Some(&i) => {
                    if dl.dead_lettered_at < groups[i].0.dead_lettered_at {
                        groups[i].0 = dl;
                    }
                    groups[i].1.push(r);
                }
                None => {
                    index.insert(&r.message.id, groups.len());
                    groups.push((dl, vec![r]));
                }
            }
        }
        groups.sort_by_key(|(dl, _)| dl.dead_lettered_at);
        groups
    }
    /// Lists dead letters: see [`QueueProvider::dead_letters`].
    pub(super) async fn list_dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>> {
        let dlq = self.dlq("dead_letters")?;
        if limit == 0 {
            return Ok(Vec::new());
        }
        let scanned = self.scan(dlq, limit.clamp(1000, MAX_SCAN)).await?;
        let receipts: Vec<&str> = scanned.iter().map(|r| r.receipt.as_str()).collect();
        self.release(&dlq.url, &receipts).await;
        Ok(self
            .by_id(dlq, &scanned)
            .into_iter()
            .take(limit)
            .map(|(dl, _)| dl)
            .collect())
    }

    /// Replays dead letters: see [`QueueProvider::replay_dead_letters`].
    pub(super) async fn replay(&self, which: Replay) -> Result<u64> {
        let dlq = self.dlq("replay_dead_letters")?;
        let scanned = self.scan(dlq, MAX_SCAN).await?;
        let groups = self.by_id(dlq, &scanned);
        let chosen: Vec<bool> = match &which {
            Replay::All => vec![true; groups.len()],
            Replay::Oldest(n) => (0..groups.len()).map(|i| i < *n).collect(),
            Replay::Ids(ids) => {
                let ids: HashSet<&MessageId> = ids.iter().collect();
                groups
                    .iter()
                    .map(|(dl, _)| ids.contains(&dl.message.id))
                    .collect()
            }
        };

        // Prepare the chosen ones as fresh messages: attempts start again.
        let mut to_send: Vec<(usize, Outgoing)> = Vec::new();
        let mut release: Vec<&str> = Vec::new();
        for (i, (_, copies)) in groups.iter().enumerate() {
            if !chosen[i] {
                release.extend(copies.iter().map(|r| r.receipt.as_str()));
                continue;
            }
            let first = copies[0];
            let envelope = first
                .envelope
                .clone()
                .map(Envelope::without_dead_letter)
                .unwrap_or_else(|| Envelope {
                    id: first.message.id.as_str().to_owned(),
                    k: first.message.ordering_key.clone(),
                    d: first.message.dedup_id.clone(),
                    ..Envelope::default()
                });
            let (group, dedup) = if self.names.fifo {
                let group = envelope
                    .k
                    .clone()
                    .unwrap_or_else(|| fresh_token(envelope.id.as_str()));
                // Not the original dedup id: SQS would drop a replay within
                // its five-minute window. This copy's id dedups a retried replay.
                (Some(group), Some(fresh_token(&first.sqs_id)))
            } else {
                (None, None)
            };
            let out = Outgoing {
                body: codec::encode_body(&first.message.payload),
                envelope: envelope.encode(),
                delay_seconds: None,
                group,
                dedup,
            };
            to_send.push((i, out));
        }

        let outs: Vec<&Outgoing> = to_send.iter().map(|(_, o)| o).collect();
        let results = self.send_all(&self.url, &outs).await;
        let mut replayed = 0u64;
        let mut to_delete: Vec<&str> = Vec::new();
        let mut first_error: Option<Fault> = None;
        for ((i, _), result) in to_send.iter().zip(results) {
            let copies = groups[*i].1.iter().map(|r| r.receipt.as_str());
            match result {
                None => {
                    replayed += 1;
                    to_delete.extend(copies);
                }
                Some(fault) => {
                    first_error.get_or_insert(fault);
                    release.extend(copies);
                }
            }
        }
        for fault in self
            .delete_receipts(&dlq.url, &to_delete)
            .await
            .into_iter()
            .flatten()
        {
            // The copy stays in the dead letters and is replayed again later:
            // a duplicate, never a loss.
            tracing::warn!(queue = %self.names.stem, error = %self.err(fault, "replay_dead_letters"),
                "a replayed dead letter could not be removed from the dead-letter queue");
        }
        self.release(&dlq.url, &release).await;
        match first_error {
            Some(fault) => Err(self.err(fault, "replay_dead_letters")),
            None => Ok(replayed),
        }
    }

    /// Deletes chosen dead letters: see [`QueueProvider::delete_dead_letters`].
    ///
    /// SQS deletes only by a receipt, so this receives the dead-letter queue
    /// (up to [`MAX_SCAN`] messages, 10 per call, each hidden for the scan),
    /// deletes every copy of the chosen ids and makes the rest visible
    /// again. An id counts once, when all its copies went.
    pub(super) async fn delete_dead(&self, ids: &[MessageId]) -> Result<u64> {
        let dlq = self.dlq("delete_dead_letters")?;
        if ids.is_empty() {
            return Ok(0);
        }
        let wanted: HashSet<&MessageId> = ids.iter().collect();
        let scanned = self.scan(dlq, MAX_SCAN).await?;
        let (chosen, rest): (Vec<&Received>, Vec<&Received>) =
            scanned.iter().partition(|r| wanted.contains(&r.message.id));
        let release: Vec<&str> = rest.iter().map(|r| r.receipt.as_str()).collect();
        let receipts: Vec<&str> = chosen.iter().map(|r| r.receipt.as_str()).collect();
        let results = self.delete_receipts(&dlq.url, &receipts).await;
        let mut failed: HashSet<&MessageId> = HashSet::new();
        let mut first_error = None;
        for (r, result) in chosen.iter().zip(results) {
            if let Some(fault) = result {
                failed.insert(&r.message.id);
                first_error.get_or_insert(fault);
            }
        }
        self.release(&dlq.url, &release).await;
        if let Some(fault) = first_error {
            return Err(self.err(fault, "delete_dead_letters"));
        }
        let gone: HashSet<&MessageId> = chosen.iter().map(|r| &r.message.id).collect();
        Ok(gone.difference(&failed).count() as u64)
    }

    /// Deletes every dead letter: see [`QueueProvider::purge_dead_letters`].
    pub(super) async fn purge_dlq(&self) -> Result<u64> {
        let dlq = self.dlq("purge_dead_letters")?;
        let mut ids = HashSet::new();
        loop {
            let batch = self
                .receive_listed(
                    &dlq.url,
                    codec::MAX_BATCH_ENTRIES,
                    SCAN_WAIT_SECONDS as u64,
                    SCAN_VISIBILITY_SECONDS as u64,
                )
                .await?;
            if batch.is_empty() {
                return Ok(ids.len() as u64);
            }
            let receipts: Vec<&str> = batch.iter().map(|r| r.receipt.as_str()).collect();
            let results = self.delete_receipts(&dlq.url, &receipts).await;
            for (r, result) in batch.iter().zip(results) {
                match result {
                    None => {
                        ids.insert(r.message.id.clone());
                    }
                    Some(fault) => return Err(self.err(fault, "purge_dead_letters")),
                }
            }
        }
    }
}
