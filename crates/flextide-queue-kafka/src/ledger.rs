//! The records a handle has fetched, and the lease on each: the part of the
//! queue that lives in the process, because a classic Kafka consumer group
//! has no per-record acknowledgement.
//!
//! A fetched record is *ready*, *leased* (with a fencing token and a
//! deadline) or *dying* (on its way to the dead letters). A lease that ends
//! unsettled makes the record ready again with one more attempt spent; a
//! settle removes it and, through [`PartitionOffsets`], may move the
//! partition's commit. Partitions taken away by a rebalance are forgotten
//! whole, so their receipts are stale. Pure: the clock is an argument.
//!
//! Ordering keys: a key's records share a partition (the key is the record
//! key), so offset order is push order; only the first record of a key the
//! ledger holds may be delivered, and a keyed record that is nacked stays
//! in its place ([`Ledger::retry_in_place`]) rather than being copied to
//! the end of the partition, where the key's next records would pass it.

use std::collections::{BTreeMap, HashMap, HashSet};

use tokio::time::Instant;

use crate::codec::{Decoded, Raw};
use crate::offsets::PartitionOffsets;

/// Where a record is.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Slot {
    Ready,
    Leased { token: String, deadline: Instant },
    Dying,
}

/// One fetched record.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub(crate) raw: Raw,
    /// The decoded record, or why it cannot be decoded.
    pub(crate) decoded: Result<Decoded, String>,
    /// Attempts spent: the record's own count plus expired leases here.
    pub(crate) spent: u32,
    slot: Slot,
}

impl Entry {
    fn not_before(&self) -> Option<i64> {
        self.decoded.as_ref().ok().and_then(|d| d.not_before)
    }

    fn ordering_key(&self) -> Option<&str> {
        self.decoded
            .as_ref()
            .ok()
            .and_then(|d| d.message.ordering_key.as_deref())
    }
}

/// A record handed out by [`Ledger::claim`].
#[derive(Debug, Clone)]
pub(crate) struct Claimed {
    pub(crate) partition: i32,
    pub(crate) offset: i64,
    pub(crate) token: String,
    pub(crate) attempt: u32,
    pub(crate) decoded: Decoded,
    pub(crate) deadline: Instant,
}

/// A record to move to the dead letters (its attempts are used up, or it
/// cannot be decoded); it stays *dying* until [`Ledger::settle_dying`].
#[derive(Debug, Clone)]
pub(crate) struct Dying {
    pub(crate) partition: i32,
    pub(crate) offset: i64,
    pub(crate) entry: Entry,
    pub(crate) reason: String,
}

/// Why a receipt settles nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stale;

/// Counts of what the ledger holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Counts {
    pub(crate) ready: u64,
    pub(crate) leased: u64,
    pub(crate) delayed: u64,
    /// Enqueue time (Unix ms) of the oldest ready or leased record.
    pub(crate) oldest: Option<i64>,
}

/// The fetched records of one handle's consumer, by partition and offset.
#[derive(Debug, Default)]
pub(crate) struct Ledger {
    entries: BTreeMap<(i32, i64), Entry>,
    offsets: HashMap<i32, PartitionOffsets>,
    /// Attempts spent on records this ledger forgot while they were
    /// delivered (a rebalance, a consumer restart), and the not-before time
    /// of a keyed record nacked in place: when the same record is fetched
    /// again, its next delivery counts them (bounded; see [`MEMORY`]).
    memory: HashMap<(i32, i64), Remembered>,
}

/// What the ledger keeps of a record it forgot.
#[derive(Debug, Clone, Copy)]
struct Remembered {
    spent: u32,
    not_before: Option<i64>,
}

/// How many forgotten records' attempts are remembered at most.
const MEMORY: usize = 100_000;

impl Ledger {
    /// Adds a fetched record (ignored if that offset is already held: a
    /// refetch after a seek).
    pub(crate) fn fetched(&mut self, raw: Raw, decoded: Result<Decoded, String>) {
        let key = (raw.partition, raw.offset);
        if self.entries.contains_key(&key) {
            return;
        }
        self.offsets
            .entry(raw.partition)
            .or_default()
            .fetched(raw.offset);
        let own = decoded.as_ref().map(|d| d.spent).unwrap_or(0);
        let mut decoded = decoded;
        let spent = match self.memory.remove(&key) {
            Some(m) => {
                if let (Ok(d), Some(at)) = (&mut decoded, m.not_before) {
                    d.not_before = Some(at);
                }
                m.spent.max(own)
            }
            None => own,
        };
        self.entries.insert(
            key,
            Entry {
                raw,
                decoded,
                spent,
                slot: Slot::Ready,
            },
        );
    }

