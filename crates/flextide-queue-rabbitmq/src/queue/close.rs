//! Ending a handle the way a process that exits cleanly should
//! (`QueueProvider::close`, and on a best-effort basis when the last clone
//! of a handle is dropped).
//!
//! A subscription's prefetch makes the broker push messages to this
//! process that no caller has seen yet: after a `nack`, the republished
//! copy usually comes straight back into the buffer. Were the connection
//! simply closed, the broker would put those back counting a delivery
//! (`x-delivery-count` on quorum queues, `redelivered` on classic ones),
//! and the next process would see an attempt that never happened:
//! `flextide pop --keep` run four times showed attempts 1, 2, 4, 5. So
//! `close` settles before closing: the subscription is cancelled, whatever
//! the broker sent before its cancel-ok is buffered, and every buffered
//! delivery is given back as the background pass gives back unclaimed
//! ones (a confirmed copy with the attempts made so far, then an ack).
//! Deliveries handed to callers and not settled are left alone: the broker
//! puts them back when the connection closes and counts them, rightly,
//! since they were delivered.

use std::sync::{Arc, atomic::Ordering};

use flextide_queue_core::Result;
use futures::future::join_all;

use super::{Inner, lock};
use crate::link::CloseWithin;

impl Inner {
    pub(super) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Gives back what was received and never handed out, then closes the
    /// connection. Calls after it fail; a second `close` does nothing.
    /// Every broker round trip is bounded by the operation timeout, and a
    /// delivery that cannot be given back is left to the broker (it comes
    /// back with a delivery counted: nothing is lost).
    pub(super) async fn close(self: &Arc<Self>) -> Result<()> {
        if self.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        // A background pass in progress finishes first; none starts after.
        let pass = self.housekeeping.lock().await;
        // No subscription is being made meanwhile, and none after.
        let ctl = self.consumer_ctl.lock().await;
        let link = lock(&self.link).clone();
        let current = link
            .as_ref()
            .is_some_and(|l| l.healthy() && lock(&self.state).generation == l.generation);
        if let (Some(link), true) = (&link, current) {
            self.stop_consumer(link).await;
            let unclaimed = lock(&self.state).unclaimed();
            let n = unclaimed.len();
            let given = join_all(unclaimed.iter().map(|b| self.give_back(link, b))).await;
            let failed = given.iter().filter(|r| r.is_err()).count();
            if failed > 0 {
                tracing::warn!(queue = %self.name, failed, of = n, "rabbitmq: close could not give back every prefetched delivery; the broker redelivers them with an attempt counted");
            } else if n > 0 {
                tracing::debug!(queue = %self.name, n, "rabbitmq: close gave back prefetched deliveries");
            }
        }
        drop(ctl);
        drop(pass);
        // Ends the subscription tasks and the background task.
        self.shutdown.send_replace(());
        let link = lock(&self.link).take();
        if let Some(link) = link {
            link.connection.close_within(self.t()).await;
        }
        self.settings.handles.remove(self.uid);
        // Pops waiting on this handle look again and find it closed.
        self.notify.notify_waiters();
        Ok(())
    }
}

/// Held by every clone of a [`RabbitMqQueue`](super::RabbitMqQueue) and
/// by nothing else: when the last clone goes without `close`, the handle is
/// closed in a task of its own, when there is a runtime to run it. (The
/// handle's internals live on in its tasks, so this cannot be `Inner`'s
/// own `Drop`.) Without a runtime the connection just goes, as in a crash.
pub(super) struct CloseOnDrop(pub(super) Arc<Inner>);

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        if self.0.is_closed() {
            return;
        }
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let inner = self.0.clone();
            rt.spawn(async move { inner.close().await });
        }
    }
}
