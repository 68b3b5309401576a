//! Messages a crash left where the consumer will not deliver them.
//!
//! A work-queue stream deletes a message when its consumer acknowledges it,
//! so a message on the queue's subject at or below the consumer's ack floor
//! should not exist. After the server was killed (`cargo xtask chaos` does
//! it) some do, for two reasons that look the same from outside: the
//! consumer's state and the stream's store are written separately, so the
//! stream can keep messages that were handled and acknowledged; or the
//! stream comes back with fewer messages than it had acknowledged to
//! publishers (nats-server syncs its files every two minutes by default)
//! and its sequence numbers go back below the consumer's floor, so new
//! messages are published at sequences the consumer has already passed.
//! The consumer delivers neither kind again.
//!
//! Deleting them would lose the second kind: acknowledged pushes (a
//! 100,000-message chaos run lost 15 that way when this purged them). So
//! the consumer is made again, which delivers everything still in the
//! stream: the first kind comes back once more (a duplicate, allowed by at
//! least once), the second is delivered for the first time. Deliveries
//! leased at that moment are delivered again too, with the attempt count
//! starting over. It is checked twice, a second apart, so an ack on its
//! way (the stream removes an acknowledged message just after the consumer
//! counts it) is not taken for a leftover.

use std::time::Duration;

use async_nats::jetstream::stream::Stream;

use flextide_queue_core::Result;

use super::NatsQueue;
use crate::{error, error::Class, layout};

/// What [`NatsQueue::unaccounted`] compares between its two reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Unaccounted {
    first: u64,
    messages: u64,
    delivered: u64,
    ack_floor: u64,
    ack_pending: u64,
}

/// How long a message below the ack floor must stay before it counts as
/// left behind.
const CONFIRM_AFTER: Duration = Duration::from_secs(1);

impl NatsQueue {
    /// When the queue's first message lies at or below the consumer's ack
    /// floor and is still there a second later, makes the consumer again
    /// so it is delivered; returns whether it did.
    pub(super) async fn redeliver_crash_leftovers(&self, stream: &Stream) -> Result<bool> {
        let first = match self.first_below_floor(stream).await? {
            Some(first) => {
                tokio::time::sleep(CONFIRM_AFTER).await;
                if self.first_below_floor(stream).await? != Some(first) {
                    return Ok(false);
                }
                first
            }
            // The same leftovers above an ack floor that a lost ack-pending
            // entry holds back (seen once in a CI chaos run on 2.9: 30
            // messages the consumer neither offered nor waited for, and one
            // ack pending that never came back). Only on streams without
            // schedules, where every stored message is the consumer's.
            None if !self.schedules() => {
                let Some(before) = self.unaccounted(stream).await? else {
                    return Ok(false);
                };
                tokio::time::sleep(CONFIRM_AFTER).await;
                if self.unaccounted(stream).await? != Some(before) {
                    return Ok(false);
                }
                before.first
            }
            None => return Ok(false),
        };
        match stream.delete_consumer(layout::CONSUMER).await {
            Ok(_) => {}
            Err(e) if error::class_of(&e) == Class::NotFound => {}
            Err(e) => return Err(error::map("consumer delete", &self.name, e)),
        }
        {
            let _one = self.creating.lock().await;
            self.forget();
        }
        self.ensure().await?;
        tracing::warn!(
            queue = %self.name,
            first_left = first,
            "messages a server crash left below the consumer's ack floor: made the consumer \
             again, so everything still in the stream is delivered (some possibly a second time)"
        );
        Ok(true)
    }

    /// When the consumer has nothing left to offer and the stream holds more
    /// messages than it waits acks for: the counts and sequences that say
    /// so. Read twice a second apart and found equal, nothing moved in
    /// between (an ack racing the two reads changes the stream's count), so
    /// the difference is left behind, not in passing.
    async fn unaccounted(&self, stream: &Stream) -> Result<Option<Unaccounted>> {
        let info = match stream.get_info().await {
            Ok(i) => i,
            Err(e) if error::class_of(&e) == Class::NotFound => return Ok(None),
            Err(e) => return Err(error::map("stream info", &self.name, e)),
        };
        let c = match stream.consumer_info(layout::CONSUMER).await {
            Ok(c) => c,
            Err(e) if error::class_of(&e) == Class::NotFound => return Ok(None),
            Err(e) => return Err(error::map("consumer info", &self.name, e)),
        };
        let waited = c.num_ack_pending as u64;
        Ok(
            (c.num_pending == 0 && info.state.messages > waited).then_some(Unaccounted {
                first: info.state.first_sequence,
                messages: info.state.messages,
                delivered: c.delivered.stream_sequence,
                ack_floor: c.ack_floor.stream_sequence,
                ack_pending: waited,
            }),
        )
    }

    /// The sequence of the queue's first message, when it lies at or below
    /// the consumer's ack floor.
    async fn first_below_floor(&self, stream: &Stream) -> Result<Option<u64>> {
        let first = match stream
            .get_first_raw_message_by_subject(self.subject.clone(), 1)
            .await
        {
            Ok(m) => m.sequence,
            Err(e) if error::class_of(&e) == Class::NotFound => return Ok(None),
            Err(e) => return Err(error::map("message get", &self.name, e)),
        };
        let floor = match stream.consumer_info(layout::CONSUMER).await {
            Ok(c) => c.ack_floor.stream_sequence,
            Err(e) if error::class_of(&e) == Class::NotFound => return Ok(None),
            Err(e) => return Err(error::map("consumer info", &self.name, e)),
        };
        Ok((floor > 0 && first <= floor).then_some(first))
    }
}
