//! The queue's data structure: entries by push sequence, an ordered set of
//! deliverable entries, timers for delays and leases, and per-key lines.

use std::{
    cmp::Reverse,
    collections::{BTreeSet, HashMap, HashSet, VecDeque},
    time::{Duration, SystemTime},
};

use flextide_queue_core::{
    DeadLetter, Message, MessageId, Pushed, QueueError, QueueOptions, QueueStats, Replay, Result,
    backend,
};
use tokio::time::Instant;

use crate::BACKEND;

/// How a receipt settles its delivery.
pub(crate) enum Settle<'a> {
    Delete,
    Nack(Duration),
    /// Back to the queue at once, the attempt not counted.
    Release,
    Extend(Duration),
    DeadLetter(&'a str),
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting to be delivered (deliverable unless its key is blocked).
    Ready,
    /// Not deliverable before the instant.
    Delayed(Instant),
    /// Leased until the instant.
    Leased(Instant),
}

struct Entry {
    message: Message,
    /// Deliveries so far.
    attempts: u32,
    /// Token of the latest delivery; 0 once that delivery was settled.
    token: u64,
    phase: Phase,
}

/// A claimed message, ready to be turned into a `Delivery`.
pub(crate) struct Claimed {
    pub(crate) seq: u64,
    pub(crate) token: u64,
    pub(crate) attempt: u32,
    pub(crate) message: Message,
    pub(crate) lease_deadline: Instant,
}

pub(crate) struct QueueState {
    options: QueueOptions,
    next_seq: u64,
    next_token: u64,
    entries: HashMap<u64, Entry>,
    /// Entries deliverable now, in delivery order.
    ready: BTreeSet<(Reverse<u8>, u64)>,
    /// Delays and leases, by the instant they end.
    timers: BTreeSet<(Instant, u64)>,
    /// Per ordering key, the sequence numbers of its messages in push order.
    keys: HashMap<String, VecDeque<u64>>,
    dead: VecDeque<DeadLetter>,
    /// Dedup ids pushed within the window: the first message's id and when
    /// it was pushed.
    dedup: HashMap<String, (MessageId, Instant)>,
    /// The same ids in push order, so expired ones are dropped cheaply.
    dedup_order: VecDeque<(Instant, String)>,
}

impl QueueState {
    pub(crate) fn new(options: QueueOptions) -> Self {
        QueueState {
            options,
            next_seq: 1,
            next_token: 1,
            entries: HashMap::new(),
            ready: BTreeSet::new(),
            timers: BTreeSet::new(),
            keys: HashMap::new(),
            dead: VecDeque::new(),
            dedup: HashMap::new(),
            dedup_order: VecDeque::new(),
        }
    }

    /// Pushes `message` unless its dedup id was pushed within the window.
    pub(crate) fn push_unique(&mut self, message: Message, now: Instant) -> Pushed {
        let window = self.options.dedup_window;
        while let Some((at, _)) = self.dedup_order.front() {
            if now.saturating_duration_since(*at) < window {
                break;
            }
            let (at, key) = self.dedup_order.pop_front().expect("front exists");
            if self.dedup.get(&key).is_some_and(|(_, first)| *first == at) {
                self.dedup.remove(&key);
            }
        }
        let id = message.id.clone();
        if let Some(key) = &message.dedup_id {
            if let Some((first, _)) = self.dedup.get(key) {
                return Pushed::Duplicate(first.clone());
            }
            self.dedup.insert(key.clone(), (id.clone(), now));
            self.dedup_order.push_back((now, key.clone()));
        }
        self.push(message, now);
        Pushed::Enqueued(id)
    }

    pub(crate) fn push(&mut self, mut message: Message, now: Instant) {
        let seq = self.next_seq;
        self.next_seq += 1;
        message.enqueued_at = Some(SystemTime::now());
        let phase = match message.delay.take() {
            Some(d) if !d.is_zero() => Phase::Delayed(now + d),
            _ => Phase::Ready,
        };
        if let Some(key) = &message.ordering_key {
            self.keys.entry(key.clone()).or_default().push_back(seq);
        }
        let priority = message.priority;
        self.entries.insert(
            seq,
            Entry {
                message,
                attempts: 0,
                token: 0,
                phase,
            },
        );
        self.enter(seq, priority, phase);
    }

