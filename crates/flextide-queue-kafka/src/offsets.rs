//! Offset tracking for one partition: which fetched records are settled,
//! and how far the consumer group's offset may be committed.
//!
//! Kafka's commits are cumulative: committing offset `n` says "every record
//! before `n` is done". A record settled behind one that is still leased
//! must therefore not move the commit, or a crash would lose the leased
//! one. The commit position is the first offset that is not done; settling
//! records out of order only moves it when the run of done records in
//! front of it closes. Pure, so it is tested without a broker.

use std::collections::BTreeSet;

/// The settled and unsettled records of one partition.
#[derive(Debug, Clone, Default)]
pub(crate) struct PartitionOffsets {
    /// Where the group's committed offset stands (or would, once committed):
    /// every record before it is done.
    committed: Option<i64>,
    /// Records fetched and not yet done, by offset.
    open: BTreeSet<i64>,
    /// The offset after the last record fetched.
    next_fetch: Option<i64>,
}

impl PartitionOffsets {
    /// Records that the record at `offset` was fetched. Offsets arrive in
    /// increasing order within a partition; gaps (compacted records,
    /// transaction markers) are done by definition.
    pub(crate) fn fetched(&mut self, offset: i64) {
        if self.committed.is_none() {
            self.committed = Some(offset);
        }
        self.open.insert(offset);
        self.next_fetch = Some(self.next_fetch.map_or(offset + 1, |n| n.max(offset + 1)));
    }

    /// Marks the record at `offset` done. Returns the new commit position
    /// when it moved (the offset to commit: the first record not done),
    /// `None` when a record before it is still open.
    pub(crate) fn done(&mut self, offset: i64) -> Option<i64> {
        if !self.open.remove(&offset) {
            return None;
        }
        let position = self.position()?;
        if Some(position) != self.committed {
            self.committed = Some(position);
            Some(position)
        } else {
            None
        }
    }

    /// Where the commit may stand now: the first open record, or the offset
    /// after the last one fetched when every fetched record is done.
    pub(crate) fn position(&self) -> Option<i64> {
        self.open.first().copied().or(self.next_fetch)
    }

    /// The offset after the last record fetched.
    pub(crate) fn next_fetch(&self) -> Option<i64> {
        self.next_fetch
    }

    /// How many fetched records are not done.
    #[cfg(test)]
    pub(crate) fn open_count(&self) -> usize {
        self.open.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_order_settles_commit_each_time() {
        let mut p = PartitionOffsets::default();
        for o in 10..13 {
            p.fetched(o);
        }
        assert_eq!(p.done(10), Some(11));
        assert_eq!(p.done(11), Some(12));
        assert_eq!(p.done(12), Some(13));
        assert_eq!(p.open_count(), 0);
    }

    #[test]
    fn a_done_record_behind_an_open_one_commits_nothing() {
        let mut p = PartitionOffsets::default();
        for o in 0..5 {
            p.fetched(o);
        }
        // 1, 2 and 4 are done while 0 is still leased: committing 5 (or 3)
        // would lose 0 on a crash.
        assert_eq!(p.done(1), None);
        assert_eq!(p.done(2), None);
        assert_eq!(p.done(4), None);
        assert_eq!(p.position(), Some(0));
        // 0 done: the run 0..=2 closes, 3 is still open.
        assert_eq!(p.done(0), Some(3));
        assert_eq!(p.done(3), Some(5));
    }

    #[test]
    fn settling_twice_or_unknown_offsets_changes_nothing() {
        let mut p = PartitionOffsets::default();
        p.fetched(7);
        p.fetched(8);
        assert_eq!(p.done(7), Some(8));
        assert_eq!(p.done(7), None);
        assert_eq!(p.done(42), None);
        assert_eq!(p.position(), Some(8));
    }

    #[test]
    fn gaps_in_offsets_are_skipped() {
        let mut p = PartitionOffsets::default();
        p.fetched(3);
        p.fetched(6); // 4 and 5 were compacted away or are markers
        assert_eq!(p.done(6), None);
        assert_eq!(p.done(3), Some(7));
    }

    #[test]
    fn nothing_fetched_has_no_position() {
        let mut p = PartitionOffsets::default();
        assert_eq!(p.position(), None);
        assert_eq!(p.done(0), None);
    }
}
