//! The background pass of a handle, every few milliseconds: ended leases
//! (kept for a grace, then republished or dead-lettered), the idle
//! subscription, and prefetched deliveries no caller claimed.

use std::{sync::Arc, time::Duration};

use flextide_queue_core::{
    QueueError, Result,
    backend::{max_attempts_reason, undecodable_reason},
};
use futures::future::join_all;
use lapin::{options::BasicCancelOptions, types::ShortString};
use tokio::time::Instant;

use super::{
    Inner, lock,
    state::{Buffered, Lease},
};
use crate::{codec, error::timed, link::Link};

/// How often the handle's background task looks at deadlines.
const TICK: Duration = Duration::from_millis(25);

/// Work the background pass does after releasing the state lock.
enum Job {
    GiveBack(Buffered),
    Ack(Lease),
    Dlq(Lease),
    Requeue(Lease),
}

/// Starts the handle's background task; it ends with the handle.
pub(super) fn spawn(inner: &Arc<Inner>) {
    let weak = Arc::downgrade(inner);
    let mut shutdown = inner.shutdown.subscribe();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.changed() => return,
            }
            let Some(inner) = weak.upgrade() else { return };
            inner.housekeep().await;
        }
    });
}

impl Inner {
    async fn housekeep(&self) {
        // `close` waits for a pass in progress, and none starts after it.
        let _pass = self.housekeeping.lock().await;
        if self.is_closed() {
            return;
        }
        let Some(link) = self.current_link() else {
            return;
        };
        let now = Instant::now();
        let config = &self.settings.config;
        let (due, cancel, give_back) = {
            let mut st = lock(&self.state);
            let due = st.due(now);
            let (cancel, give_back) = st.idle(now, config.linger, config.hold);
            (due, cancel, give_back)
        };
        if due.woke {
            self.notify.notify_waiters();
        }
        if let Some(tag) = cancel {
            let _ = timed(
                "basic.cancel",
                self.t(),
                link.consume
                    .basic_cancel(ShortString::from(tag), BasicCancelOptions::default()),
            )
            .await;
        }
        let reason = max_attempts_reason(self.options.max_attempts.unwrap_or(0));
        let jobs = give_back
            .into_iter()
            .map(Job::GiveBack)
            .chain(due.ack.into_iter().map(Job::Ack))
            .chain(due.dead.into_iter().map(Job::Dlq))
            .chain(due.requeue.into_iter().map(Job::Requeue));
        let failed: Vec<QueueError> = join_all(jobs.map(|job| self.run_job(&link, job, &reason)))
            .await
            .into_iter()
            .flatten()
            .collect();
        // A broker restart fails every job of the pass at once: one line.
        if let Some(first) = failed.first() {
            tracing::warn!(queue = %self.name, deliveries = failed.len(), error = %first, "rabbitmq: could not move deliveries; handing them back to the broker");
        }
    }

    /// One job; its error (after the delivery was handed back), if any.
    async fn run_job(&self, link: &Link, job: Job, reason: &str) -> Option<QueueError> {
        let (tag, result) = match job {
            Job::GiveBack(b) => (b.tag, self.give_back(link, &b).await),
            Job::Ack(l) => (l.tag, self.ack(link, l.tag).await),
            Job::Dlq(l) => (
                l.tag,
                self.move_to_dlq(link, &l.decoded, l.tag, reason, l.attempt)
                    .await,
            ),
            Job::Requeue(l) => (l.tag, self.requeue(link, &l, Duration::ZERO).await),
        };
        match result {
            Ok(()) => None,
            Err(e) => {
                self.nack_back(link, tag).await;
                Some(e)
            }
        }
    }

    /// Gives back a delivery received and never handed to a caller, without
    /// counting an attempt: a copy carrying the attempts made so far (and
    /// the same message id) is published, confirmed, and only then is the
    /// delivery acknowledged. Not nacked: the broker would count the return
    /// as a delivery (`x-delivery-count`, `redelivered`) that no caller saw.
    /// An undecodable one is dead-lettered by itself, not made decodable by
    /// republishing it.
    pub(super) async fn give_back(&self, link: &Link, b: &Buffered) -> Result<()> {
        if let Some(what) = b.decoded.undecodable.as_deref() {
            let why = undecodable_reason(what);
            return self
                .move_to_dlq(link, &b.decoded, b.tag, &why, b.decoded.attempts_done)
                .await;
        }
        let props = codec::properties(
            &b.decoded.message,
            b.decoded.attempts_done,
            b.decoded.enqueued_ms,
            Vec::new(),
        );
        link.publish_confirmed(&self.name, &b.decoded.message.payload, props)
            .await?;
        self.ack(link, b.tag).await
    }
}
