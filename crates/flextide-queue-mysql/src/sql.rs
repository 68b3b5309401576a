//! Statement texts: the ones that never change, built at compile time.

/// The claim: the first `n` deliverable rows in priority-then-push order,
/// locked with SKIP LOCKED so concurrent claimers never wait on each other.
/// A row with an ordering key is deliverable only at the head of its key
/// (no older row of the key exists, leased or delayed or not): the
/// `NOT EXISTS` is a plain, non-locking read, so a head that another claimer
/// holds locked still blocks the rest of its key.
pub const CLAIM_SQL: &str = concat!(
    "SELECT m.seq, m.attempts, ",
    now_ms!(),
    " AS now, m.",
    "id, m.payload, m.headers, m.priority, m.ordering_key, m.enqueued_at, m.dedup_id",
    " FROM flextide_queue_messages m FORCE INDEX (flextide_queue_messages_claim)
    WHERE m.queue = ? AND m.visible_at <= ",
    now_ms!(),
    " AND (m.ordering_key IS NULL OR NOT EXISTS (
        SELECT 1 FROM flextide_queue_messages e FORCE INDEX (flextide_queue_messages_key)
        WHERE e.queue = m.queue AND e.ordering_key = m.ordering_key AND e.seq < m.seq))
    ORDER BY m.pri_inv, m.seq
    LIMIT ?
    FOR UPDATE SKIP LOCKED"
);

/// The start of a push: the rows follow, one [`INSERT_ROW`] each.
pub const INSERT_PREFIX: &str = "INSERT INTO flextide_queue_messages \
    (queue, id, payload, headers, priority, ordering_key, enqueued_at, visible_at, dedup_id) VALUES ";

/// One row of a push. Binds: queue, id, payload, headers, priority,
/// ordering key, delay ms, dedup id.
pub const INSERT_ROW: &str = concat!(
    "(?, ?, ?, ?, ?, ?, ",
    now_ms!(),
    ", ",
    now_ms!(),
    " + ?, ?)"
);

/// The start of the claim of dedup ids (see `flextide_queue_sql::dedup`):
/// the rows follow, one [`DEDUP_CLAIM_ROW`] each, then
/// [`DEDUP_CLAIM_SUFFIX`]. A row still in its window counts a duplicate, an
/// expired one is taken over. MySQL assigns left to right, so `expires_at`
/// comes last and every condition reads its old value (as it would with
/// MariaDB's SIMULTANEOUS_ASSIGNMENT too).
pub(crate) const DEDUP_CLAIM_PREFIX: &str = "INSERT INTO flextide_queue_dedup \
    (queue, dedup_id, message_id, expires_at, duplicates) VALUES ";

/// One dedup id claimed. Binds: queue, dedup id, message id, window ms.
pub(crate) const DEDUP_CLAIM_ROW: &str = concat!("(?, ?, ?, ", now_ms!(), " + ?, 0)");

/// See [`DEDUP_CLAIM_PREFIX`].
pub(crate) const DEDUP_CLAIM_SUFFIX: &str = concat!(
    " ON DUPLICATE KEY UPDATE message_id = IF(expires_at <= ",
    now_ms!(),
    ", VALUES(message_id), message_id), duplicates = IF(expires_at <= ",
    now_ms!(),
    ", 0, duplicates + 1), expires_at = IF(expires_at <= ",
    now_ms!(),
    ", VALUES(expires_at), expires_at)"
);

/// Reads back what the claim of `n` dedup ids left, with a locking read
/// (the latest rows whatever the transaction's snapshot; this transaction
/// holds them already). Binds: queue, then the `n` dedup ids.
pub(crate) fn dedup_claimed_sql(n: usize) -> String {
    format!(
        "SELECT dedup_id, message_id, duplicates FROM flextide_queue_dedup \
         WHERE queue = ? AND dedup_id IN ({}) FOR UPDATE",
        placeholders(n)
    )
}

/// Locks up to ? expired dedup rows of any queue that nobody else holds.
pub(crate) const DEDUP_EXPIRED_SQL: &str = concat!(
    "SELECT queue, dedup_id FROM flextide_queue_dedup WHERE expires_at <= ",
    now_ms!(),
    " ORDER BY expires_at LIMIT ? FOR UPDATE SKIP LOCKED"
);

/// Deletes `n` dedup rows by key. Binds: queue and dedup id of each.
pub(crate) fn dedup_delete_sql(n: usize) -> String {
    let rows = vec!["(?, ?)"; n].join(", ");
    format!("DELETE FROM flextide_queue_dedup WHERE (queue, dedup_id) IN ({rows})")
}

/// `?, ?, ?` with `n` placeholders (`n` ≥ 1).
pub fn placeholders(n: usize) -> String {
    let mut s = String::with_capacity(n * 3);
    for i in 0..n {
        if i > 0 {
            s.push_str(", ");
        }
        s.push('?');
    }
    s
}

/// A cheap non-locking probe on the lease index for leased rows out of
/// attempts; usually empty. Binds: queue, max attempts.
pub const SWEEP_PROBE_SQL: &str = concat!(
    "SELECT seq FROM flextide_queue_messages FORCE INDEX (flextide_queue_messages_lease)
     WHERE queue = ? AND leased = 1 AND visible_at <= ",
    now_ms!(),
    " AND attempts >= ? LIMIT 500"
);

/// Leases `n` claimed rows; a row inserted by hand with an empty id gets
/// its stable foreign id on its first claim. Binds: token, lease end,
/// foreign id prefix, then the `n` seqs.
pub fn lease_sql(n: usize) -> String {
    format!(
        "UPDATE flextide_queue_messages SET leased = 1, token = ?, attempts = attempts + 1, visible_at = ?, \
         id = IF(id = '', CONCAT(?, seq), id) WHERE seq IN ({})",
        placeholders(n)
    )
}

/// Locks `n` rows a batch delete names, returning their current token.
/// Binds: the `n` seqs, then the queue.
pub fn lock_for_delete_sql(n: usize) -> String {
    format!(
        "SELECT seq, token FROM flextide_queue_messages WHERE seq IN ({}) AND queue = ? FOR UPDATE",
        placeholders(n)
    )
}

/// Deletes `n` rows by seq (locked, their token checked). Binds: the seqs.
pub fn delete_seqs_sql(n: usize) -> String {
    format!(
        "DELETE FROM flextide_queue_messages WHERE seq IN ({})",
        placeholders(n)
    )
}

/// Gives back what a claim leased for a pop that is gone: visible now, the
/// attempt not counted. Binds: queue, token.
pub(crate) const RELEASE_SQL: &str = concat!(
    "UPDATE flextide_queue_messages SET leased = 0, token = NULL, visible_at = ",
    now_ms!(),
    ", attempts = GREATEST(attempts, 1) - 1 WHERE queue = ? AND token = ?"
);

/// Gives back one delivery at once, the attempt not counted (`release`).
/// Binds: seq, queue, token.
pub(crate) const RELEASE_ONE_SQL: &str = concat!(
    "UPDATE flextide_queue_messages SET leased = 0, token = NULL, visible_at = ",
    now_ms!(),
    ", attempts = GREATEST(attempts, 1) - 1 WHERE seq = ? AND queue = ? AND token = ?"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholder_lists() {
        assert_eq!(placeholders(1), "?");
        assert_eq!(placeholders(3), "?, ?, ?");
    }
}
