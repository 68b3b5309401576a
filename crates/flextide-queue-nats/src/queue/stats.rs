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
use crate::{codec, error, layout};

impl NatsQueue {
    pub(super) async fn counts(&self) -> Result<QueueStats> {
        let read = async {
            // Looked up each time, creating nothing: a queue never written
            // to (or dropped) has no stream and counts as empty.
            let stream = match self.js.get_stream(&self.stream_name).await {
                Ok(s) => s,
                Err(e) if error::class_of(&e) == error::Class::NotFound => {
                    return Ok(QueueStats::default());
                }
                Err(e) => return Err(error::map("stream info", &self.name, e)),
            };
            let mut s = stream.cached_info().clone();
            let (num_pending, num_ack_pending) = match stream.consumer_info(layout::CONSUMER).await
            {
                Ok(c) => {
                    // Messages the consumer does not account for: schedules
                    // (which the repair's subject filter leaves alone), or
                    // acknowledged messages a crash left behind (repair.rs).
                    let live = c.num_pending + c.num_ack_pending as u64;
                    let unexplained = s.state.messages.saturating_sub(live);
                    if unexplained > 0 && self.redeliver_crash_leftovers(&stream).await? {
                        s = stream
                            .get_info()
                            .await
                            .map_err(|e| error::map("stream info", &self.name, e))?;
                        let c = stream
                            .consumer_info(layout::CONSUMER)
                            .await
                            .map_err(|e| error::map("consumer info", &self.name, e))?;
                        (c.num_pending, c.num_ack_pending as u64)
                    } else {
                        (c.num_pending, c.num_ack_pending as u64)
                    }
                }
                // Only the stream exists (its creation was cut short):
                // everything in it waits.
                Err(e) if error::class_of(&e) == error::Class::NotFound => (s.state.messages, 0),
                Err(e) => return Err(error::map("consumer info", &self.name, e)),
            };
            let dead = match self.js.get_stream(layout::dlq_stream(&self.name)).await {
                Ok(d) => d.cached_info().state.messages,
                Err(e) if error::class_of(&e) == error::Class::NotFound => 0,
                Err(e) => return Err(error::map("stream info", &self.name, e)),
            };
            let live = num_pending + num_ack_pending;
            let delayed = s.state.messages.saturating_sub(live);
            let oldest_ns = if live == 0 {
                None
            } else if delayed == 0 {
                Some(s.state.first_timestamp.unix_timestamp_nanos())
            } else {
                // The stream's first message may be a schedule: ask for the
                // first message on the queue's own subject.
                match stream
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
                .with_depth(num_pending)
                .with_in_flight(num_ack_pending)
                .with_delayed(delayed)
                .with_dead_lettered(dead)
                .with_oldest_age(oldest_age))
        };
        error::timed("stats", self.timeout(), read).await
    }
}