    /// How many records are held (ready, leased, delayed or dying).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Leases up to `max` ready records due by `now_ms`, oldest offsets
    /// first. Leases that ended by `now` make their records ready first,
    /// with one more attempt spent. Records past `max_attempts` and records
    /// that cannot be decoded are returned as dying instead. Also returns
    /// the earliest not-before still in the future (Unix ms), to wake for.
    /// Stops at the `max`-th record leased: what lies further on (ended
    /// leases, dying records, not-before times) is seen by a claim that
    /// gets there; `max == 0` looks at every record.
    /// A keyed record is passed over while an earlier record of its key is
    /// held (leased, delayed, dying or itself passed over).
    pub(crate) fn claim(
        &mut self,
        max: usize,
        now: Instant,
        now_ms: i64,
        lease: std::time::Duration,
        max_attempts: Option<u32>,
        mut token: impl FnMut() -> String,
    ) -> (Vec<Claimed>, Vec<Dying>, Option<i64>) {
        let mut claimed = Vec::new();
        let mut dying = Vec::new();
        let mut next_due: Option<i64> = None;
        // Keys with an earlier record held: their later records wait.
        let mut keys_held: HashSet<String> = HashSet::new();
        for (&(partition, offset), entry) in self.entries.iter_mut() {
            if let Slot::Leased { deadline, .. } = entry.slot
                && deadline <= now
            {
                entry.spent += 1;
                entry.slot = Slot::Ready;
            }
            if let Some(key) = entry.ordering_key()
                && !keys_held.insert(key.to_owned())
            {
                continue;
            }
            if entry.slot != Slot::Ready {
                continue;
            }
            let reason = match (&entry.decoded, max_attempts) {
                (Err(what), _) => Some(flextide_queue_core::backend::undecodable_reason(what)),
                (Ok(_), Some(m)) if entry.spent >= m => {
                    Some(flextide_queue_core::backend::max_attempts_reason(m))
                }
                _ => None,
            };
            if let Some(reason) = reason {
                entry.slot = Slot::Dying;
                dying.push(Dying {
                    partition,
                    offset,
                    entry: entry.clone(),
                    reason,
                });
                continue;
            }
            if let Some(at) = entry.not_before()
                && at > now_ms
            {
                next_due = Some(next_due.map_or(at, |n| n.min(at)));
                continue;
            }
            if claimed.len() >= max {
                // Full: the rest waits for the next claim (which also ends
                // the leases and finds the dying records further on). Only
                // a claim of nothing (a sweep) looks at every record.
                if max > 0 {
                    break;
                }
                continue;
            }
            let token = token();
            let deadline = now + lease;
            entry.slot = Slot::Leased {
                token: token.clone(),
                deadline,
            };
            let decoded = entry.decoded.clone().expect("checked above");
            claimed.push(Claimed {
                partition,
                offset,
                token,
                attempt: entry.spent + 1,
                decoded,
                deadline,
            });
        }
        (claimed, dying, next_due)
    }

