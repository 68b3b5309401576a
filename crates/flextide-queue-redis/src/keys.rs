//! The key layout of one queue.

/// The keys of one queue. The `{queue}` hash tag puts them all on one Redis
/// Cluster slot, so every script may touch all of them. `lua/common.lua`
/// names the first nine (S, D, M, L, X, P, W, R, V) and describes each.
#[derive(Debug, Clone)]
pub(crate) struct Keys {
    /// S: the stream of messages, with the consumer group.
    pub(crate) stream: String,
    /// D: delayed messages (sorted set of uid -> due ms).
    delayed: String,
    /// M: the bodies of delayed messages (hash of uid -> msgpack).
    delayed_bodies: String,
    /// L: deliveries with a lease deadline of their own.
    leases: String,
    /// X: the dead-letter stream.
    pub(crate) dead_letters: String,
    /// P: leased entries whose redeliveries were purged.
    purged: String,
    /// W: the one-entry wake-up stream blocked pops also watch.
    pub(crate) wake: String,
    /// R: batch lease records, one per fresh read.
    batch_leases: String,
    /// V: the consumer group's epoch.
    epoch: String,
    /// T: the fast pop's scratch key; it exists only inside its MULTI/EXEC.
    scratch: String,
    /// K: delivery tokens of the layout before the PEL became the delivery
    /// record; never read, kept only so that `drop_queue` removes it.
    old_tokens: String,
    /// U: dedup ids pushed within their window (hash of dedup id -> the
    /// first message's id).
    dedup_ids: String,
    /// E: when each dedup id's window ends (sorted set of dedup id -> ms).
    dedup_ends: String,
}

impl Keys {
    pub(crate) fn new(prefix: &str, queue: &str) -> Self {
        let k = |part: &str| format!("{prefix}:{{{queue}}}:{part}");
        Keys {
            stream: k("s"),
            delayed: k("d"),
            delayed_bodies: k("m"),
            leases: k("l"),
            dead_letters: k("x"),
            purged: k("p"),
            wake: k("w"),
            batch_leases: k("r"),
            epoch: k("v"),
            scratch: k("t"),
            old_tokens: k("k"),
            dedup_ids: k("u"),
            dedup_ends: k("e"),
        }
    }

    /// The keys of every script, in the order `lua/common.lua` names them.
    pub(crate) fn scripts(&self) -> [&str; 9] {
        [
            &self.stream,
            &self.delayed,
            &self.delayed_bodies,
            &self.leases,
            &self.dead_letters,
            &self.purged,
            &self.wake,
            &self.batch_leases,
            &self.epoch,
        ]
    }

    /// The keys of `lua/fast.lua`: the scripts' nine and the scratch key.
    pub(crate) fn fast(&self) -> [&str; 10] {
        let [s, d, m, l, x, p, w, r, v] = self.scripts();
        [s, d, m, l, x, p, w, r, v, &self.scratch]
    }

    /// The keys of `lua/post.lua`: S, L, W, R, T.
    pub(crate) fn post(&self) -> [&str; 5] {
        [
            &self.stream,
            &self.leases,
            &self.wake,
            &self.batch_leases,
            &self.scratch,
        ]
    }

    /// The keys of `lua/push.lua`: the scripts' nine, U and E.
    pub(crate) fn push(&self) -> [&str; 11] {
        let [s, d, m, l, x, p, w, r, v] = self.scripts();
        [s, d, m, l, x, p, w, r, v, &self.dedup_ids, &self.dedup_ends]
    }

    /// Every key of the queue, for `drop_queue`.
    pub(crate) fn all(&self) -> [&str; 13] {
        let [s, d, m, l, x, p, w, r, v, t] = self.fast();
        [
            s,
            d,
            m,
            l,
            x,
            p,
            w,
            r,
            v,
            t,
            &self.old_tokens,
            &self.dedup_ids,
            &self.dedup_ends,
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_share_one_hash_tag() {
        let k = Keys::new("flextide", "orders");
        assert_eq!(k.stream, "flextide:{orders}:s");
        assert!(
            k.all()
                .iter()
                .all(|key| key.starts_with("flextide:{orders}:"))
        );
        let mut parts: Vec<_> = k.all().iter().map(|key| key.to_owned()).collect();
        parts.sort();
        parts.dedup();
        assert_eq!(parts.len(), 13, "every key distinct");
        assert_eq!(k.scripts()[4], "flextide:{orders}:x");
        assert_eq!(k.push()[9], "flextide:{orders}:u");
        assert_eq!(k.push()[10], "flextide:{orders}:e");
        assert_eq!(k.post()[4], "flextide:{orders}:t");
    }
}
