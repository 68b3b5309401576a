//! Statement texts: the ones that never change, built at compile time.

/// The claim: the first `n` deliverable rows in priority-then-push order,
/// locked with SKIP LOCKED so concurrent claimers never wait on each other.
/// A row with an ordering key is deliverable only at the head of its key
/// (no older row of the key exists, leased or delayed or not): the
/// `NOT EXISTS` is a plain, non-locking read, so a head that another claimer
/// holds locked still blocks the rest of its key.
pub(crate) const CLAIM_SQL: &str = concat!(
    "SELECT m.seq, m.attempts, ",
    now_ms!(),
    " AS now, m.",
    "id, m.payload, m.headers, m.priority, m.ordering_key, m.enqueued_at",
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

pub(crate) const INSERT_PREFIX: &str = "INSERT INTO flextide_queue_messages \
    (queue, id, payload, headers, priority, ordering_key, enqueued_at, visible_at) VALUES ";

pub(crate) const INSERT_ROW: &str =
    concat!("(?, ?, ?, ?, ?, ?, ", now_ms!(), ", ", now_ms!(), " + ?)");

/// `?, ?, ?` with `n` placeholders (`n` ≥ 1).
pub(crate) fn placeholders(n: usize) -> String {
    let mut s = String::with_capacity(n * 3);
    for i in 0..n {
        if i > 0 {
            s.push_str(", ");
        }
        s.push('?');
    }
    s
}

/// Gives back what a claim leased for a pop that is gone: visible now, the
/// attempt not counted. Binds: queue, token.
pub(crate) const RELEASE_SQL: &str = concat!(
    "UPDATE flextide_queue_messages SET leased = 0, token = NULL, visible_at = ",
    now_ms!(),
    ", attempts = GREATEST(attempts, 1) - 1 WHERE queue = ? AND token = ?"
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
