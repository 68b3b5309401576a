//! Settling deliveries: `delete` (acknowledge), `nack` (modify the ack
//! deadline to the delay), `extend` (modify it to `by`).

use std::time::Duration;

use flextide_queue_core::{
    BatchFailure, QueueError, Receipt, Result,
    backend::{batch_result, max_attempts_reason},
};

use super::{MAX_ACK_SECONDS, PubSubQueue, held::Known};
use crate::{BACKEND, error, receipt};

/// Whole seconds, rounded up.
fn seconds(d: Duration) -> i32 {
    (d.as_secs() + u64::from(d.subsec_nanos() > 0)).min(i32::MAX as u64) as i32
}

impl PubSubQueue {
    pub(super) async fn ack_one(&self, r: &Receipt) -> Result<()> {
        let r = receipt::decode(r)?;
        self.conn
            .ack(&self.names.subscription, std::slice::from_ref(&r.ack_id))
            .await
            .map_err(|s| error::map("acknowledge", s))?;
        self.held.settled(&r.ack_id);
        Ok(())
    }

    pub(super) async fn ack_many(&self, receipts: &[Receipt]) -> Result<()> {
        let mut failures = Vec::new();
        let mut ids = Vec::with_capacity(receipts.len());
        for (index, r) in receipts.iter().enumerate() {
            match receipt::decode(r) {
                Ok(p) => ids.push((index, p.ack_id)),
                Err(error) => failures.push(BatchFailure { index, error }),
            }
        }
        for chunk in ids.chunks(self.config.max_batch) {
            let ack_ids: Vec<String> = chunk.iter().map(|(_, a)| a.clone()).collect();
            match self.conn.ack(&self.names.subscription, &ack_ids).await {
                Ok(()) => ack_ids.iter().for_each(|a| self.held.settled(a)),
                Err(s) => {
                    let stale = error::stale_ids(&s, &ack_ids);
                    if error::is_stale(&s) && !stale.is_empty() {
                        // Exactly-once delivery named the stale ids; the
                        // others were acknowledged.
                        for (index, a) in chunk {
                            if stale.contains(&a.as_str()) {
                                failures.push(BatchFailure {
                                    index: *index,
                                    error: QueueError::StaleReceipt { backend: BACKEND },
                                });
                            } else {
                                self.held.settled(a);
                            }
                        }
                    } else if error::is_stale(&s) {
                        // Which ones is not said: one by one.
                        for (index, a) in chunk {
                            match self
                                .conn
                                .ack(&self.names.subscription, std::slice::from_ref(a))
                                .await
                            {
                                Ok(()) => self.held.settled(a),
                                Err(s) => failures.push(BatchFailure {
                                    index: *index,
                                    error: error::map("acknowledge", s),
                                }),
                            }
                        }
                    } else {
                        let shown = error::map("acknowledge", s);
                        let retryable = shown.is_retryable();
                        let text = shown.to_string();
                        for (index, _) in chunk {
                            failures.push(BatchFailure {
                                index: *index,
                                error: QueueError::backend_error(BACKEND, retryable, text.clone()),
                            });
                        }
                    }
                }
            }
        }
        failures.sort_by_key(|f| f.index);
        batch_result(BACKEND, (), failures)
    }

    /// `nack`: the ack deadline becomes the delay (0: at once). A nack of
    /// the last allowed attempt moves the message to the dead letters at
    /// once where this handle delivered it (it holds the body); otherwise
    /// the message is given back and moved when it is next pulled (by this
    /// library, or by Pub/Sub's dead-letter policy).
    pub(super) async fn give_back(&self, r: &Receipt, delay: Duration) -> Result<()> {
        if delay > Duration::from_secs(MAX_ACK_SECONDS as u64) {
            return Err(QueueError::invalid_message(
                BACKEND,
                format!("Pub/Sub can hold a nacked message back for at most {MAX_ACK_SECONDS} s"),
            ));
        }
        let r = receipt::decode(r)?;
        if let Some(n) = self.options.max_attempts.filter(|&n| r.attempt >= n)
            && let Some(Known::Live { original, id }) = self.held.get(&r.ack_id)
        {
            self.check_live(&r.ack_id).await?;
            self.bury(&r.ack_id, &original, &id, &max_attempts_reason(n), n)
                .await?;
            self.held.settled(&r.ack_id);
            return Ok(());
        }
        self.conn
            .modack(
                &self.names.subscription,
                std::slice::from_ref(&r.ack_id),
                seconds(delay),
            )
            .await
            .map_err(|s| error::map("modify ack deadline", s))?;
        self.held.forget(&r.ack_id);
        Ok(())
    }

    /// `extend`: the ack deadline becomes `by` from now (at least 1 s, at
    /// most Pub/Sub's 600 s).
    pub(super) async fn extend_lease(&self, r: &Receipt, by: Duration) -> Result<()> {
        if by > Duration::from_secs(MAX_ACK_SECONDS as u64) {
            return Err(QueueError::invalid_message(
                BACKEND,
                format!("Pub/Sub extends a lease by at most {MAX_ACK_SECONDS} s at a time"),
            ));
        }
        let r = receipt::decode(r)?;
        if matches!(self.held.get(&r.ack_id), Some(Known::Settled)) && self.exactly_once() {
            return Err(QueueError::StaleReceipt { backend: BACKEND });
        }
        self.conn
            .modack(
                &self.names.subscription,
                std::slice::from_ref(&r.ack_id),
                seconds(by).max(1),
            )
            .await
            .map_err(|s| error::map("modify ack deadline", s))?;
        self.held.extend(&r.ack_id, by, self.lease());
        Ok(())
    }

    /// On an exactly-once subscription, whether the ack id still holds the
    /// message (a modack to the lease, refused for a stale id): checked
    /// before a move to the dead letters, so a stale receipt moves nothing.
    pub(super) async fn check_live(&self, ack_id: &str) -> Result<()> {
        if !self.exactly_once() {
            return Ok(());
        }
        self.conn
            .modack(
                &self.names.subscription,
                &[ack_id.to_owned()],
                self.lease().as_secs() as i32,
            )
            .await
            .map_err(|s| error::map("modify ack deadline", s))
    }
}