    /// Files an entry under its phase: a timer, or the ready set if its key
    /// (if any) lets it through.
    fn enter(&mut self, seq: u64, priority: u8, phase: Phase) {
        match phase {
            Phase::Delayed(at) | Phase::Leased(at) => {
                self.timers.insert((at, seq));
            }
            Phase::Ready => {
                if self.is_key_head(seq) {
                    self.ready.insert((Reverse(priority), seq));
                }
            }
        }
    }

    /// Removes an entry from whichever set its phase put it in.
    fn leave(&mut self, seq: u64) {
        let Some(e) = self.entries.get(&seq) else {
            return;
        };
        match e.phase {
            Phase::Delayed(at) | Phase::Leased(at) => {
                self.timers.remove(&(at, seq));
            }
            Phase::Ready => {
                self.ready.remove(&(Reverse(e.message.priority), seq));
            }
        }
    }

    fn is_key_head(&self, seq: u64) -> bool {
        match self
            .entries
            .get(&seq)
            .and_then(|e| e.message.ordering_key.as_ref())
        {
            None => true,
            Some(key) => self.keys.get(key).and_then(|line| line.front()) == Some(&seq),
        }
    }

    /// Takes an entry out of the queue for good, letting the next message
    /// of its key through.
    fn remove(&mut self, seq: u64) -> Option<Entry> {
        self.leave(seq);
        let entry = self.entries.remove(&seq)?;
        if let Some(key) = &entry.message.ordering_key
            && let Some(line) = self.keys.get_mut(key)
        {
            line.retain(|s| *s != seq);
            let next = line.front().copied();
            if line.is_empty() {
                self.keys.remove(key);
            }
            if let Some(next) = next
                && let Some(e) = self.entries.get(&next)
                && e.phase == Phase::Ready
            {
                self.ready.insert((Reverse(e.message.priority), next));
            }
        }
        Some(entry)
    }

    fn move_to_dead(&mut self, seq: u64, reason: String) {
        if let Some(entry) = self.remove(seq) {
            self.dead.push_back(DeadLetter::new(
                entry.message,
                reason,
                entry.attempts,
                SystemTime::now(),
            ));
        }
    }

    fn exhausted(&self, attempts: u32) -> bool {
        self.options.max_attempts.is_some_and(|max| attempts >= max)
    }

    fn max_attempts_reason(&self) -> String {
        backend::max_attempts_reason(self.options.max_attempts.unwrap_or(0))
    }

    /// Applies every delay and lease that has ended by `now`.
    pub(crate) fn pump(&mut self, now: Instant) {
        while let Some(&(at, seq)) = self.timers.first() {
            if at > now {
                break;
            }
            self.timers.remove(&(at, seq));
            let Some(e) = self.entries.get_mut(&seq) else {
                continue;
            };
            let was_leased = matches!(e.phase, Phase::Leased(_));
            e.phase = Phase::Ready;
            let (attempts, priority) = (e.attempts, e.message.priority);
            if was_leased && self.exhausted(attempts) {
                let reason = self.max_attempts_reason();
                self.move_to_dead(seq, reason);
            } else {
                self.enter(seq, priority, Phase::Ready);
            }
        }
    }

    /// The next instant a timer ends, if any.
    pub(crate) fn next_due(&self) -> Option<Instant> {
        self.timers.first().map(|(at, _)| *at)
    }

    pub(crate) fn claim(&mut self, max: usize, now: Instant) -> Vec<Claimed> {
        self.pump(now);
        let lease_deadline = now + self.options.lease;
        let mut out = Vec::new();
        while out.len() < max {
            let Some((_, seq)) = self.ready.pop_first() else {
                break;
            };
            let token = self.next_token;
            self.next_token += 1;
            let e = self.entries.get_mut(&seq).expect("ready entries exist");
            e.attempts += 1;
            e.token = token;
            e.phase = Phase::Leased(lease_deadline);
            self.timers.insert((lease_deadline, seq));
            out.push(Claimed {
                seq,
                token,
                attempt: e.attempts,
                message: e.message.clone(),
                lease_deadline,
            });
        }
        out
    }

