//! Queue name rules, the same on every backend.

use crate::{QueueError, Result};

/// Longest queue name accepted (SQS's limit, the tightest of our brokers).
pub const MAX_QUEUE_NAME_LEN: usize = 80;

/// Checks a queue name against the rules every backend shares: 1 to
/// [`MAX_QUEUE_NAME_LEN`] characters, each an ASCII letter, digit, `-` or
/// `_`. Such a name is safe as a table key, a Redis key part, an AMQP queue
/// name and an SQS name, so no name can reach another queue or inject
/// anything. Backends may add a suffix of their own (SQS FIFO's `.fifo`).
pub fn validate_queue_name(name: &str) -> Result<()> {
    let fail = |reason| {
        Err(QueueError::InvalidQueueName {
            name: name.escape_debug().to_string(),
            reason,
        })
    };
    if name.is_empty() {
        return fail("it is empty");
    }
    if name.len() > MAX_QUEUE_NAME_LEN {
        return fail("it is longer than 80 characters");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return fail("only ASCII letters, digits, '-' and '_' are allowed");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_plain_names() {
        for ok in ["a", "orders", "workflow-tasks_v2", &"x".repeat(80)] {
            validate_queue_name(ok).unwrap();
        }
    }

    #[test]
    fn refuses_everything_else() {
        for bad in [
            "",
            &"x".repeat(81),
            "a b",
            "a'b",
            "a\"b",
            "a;drop table x",
            "q{1}",
            "q*",
            "a.b",
            "é",
            "a\0b",
            "a/b",
            "a:b",
        ] {
            assert!(
                matches!(
                    validate_queue_name(bad),
                    Err(QueueError::InvalidQueueName { .. })
                ),
                "{bad:?}"
            );
        }
    }
}
