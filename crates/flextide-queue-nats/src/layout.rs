//! Names of a queue's streams, consumer and subjects.
//!
//! One stream per queue (not one shared stream with a subject per queue):
//! a queue's counts, purge, first timestamp and deletion are then the
//! stream's own, each exact and one call; a work-queue stream allows one
//! consumer per subject anyway; and a queue can be dropped, re-created or
//! given its own storage and replicas without touching the others.
//!
//! Queue names are ASCII letters, digits, `-` and `_` (checked at open), so
//! every name below is a valid stream name and a single subject token. The
//! prefixes differ before the queue name, so no queue's names can collide
//! with another's.

/// The work-queue stream holding the queue's messages (and, on servers with
/// message schedules, its delayed messages).
pub(crate) fn stream(queue: &str) -> String {
    format!("FTQ_{queue}")
}

/// The queue whose work-queue stream is `stream`, if it is one of ours.
pub(crate) fn queue_of_stream(stream: &str) -> Option<&str> {
    stream.strip_prefix("FTQ_").filter(|q| !q.is_empty())
}

/// The limits stream holding the queue's dead letters.
pub(crate) fn dlq_stream(queue: &str) -> String {
    format!("FTDLQ_{queue}")
}

/// The subject messages are published on and the consumer reads.
pub(crate) fn subject(queue: &str) -> String {
    format!("ftq.{queue}")
}

/// The subjects of delayed messages (one per message: a schedule is the
/// last message on its subject).
pub(crate) fn schedule_subjects(queue: &str) -> String {
    format!("ftsched.{queue}.*")
}

/// The subject of one delayed message.
pub(crate) fn schedule_subject(queue: &str, token: &str) -> String {
    format!("ftsched.{queue}.{token}")
}

/// The subject of the dead-letter stream.
pub(crate) fn dlq_subject(queue: &str) -> String {
    format!("ftdlq.{queue}")
}

/// The limits stream remembering, for a queue's dedup ids, the first
/// message's id (one record per subject, kept for the dedup window): a
/// duplicate's PubAck names only the first message's stream sequence, and
/// that message is gone once it was handled.
pub(crate) fn dedup_stream(queue: &str) -> String {
    format!("FTDD_{queue}")
}

/// The subjects of the dedup stream.
pub(crate) fn dedup_subjects(queue: &str) -> String {
    format!("ftdd.{queue}.*")
}

/// The subject of one dedup id's record: the id in hex, so any id is one
/// valid subject token.
pub(crate) fn dedup_subject(queue: &str, dedup_id: &str) -> String {
    use std::fmt::Write;
    let mut s = format!("ftdd.{queue}.");
    for b in dedup_id.bytes() {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// The durable pull consumer every handle of the queue pulls from.
pub(crate) const CONSUMER: &str = "flextide";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_names_map_back_to_queues() {
        assert_eq!(queue_of_stream(&stream("jobs-1")), Some("jobs-1"));
        assert_eq!(queue_of_stream(&dlq_stream("jobs-1")), None);
        assert_eq!(queue_of_stream(&dedup_stream("jobs-1")), None);
        assert_eq!(queue_of_stream("FTQ_"), None);
        assert_eq!(queue_of_stream("ORDERS"), None);
    }

    #[test]
    fn dedup_subjects_are_one_token() {
        assert_eq!(dedup_subject("q", "a.b *>"), "ftdd.q.612e62202a3e");
        assert_eq!(dedup_subjects("q"), "ftdd.q.*");
    }
}