    /// Applies a receipt's settlement. Returns whether a message may have
    /// become deliverable (so waiting pops should look again).
    pub(crate) fn settle(
        &mut self,
        seq: u64,
        token: u64,
        how: Settle<'_>,
        now: Instant,
    ) -> Result<bool> {
        let stale = || QueueError::StaleReceipt { backend: BACKEND };
        let e = self.entries.get(&seq).ok_or_else(stale)?;
        // A receipt settles only its own delivery: the latest one, not yet
        // settled. Its lease may have expired as long as nobody else got it.
        if token == 0 || e.token != token {
            return Err(stale());
        }
        let (attempts, priority) = (e.attempts, e.message.priority);
        match how {
            Settle::Delete => {
                let had_key = e.message.ordering_key.is_some();
                self.remove(seq);
                Ok(had_key)
            }
            Settle::DeadLetter(reason) => {
                let had_key = e.message.ordering_key.is_some();
                self.move_to_dead(seq, reason.to_owned());
                Ok(had_key)
            }
            Settle::Extend(by) => {
                self.leave(seq);
                let phase = Phase::Leased(now + by);
                self.entries.get_mut(&seq).expect("checked").phase = phase;
                self.enter(seq, priority, phase);
                Ok(false)
            }
            Settle::Release => {
                self.leave(seq);
                let e = self.entries.get_mut(&seq).expect("checked");
                e.attempts = e.attempts.saturating_sub(1);
                e.token = 0;
                e.phase = Phase::Ready;
                self.enter(seq, priority, Phase::Ready);
                Ok(true)
            }
            Settle::Nack(delay) => {
                if self.exhausted(attempts) {
                    let reason = self.max_attempts_reason();
                    self.move_to_dead(seq, reason);
                    return Ok(true);
                }
                self.leave(seq);
                let phase = if delay.is_zero() {
                    Phase::Ready
                } else {
                    Phase::Delayed(now + delay)
                };
                let e = self.entries.get_mut(&seq).expect("checked");
                e.token = 0;
                e.phase = phase;
                self.enter(seq, priority, phase);
                Ok(true)
            }
        }
    }

    pub(crate) fn dead_letters(&self, limit: usize) -> Vec<DeadLetter> {
        self.dead.iter().take(limit).cloned().collect()
    }

    pub(crate) fn replay(&mut self, which: Replay, now: Instant) -> u64 {
        let taken: Vec<DeadLetter> = match which {
            Replay::All => self.dead.drain(..).collect(),
            Replay::Oldest(n) => {
                let n = n.min(self.dead.len());
                self.dead.drain(..n).collect()
            }
            Replay::Ids(ids) => {
                let ids: HashSet<_> = ids.into_iter().collect();
                let mut take = Vec::new();
                self.dead.retain(|d| {
                    let hit = ids.contains(&d.message.id);
                    if hit {
                        take.push(d.clone());
                    }
                    !hit
                });
                take
            }
        };
        let n = taken.len() as u64;
        for dead in taken {
            self.push(dead.message, now);
        }
        n
    }

    pub(crate) fn delete_dead_letters(&mut self, ids: &[MessageId]) -> u64 {
        let ids: HashSet<&MessageId> = ids.iter().collect();
        let before = self.dead.len();
        self.dead.retain(|d| !ids.contains(&d.message.id));
        (before - self.dead.len()) as u64
    }

    pub(crate) fn purge_dead_letters(&mut self) -> u64 {
        let n = self.dead.len() as u64;
        self.dead.clear();
        n
    }

    pub(crate) fn peek(&self, limit: usize) -> Vec<Message> {
        let mut waiting: Vec<(Reverse<u8>, u64)> = self
            .entries
            .iter()
            .filter(|(_, e)| e.phase == Phase::Ready)
            .map(|(seq, e)| (Reverse(e.message.priority), *seq))
            .collect();
        waiting.sort_unstable();
        waiting
            .into_iter()
            .take(limit)
            .map(|(_, seq)| self.entries[&seq].message.clone())
            .collect()
    }

    pub(crate) fn purge(&mut self) -> u64 {
        let n = self.entries.len() as u64;
        self.entries.clear();
        self.ready.clear();
        self.timers.clear();
        self.keys.clear();
        n
    }

    pub(crate) fn stats(&self) -> QueueStats {
        let mut stats = QueueStats::default().with_dead_lettered(self.dead.len() as u64);
        let wall = SystemTime::now();
        let mut oldest: Option<SystemTime> = None;
        for e in self.entries.values() {
            match e.phase {
                Phase::Ready => stats.depth += 1,
                Phase::Delayed(_) => stats.delayed += 1,
                Phase::Leased(_) => stats.in_flight += 1,
            }
            if !matches!(e.phase, Phase::Delayed(_))
                && let Some(at) = e.message.enqueued_at
            {
                oldest = Some(oldest.map_or(at, |o| o.min(at)));
            }
        }
        stats.oldest_age = oldest.map(|at| wall.duration_since(at).unwrap_or_default());
        stats
    }
}
