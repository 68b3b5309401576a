//! Where a queue lives on the cluster: its topic, its dead-letter topic and
//! its consumer group. Queue names are validated before they get here
//! (letters, digits, `-`, `_`), so every name below is a legal topic name.

/// The queue's topic: `ftq.<name>`.
pub(crate) fn topic(queue: &str) -> String {
    format!("ftq.{queue}")
}

/// The queue's dead-letter topic: `ftq.<name>.dlq`.
pub(crate) fn dlq_topic(queue: &str) -> String {
    format!("ftq.{queue}.dlq")
}

/// The queue's consumer group: `ftq.<name>`.
pub(crate) fn group(queue: &str) -> String {
    format!("ftq.{queue}")
}

/// The queue a topic belongs to, if it is a queue's main topic.
pub(crate) fn queue_of(topic: &str) -> Option<&str> {
    let name = topic.strip_prefix("ftq.")?;
    (!name.contains('.')).then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(topic("jobs"), "ftq.jobs");
        assert_eq!(dlq_topic("jobs"), "ftq.jobs.dlq");
        assert_eq!(queue_of("ftq.jobs"), Some("jobs"));
        assert_eq!(queue_of("ftq.jobs.dlq"), None);
        assert_eq!(queue_of("other"), None);
    }
}
