//! Settling deliveries: acknowledgements (one by one, or one `multiple`
//! ack for a run of tags), and the receipt-taking calls `delete`, `nack`,
//! `extend` and `dead_letter`. A receipt is settled on the channel of the
//! handle that holds its delivery: this one, or another handle of the same
//! queue opened by the same client.

use std::{collections::HashMap, sync::Arc, time::Duration};

use flextide_queue_core::{
    BatchFailure, QueueError, Receipt, Result,
    backend::{batch_result, max_attempts_reason},
};
use futures::future::join_all;
use lapin::options::{BasicAckOptions, BasicNackOptions};
use tokio::time::Instant;

use super::{
    Inner, lock,
    receipt::{ParsedReceipt, parse_receipt},
    state::{Lease, stale},
};
use crate::{BACKEND, delay, error::timed, link::Link};

/// Claimed deliveries of one handle and link: (batch index, delivery tag).
type AckGroup = (Arc<Inner>, Arc<Link>, Vec<(usize, u64)>);

impl Inner {
    pub(super) async fn ack(&self, link: &Link, tag: u64) -> Result<()> {
        let acked = timed(
            "basic.ack",
            self.t(),
            link.consume
                .basic_ack(tag, BasicAckOptions { multiple: false }),
        )
        .await;
        if acked.is_ok() {
            lock(&self.state).sent_settle(link.generation, &[tag]);
        }
        acked
    }

    /// Hands a delivery back to the broker (`basic.nack`, requeue), for when
    /// moving it failed; best effort: if the channel is gone, so is the delivery.
    pub(super) async fn nack_back(&self, link: &Link, tag: u64) {
        let options = BasicNackOptions {
            multiple: false,
            requeue: true,
        };
        let nacked = timed(
            "basic.nack",
            self.t(),
            link.consume.basic_nack(tag, options),
        )
        .await;
        if nacked.is_ok() {
            lock(&self.state).sent_settle(link.generation, &[tag]);
        }
    }

    /// Acknowledges deliveries of one link, returning each tag's result.
    ///
    /// When the smallest tags still unsettled on the channel are all in
    /// `tags`, one `basic.ack` with `multiple` covers them (acks the broker
    /// need not process one by one); the rest are acknowledged one by one.
    /// A multiple ack never covers a delivery someone else holds: every tag
    /// below the highest covered one was either received and is in `tags`,
    /// or its settle was already sent.
    async fn ack_all(&self, link: &Link, mut tags: Vec<u64>) -> Vec<(u64, Result<()>)> {
        tags.sort_unstable();
        let covered = lock(&self.state).multiple_ack_covers(link.generation, &tags);
        let (run, rest) = if covered >= 2 {
            tags.split_at(covered)
        } else {
            tags.split_at(0)
        };
        let multiple = async {
            let &hi = run.last()?;
            let acked = timed(
                "basic.ack",
                self.t(),
                link.consume
                    .basic_ack(hi, BasicAckOptions { multiple: true }),
            )
            .await;
            if acked.is_ok() {
                lock(&self.state).sent_settle(link.generation, run);
            }
            Some(acked)
        };
        let singles = join_all(
            rest.iter()
                .map(|&tag| async move { (tag, self.ack(link, tag).await) }),
        );
        let (multiple, mut results) = futures::join!(multiple, singles);
        if let Some(acked) = multiple {
            let failed = acked.err().map(|e| e.to_string());
            results.extend(run.iter().map(|&tag| {
                let r = match &failed {
                    None => Ok(()),
                    Some(why) => Err(QueueError::connection(
                        BACKEND,
                        format!("basic.ack (multiple) failed: {why}"),
                    )),
                };
                (tag, r)
            }));
        }
        results
    }

    /// Puts the message back on the queue (or into a holding queue) as its
    /// next attempt, then acknowledges the delivery.
    pub(super) async fn requeue(&self, link: &Link, lease: &Lease, delay: Duration) -> Result<()> {
        self.republish(link, lease, delay, lease.attempt).await
    }

    /// Puts the message back with `attempts_done` as the attempts made so
    /// far, then acknowledges the delivery.
    pub(super) async fn republish(
        &self,
        link: &Link,
        lease: &Lease,
        delay: Duration,
        attempts_done: u32,
    ) -> Result<()> {
        let (queue, props) = self
            .route(
                link,
                &lease.decoded.message,
                Some(delay),
                attempts_done,
                lease.decoded.enqueued_ms,
            )
            .await?;
        let published = link
            .publish_confirmed(&queue, &lease.decoded.message.payload, props)
            .await;
        self.forget_missing(published)?;
        self.ack(link, lease.tag).await
    }

    /// Takes a receipt's lease so that exactly one caller settles it.
    pub(super) fn claim(&self, r: &ParsedReceipt) -> Result<(Lease, Arc<Link>)> {
        let link = lock(&self.link).clone().filter(|l| l.healthy());
        let lease = lock(&self.state).claim(
            r.token,
            r.generation,
            r.tag,
            link.as_ref().map(|l| l.generation),
        )?;
        let link = link.ok_or_else(stale)?;
        Ok((lease, link))
    }

    /// Gives a claimed lease back after a failed settle, so the same receipt
    /// can retry (only while its connection lives).
    pub(super) fn restore(&self, token: u64, lease: Lease) {
        lock(&self.state).restore(token, lease);
    }

