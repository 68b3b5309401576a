//! `stats`: counts from the consumer's and the streams' info.
//!
//! depth = the consumer's pending (never delivered, or redelivery due);
//! in flight = its ack-pending (leased — and, inexactly, nacked messages
//! still waiting for their redelivery); delayed = messages in the stream
//! the consumer does not read (schedules); dead-lettered = the dead-letter
//! stream's count; oldest age from the first stored message of the queue.

use std::time::SystemTime;

use flextide_queue_core::{QueueStats, Result};

use super::NatsQueue;
use crate::{codec, error};

impl NatsQueue {
    pub(super) async fn counts(&self) -> Result<QueueStats> {
        let read = async {
            let mut consumer = self.consumer.clone();
            let c = consumer
                .info()
                .await
                .map_err(|e| error::map("consumer info", &self.name, e))?
                .clone();
            let mut s = self
                .stream
                .get_info()
                .await
                .map_err(|e| error::map("stream info", &self.name, e))?;
            let live = c.num_pending + c.num_ack_pending as u64;
            // Messages the consumer does not account for: schedules (which
            // the repair's subject filter leaves alone), or acknowledged
            // messages a crash left behind (see repair.rs).
            let unexplained = s.state.messages.saturating_sub(live);
            if self
                .remove_acknowledged_leftovers(&c, s.state.first_sequence, unexplained)
                .await?
                > 0
            {
                s = self
                    .stream
                    .get_info()
                    .await
                    .map_err(|e| error::map("stream info", &self.name, e))?;
            }
            let d = self
                .dlq
                .get_info()
                .await
                .map_err(|e| error::map("stream info", &self.name, e))?;
            let delayed = s.state.messages.saturating_sub(live);
            let oldest_ns = if live == 0 {
                None
            } else if delayed == 0 {
                Some(s.state.first_timestamp.unix_timestamp_nanos())
            } else {
                // The stream's first message may be a schedule: ask for the
                // first message on the queue's own subject.
                match self
                    .stream
                    .get_first_raw_message_by_subject(self.subject.clone(), 1)
                    .await
                {
                    Ok(m) => Some(m.time.unix_timestamp_nanos()),
                    Err(e) if error::class_of(&e) == error::Class::NotFound => None,
                    Err(e) => return Err(error::map("message get", &self.name, e)),
                }
            };
            let oldest_age = oldest_ns.map(|ns| {
                SystemTime::now()
                    .duration_since(codec::system_time_from_nanos(ns))
                    .unwrap_or_default()
            });
            Ok(QueueStats::default()
                .with_depth(c.num_pending)
                .with_in_flight(c.num_ack_pending as u64)
                .with_delayed(delayed)
                .with_dead_lettered(d.state.messages)
                .with_oldest_age(oldest_age))
        };
        error::timed("stats", self.timeout(), read).await
    }
}
