//! Looking at queues without creating any: listing the queues under a key
//! prefix (every queue has a message stream `PREFIX:{NAME}:s` or, once
//! emptied of messages, a dead-letter stream `PREFIX:{NAME}:x`, found with
//! `SCAN`, which never blocks the server), and opening one for stats, peek
//! and dead letters without creating its stream and consumer group.

use std::collections::BTreeSet;

use flextide_queue_core::{QueueError, QueueOptions, Result, validate_queue_name};

use crate::{BACKEND, RedisBackend, RedisQueue, keys::Keys};

impl RedisBackend {
    /// Opens the queue `name` to look at it: unlike [`RedisBackend::open`],
    /// it creates neither the stream nor the consumer group (a queue that
    /// does not exist shows as empty).
    pub fn open_existing(&self, name: &str, options: QueueOptions) -> Result<RedisQueue> {
        validate_queue_name(name)?;
        if options.lease.is_zero() {
            return Err(QueueError::configuration(
                BACKEND,
                "the lease must be longer than zero",
            ));
        }
        Ok(RedisQueue::new(
            self.clone(),
            name,
            Keys::new(self.prefix(), name),
            options,
        ))
    }

    /// The names of the queues under this backend's key prefix, sorted.
    pub async fn queue_names(&self) -> Result<Vec<String>> {
        let head = format!("{}:{{", self.prefix());
        let pattern = format!("{}*}}:[sx]", glob_escape(&head));
        let mut names = BTreeSet::new();
        // A cluster spreads the keys over its masters: each is scanned.
        for mut conn in self.scan_conns().await? {
            let mut cursor: u64 = 0;
            loop {
                let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                    .arg(cursor)
                    .arg("MATCH")
                    .arg(&pattern)
                    .arg("COUNT")
                    .arg(1000)
                    .query_async(&mut conn)
                    .await
                    .map_err(|e| self.err("list_queues", e))?;
                names.extend(keys.iter().filter_map(|k| queue_of(&head, k)));
                if next == 0 {
                    break;
                }
                cursor = next;
            }
        }
        Ok(names.into_iter().collect())
    }
}

/// The queue name of a stream key, if it is one of ours.
fn queue_of(head: &str, key: &str) -> Option<String> {
    let inner = key
        .strip_prefix(head)?
        .strip_suffix(":s")
        .or_else(|| key.strip_prefix(head)?.strip_suffix(":x"))?;
    let name = inner.strip_suffix('}')?;
    flextide_queue_core::validate_queue_name(name)
        .is_ok()
        .then(|| name.to_owned())
}

/// `s` with the characters Redis glob patterns treat specially escaped.
fn glob_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_come_from_stream_keys() {
        let head = "flextide:{";
        assert_eq!(queue_of(head, "flextide:{jobs}:s").as_deref(), Some("jobs"));
        assert_eq!(queue_of(head, "flextide:{jobs}:x").as_deref(), Some("jobs"));
        assert_eq!(queue_of(head, "flextide:{jobs}:d"), None);
        assert_eq!(queue_of(head, "other:{jobs}:s"), None);
        assert_eq!(glob_escape("a*b?[c]"), "a\\*b\\?\\[c\\]");
    }
}