    /// The handle that holds a receipt's delivery: this one, or another
    /// handle of the same queue opened by the same client.
    pub(super) fn owner(self: &Arc<Self>, r: &ParsedReceipt) -> Result<Arc<Inner>> {
        if r.uid == self.uid {
            return Ok(self.clone());
        }
        match self.settings.handles.get(r.uid) {
            Some(o) if o.name == self.name => Ok(o),
            Some(_) => Err(QueueError::invalid_receipt(
                BACKEND,
                "receipt of another queue",
            )),
            // Its handle is gone, and with it the channel holding the delivery.
            None => Err(stale()),
        }
    }

    pub(super) async fn delete(self: &Arc<Self>, receipt: &Receipt) -> Result<()> {
        let r = parse_receipt(receipt)?;
        let owner = self.owner(&r)?;
        let (lease, link) = owner.claim(&r)?;
        let acked = match owner.ack(&link, lease.tag).await {
            Ok(()) => link.settle_barrier().await,
            Err(e) => Err(e),
        };
        owner.check_link(&link, acked)
    }

    pub(super) async fn delete_batch(self: &Arc<Self>, receipts: &[Receipt]) -> Result<()> {
        let mut failures = Vec::new();
        let mut claimed = Vec::new();
        for (index, receipt) in receipts.iter().enumerate() {
            let c = parse_receipt(receipt).and_then(|r| {
                let owner = self.owner(&r)?;
                let (lease, link) = owner.claim(&r)?;
                Ok((owner, lease.tag, link))
            });
            match c {
                Ok(c) => claimed.push((index, c)),
                Err(error) => failures.push(BatchFailure { index, error }),
            }
        }
        // One group per handle and link: each is acknowledged together, with
        // a multiple ack where the tags allow it.
        let mut groups: Vec<AckGroup> = Vec::new();
        for (index, (owner, tag, link)) in claimed {
            match groups
                .iter_mut()
                .find(|(o, l, _)| Arc::ptr_eq(o, &owner) && Arc::ptr_eq(l, &link))
            {
                Some((_, _, tags)) => tags.push((index, tag)),
                None => groups.push((owner, link, vec![(index, tag)])),
            }
        }
        let acked = join_all(groups.into_iter().map(|(owner, link, tags)| async move {
            let index_of: HashMap<u64, usize> = tags.iter().map(|&(i, t)| (t, i)).collect();
            let mut results = owner
                .ack_all(&link, tags.into_iter().map(|(_, t)| t).collect())
                .await;
            // One round trip for the whole group: its acks were processed.
            if results.iter().any(|(_, r)| r.is_ok()) {
                let barrier = link.settle_barrier().await;
                if let Err(e) = owner.check_link(&link, barrier) {
                    let why = e.to_string();
                    for (_, r) in results.iter_mut().filter(|(_, r)| r.is_ok()) {
                        *r = Err(QueueError::connection(
                            BACKEND,
                            format!("the acknowledgement was sent but not confirmed: {why}"),
                        ));
                    }
                }
            }
            results
                .into_iter()
                .map(|(tag, r)| (index_of[&tag], r))
                .collect::<Vec<_>>()
        }))
        .await;
        for (index, result) in acked.into_iter().flatten() {
            if let Err(error) = result {
                failures.push(BatchFailure { index, error });
            }
        }
        batch_result(BACKEND, (), failures)
    }

    pub(super) async fn nack(self: &Arc<Self>, receipt: &Receipt, delay: Duration) -> Result<()> {
        if delay > delay::MAX_DELAY {
            return Err(QueueError::invalid_message(
                BACKEND,
                format!("delay {delay:?} exceeds the maximum of 7 days"),
            ));
        }
        let r = parse_receipt(receipt)?;
        let owner = self.owner(&r)?;
        let (lease, link) = owner.claim(&r)?;
        let result = if lease.purged {
            owner.ack(&link, lease.tag).await
        } else if let Some(max) = owner.options.max_attempts.filter(|&m| lease.attempt >= m) {
            owner
                .move_to_dlq(
                    &link,
                    &lease.decoded,
                    lease.tag,
                    &max_attempts_reason(max),
                    lease.attempt,
                )
                .await
        } else {
            owner.requeue(&link, &lease, delay).await
        };
        if let Err(e) = result {
            owner.restore(r.token, lease);
            return Err(e);
        }
        Ok(())
    }

    pub(super) fn extend(self: &Arc<Self>, receipt: &Receipt, by: Duration) -> Result<()> {
        let r = parse_receipt(receipt)?;
        let owner = self.owner(&r)?;
        let now = Instant::now();
        // A far-away deadline is capped rather than overflowing the clock.
        let deadline = now
            .checked_add(by)
            .unwrap_or(now + Duration::from_secs(365 * 24 * 3600));
        lock(&owner.state).extend(r.token, r.generation, r.tag, deadline)
    }

    pub(super) async fn dead_letter(
        self: &Arc<Self>,
        receipt: &Receipt,
        reason: &str,
    ) -> Result<()> {
        let r = parse_receipt(receipt)?;
        let owner = self.owner(&r)?;
        let (lease, link) = owner.claim(&r)?;
        if let Err(e) = owner
            .move_to_dlq(&link, &lease.decoded, lease.tag, reason, lease.attempt)
            .await
        {
            owner.restore(r.token, lease);
            return Err(e);
        }
        Ok(())
    }
}
