//! Messages a crash left behind: acknowledged, yet still in the stream.
//!
//! A work-queue stream deletes a message when its consumer acknowledges it.
//! The consumer's state and the stream's store are written separately,
//! though, and a server killed between the two (`cargo xtask chaos` does
//! it) can come back with the consumer's ack floor past messages the stream
//! still holds. The consumer never delivers them again — they were handled
//! and acknowledged — but they stay in the stream for good, and `stats`
//! would count them as delayed. Everything on the queue's subject at or
//! below the ack floor was acknowledged by definition, so it is removed.

use async_nats::jetstream::{consumer::Info, stream::Stream};

use flextide_queue_core::Result;

use super::NatsQueue;
use crate::error;

impl NatsQueue {
    /// Removes acknowledged messages left in the stream by a crash, when the
    /// counts show there are some; returns how many went.
    pub(super) async fn remove_acknowledged_leftovers(
        &self,
        stream: &Stream,
        consumer: &Info,
        stream_first: u64,
        unexplained: u64,
    ) -> Result<u64> {
        let floor = consumer.ack_floor.stream_sequence;
        if unexplained == 0 || floor == 0 || stream_first > floor {
            return Ok(0);
        }
        let purged = stream
            .purge()
            .filter(self.subject.clone())
            .sequence(floor + 1)
            .await
            .map_err(|e| error::map("purge", &self.name, e))?;
        if purged.purged > 0 {
            tracing::warn!(
                queue = %self.name,
                removed = purged.purged,
                ack_floor = floor,
                "removed acknowledged messages a server crash left in the stream"
            );
        }
        Ok(purged.purged)
    }
}