    /// The earliest lease deadline, to wake a waiting pop for.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.entries
            .values()
            .filter_map(|e| match &e.slot {
                Slot::Leased { deadline, .. } => Some(*deadline),
                _ => None,
            })
            .min()
    }

    /// The leased entry of a receipt, if the receipt still holds its lease
    /// (a lease that ended still counts until the record is delivered
    /// again).
    pub(crate) fn leased(&self, partition: i32, offset: i64, token: &str) -> Result<&Entry, Stale> {
        match self.entries.get(&(partition, offset)) {
            Some(e) if matches!(&e.slot, Slot::Leased { token: t, .. } if t == token) => Ok(e),
            _ => Err(Stale),
        }
    }

    /// Settles a leased record (deleted, nacked as a copy, dead-lettered):
    /// removes it and returns the partition's new commit position when it
    /// moved.
    pub(crate) fn settle(
        &mut self,
        partition: i32,
        offset: i64,
        token: &str,
    ) -> Result<Option<i64>, Stale> {
        self.leased(partition, offset, token)?;
        self.entries.remove(&(partition, offset));
        Ok(self
            .offsets
            .get_mut(&partition)
            .and_then(|p| p.done(offset)))
    }

    /// Settles a record that went to the dead letters by itself.
    pub(crate) fn settle_dying(&mut self, partition: i32, offset: i64) -> Option<i64> {
        match self.entries.get(&(partition, offset)) {
            Some(e) if e.slot == Slot::Dying => {}
            _ => return None,
        }
        self.entries.remove(&(partition, offset));
        self.offsets
            .get_mut(&partition)
            .and_then(|p| p.done(offset))
    }

    /// A dying record whose move failed: ready again, to be tried by the
    /// next claim.
    pub(crate) fn revive(&mut self, partition: i32, offset: i64) {
        if let Some(e) = self.entries.get_mut(&(partition, offset))
            && e.slot == Slot::Dying
        {
            e.slot = Slot::Ready;
        }
    }

    /// Moves a lease's end to `deadline`.
    pub(crate) fn extend(
        &mut self,
        partition: i32,
        offset: i64,
        token: &str,
        to: Instant,
    ) -> Result<(), Stale> {
        match self.entries.get_mut(&(partition, offset)) {
            Some(e) => match &mut e.slot {
                Slot::Leased { token: t, deadline } if t == token => {
                    *deadline = to;
                    Ok(())
                }
                _ => Err(Stale),
            },
            None => Err(Stale),
        }
    }

    /// A nack of a keyed record: ready again in its place, with the attempt
    /// spent and not before `not_before` (Unix ms), so the key's later
    /// records keep waiting behind it. Nothing is produced, so the attempt
    /// and the delay live in this process (like an expired lease's).
    pub(crate) fn retry_in_place(
        &mut self,
        partition: i32,
        offset: i64,
        token: &str,
        not_before: Option<i64>,
    ) -> Result<(), Stale> {
        self.leased(partition, offset, token)?;
        if let Some(e) = self.entries.get_mut(&(partition, offset)) {
            e.spent += 1;
            e.slot = Slot::Ready;
            if let Ok(d) = &mut e.decoded {
                d.not_before = not_before;
            }
        }
        Ok(())
    }

    /// Gives a leased record back without spending its attempt.
    pub(crate) fn release(
        &mut self,
        partition: i32,
        offset: i64,
        token: &str,
    ) -> Result<(), Stale> {
        self.leased(partition, offset, token)?;
        if let Some(e) = self.entries.get_mut(&(partition, offset)) {
            e.slot = Slot::Ready;
        }
        Ok(())
    }

    /// Forgets the partitions a rebalance took away: their records go to
    /// whichever consumer owns them now, and their receipts here are stale.
    pub(crate) fn revoke(&mut self, partitions: &[i32]) {
        let forgotten: Vec<(i32, i64)> = self
            .entries
            .keys()
            .filter(|(p, _)| partitions.contains(p))
            .copied()
            .collect();
        for key in forgotten {
            if let Some(e) = self.entries.remove(&key) {
                self.remember(key, &e);
            }
        }
        for p in partitions {
            self.offsets.remove(p);
        }
    }

    /// Forgets everything (the consumer closed or lost its group).
    pub(crate) fn clear(&mut self) {
        for (key, e) in std::mem::take(&mut self.entries) {
            self.remember(key, &e);
        }
        self.offsets.clear();
    }

    /// Keeps the attempts of a record forgotten while it was delivered:
    /// that delivery counts as spent.
    fn remember(&mut self, key: (i32, i64), e: &Entry) {
        let spent = match e.slot {
            Slot::Leased { .. } => e.spent + 1,
            _ => e.spent,
        };
        let own = e.decoded.as_ref().map(|d| d.spent).unwrap_or(0);
        if spent > own {
            if self.memory.len() >= MEMORY {
                self.memory.clear();
            }
            let not_before = e.not_before();
            self.memory.insert(key, Remembered { spent, not_before });
        }
    }

    /// Records ready now (not leased, delayed or dying): what the consumer
    /// has fetched ahead of the pops.
    pub(crate) fn ready_len(&self, now_ms: i64) -> usize {
        self.entries
            .values()
            .filter(|e| e.slot == Slot::Ready && e.not_before().is_none_or(|at| at <= now_ms))
            .count()
    }

    /// Per partition held: the offset after the last record fetched and how
    /// many of its records are ready now.
    pub(crate) fn partitions(&self, now_ms: i64) -> Vec<(i32, Option<i64>, u64)> {
        self.offsets
            .iter()
            .map(|(p, o)| {
                let ready = self
                    .entries
                    .range((*p, i64::MIN)..=(*p, i64::MAX))
                    .filter(|(_, e)| {
                        e.slot == Slot::Ready && e.not_before().is_none_or(|at| at <= now_ms)
                    })
                    .count() as u64;
                (*p, o.next_fetch(), ready)
            })
            .collect()
    }

    /// Where each partition's commit may stand now.
    pub(crate) fn positions(&self) -> Vec<(i32, i64)> {
        self.offsets
            .iter()
            .filter_map(|(p, o)| o.position().map(|pos| (*p, pos)))
            .collect()
    }

    /// Counts by state at `now` / `now_ms`.
    pub(crate) fn counts(&self, now: Instant, now_ms: i64) -> Counts {
        let mut c = Counts::default();
        for e in self.entries.values() {
            let delayed = e.not_before().is_some_and(|at| at > now_ms);
            let live = match &e.slot {
                Slot::Leased { deadline, .. } if *deadline > now => {
                    c.leased += 1;
                    true
                }
                Slot::Dying => false,
                _ if delayed => {
                    c.delayed += 1;
                    false
                }
                _ => {
                    c.ready += 1;
                    true
                }
            };
            if live {
                let at = e
                    .decoded
                    .as_ref()
                    .ok()
                    .and_then(|d| d.message.enqueued_at)
                    .map(crate::codec::millis);
                if let Some(at) = at {
                    c.oldest = Some(c.oldest.map_or(at, |o: i64| o.min(at)));
                }
            }
        }
        c
    }
}

#[cfg(test)]
mod tests;
