//! The leases of one handle, as pure code: what was received, what is
//! leased until when, what an ended lease turns into. No I/O and no locks:
//! the handle holds this behind a mutex and does the broker round trips the
//! answers call for, so every rule here is tested on tokio's paused clock.

use std::{
    cmp::Reverse,
    collections::{BTreeSet, BinaryHeap, HashMap, VecDeque},
    time::Duration,
};

use flextide_queue_core::{
    Delivery, QueueError, QueueOptions, Result,
    backend::{max_attempts_reason, undecodable_reason},
};
use tokio::{
    sync::oneshot::{self, error::TryRecvError},
    time::Instant,
};

use super::receipt::receipt;
use crate::{BACKEND, codec::Decoded};

pub(super) fn stale() -> QueueError {
    QueueError::StaleReceipt { backend: BACKEND }
}

fn mismatch() -> QueueError {
    QueueError::invalid_receipt(BACKEND, "receipt does not match its delivery")
}

/// A delivery received from the broker that no caller has claimed yet.
pub(super) struct Buffered {
    pub(super) generation: u64,
    pub(super) tag: u64,
    pub(super) incarnation: u64,
    pub(super) decoded: Decoded,
}

/// A delivery handed to a caller: its lease.
pub(super) struct Lease {
    pub(super) generation: u64,
    pub(super) tag: u64,
    pub(super) incarnation: u64,
    pub(super) deadline: Instant,
    pub(super) attempt: u32,
    pub(super) decoded: Decoded,
    /// `purge` ran while it was leased: its future redeliveries are dropped.
    pub(super) purged: bool,
    /// The deadline passed; the delivery waits (still on our channel) for
    /// this handle's next pop or the end of the grace period.
    pub(super) expired: bool,
}

/// What leasing a received delivery gives: a delivery for the caller, or a
/// lease for the dead letters (its attempts are used up, or it cannot be
/// decoded), with the reason.
pub(super) enum Handed {
    Out(Delivery),
    Refused(Lease, String),
}

/// Leases whose time came, for the broker round trips of the background pass.
#[derive(Default)]
pub(super) struct Due {
    /// Purged while leased: acknowledged, not redelivered.
    pub(super) ack: Vec<Lease>,
    /// Its last attempt ended: to the dead letters.
    pub(super) dead: Vec<Lease>,
    /// The grace after its lease ended passed: republished for every consumer.
    pub(super) requeue: Vec<Lease>,
    /// Some lease ended: waiting pops may take it again.
    pub(super) woke: bool,
}

/// The current subscription of the consuming channel.
pub(super) struct ConsumerSlot {
    pub(super) incarnation: u64,
    pub(super) tag: String,
    pub(super) prefetch: usize,
    /// Deliveries of this subscription not yet settled or given back.
    pub(super) outstanding: usize,
    /// Resolves once the subscription's task has buffered its last delivery.
    pub(super) done: oneshot::Receiver<()>,
}

/// A change of subscription the consumer must make on the broker.
pub(super) struct Resubscribe {
    pub(super) cancel: Option<String>,
    pub(super) prefetch: usize,
    pub(super) incarnation: u64,
    /// The new `basic.qos`, when the window changes.
    pub(super) qos: Option<usize>,
}

pub(super) struct State {
    uid: u64,
    lease: Duration,
    max_attempts: Option<u32>,
    grace: Duration,
    pub(super) generation: u64,
    pub(super) broken: bool,
    pub(super) buffer: VecDeque<Buffered>,
    pub(super) leased: HashMap<u64, Lease>,
    /// Tokens of leases that expired, oldest first, for local redelivery.
    expired: VecDeque<u64>,
    deadlines: BinaryHeap<Reverse<(Instant, u64)>>,
    pub(super) waiting: usize,
    pub(super) demand: usize,
    /// The most deliveries callers held and waited for at once on this link:
    /// the subscription's prefetch is sized from it, so it grows a few times
    /// at most instead of following every change of demand.
    peak_demand: usize,
    /// The consuming channel's current `basic.qos` prefetch (0: not set).
    qos: usize,
    /// Delivery tags received on the current link's consuming channel whose
    /// ack or nack has not been sent yet: a `basic.ack multiple` may only
    /// cover tags that are all ours to settle.
    pub(super) unsettled: BTreeSet<u64>,
    /// How many tags the current consuming channel gave us, and the largest:
    /// equal when no tag below the largest is still on its way to us.
    pub(super) tags_seen: u64,
    pub(super) max_tag: u64,
    pub(super) idle_since: Instant,
    pub(super) consumer: Option<ConsumerSlot>,
    /// Subscriptions cancelled on the current link whose task may still be
    /// buffering what the broker sent before its cancel-ok.
    retired: Vec<oneshot::Receiver<()>>,
    next_incarnation: u64,
    next_token: u64,
}

impl State {
    /// The state of handle `uid`; `grace` is how long an ended lease stays
    /// with the handle before it is republished.
    pub(super) fn new(uid: u64, options: &QueueOptions, grace: Duration) -> State {
        State {
            uid,
            lease: options.lease,
            max_attempts: options.max_attempts,
            grace,
            generation: 0,
            broken: false,
            buffer: VecDeque::new(),
            leased: HashMap::new(),
            expired: VecDeque::new(),
            deadlines: BinaryHeap::new(),
            waiting: 0,
            demand: 0,
            peak_demand: 0,
            qos: 0,
            unsettled: BTreeSet::new(),
            tags_seen: 0,
            max_tag: 0,
            idle_since: Instant::now(),
            consumer: None,
            retired: Vec::new(),
            next_incarnation: 1,
            next_token: 1,
        }
    }

    /// A new link replaced the old one: whatever the old connection held
    /// went back to the broker with it, so those receipts are stale now.
    pub(super) fn reset(&mut self, generation: u64) {
        self.generation = generation;
        self.broken = false;
        self.buffer.clear();
        self.leased.clear();
        self.expired.clear();
        self.deadlines.clear();
        self.consumer = None;
        self.retired.clear();
        self.peak_demand = 0;
        self.qos = 0;
        self.unsettled.clear();
        self.tags_seen = 0;
        self.max_tag = 0;
    }

    /// Records a tag the consuming channel of the current link gave us.
    pub(super) fn received(&mut self, tag: u64) {
        self.unsettled.insert(tag);
        self.tags_seen += 1;
        self.max_tag = self.max_tag.max(tag);
    }

    pub(super) fn settled(&mut self, incarnation: u64) {
        if let Some(c) = self.consumer.as_mut()
            && c.incarnation == incarnation
        {
            c.outstanding = c.outstanding.saturating_sub(1);
        }
    }

    /// Forgets tags whose ack or nack was sent on link `generation`. A tag
    /// whose settle failed stays, which only keeps later acks from covering it.
    pub(super) fn sent_settle(&mut self, generation: u64, tags: &[u64]) {
        if self.generation == generation {
            for tag in tags {
                self.unsettled.remove(tag);
            }
        }
    }

    /// How many of `sorted` tags one `basic.ack multiple` covers: the
    /// smallest tags still unsettled on the channel, when they are all in
    /// `sorted` and no tag below them is still on its way to us.
    pub(super) fn multiple_ack_covers(&self, generation: u64, sorted: &[u64]) -> usize {
        if self.generation != generation || self.tags_seen != self.max_tag {
            return 0;
        }
        self.unsettled
            .iter()
            .zip(sorted)
            .take_while(|(a, b)| a == b)
            .count()
    }

    /// Leases up to `n` deliveries of link `generation`: first those whose
    /// lease ended (delivered again from our channel, attempt + 1), then
    /// buffered ones. Deliveries for the dead letters go to `refused`.
    pub(super) fn take(
        &mut self,
        generation: u64,
        n: usize,
        now: Instant,
        refused: &mut Vec<(Lease, String)>,
    ) -> Vec<Delivery> {
        let mut out = Vec::new();
        if n == 0 {
            return out;
        }
        // A pop served from the buffer is activity too: the subscription
        // lingers from the last pop, whether it had to wait or not.
        if self.waiting == 0 {
            self.idle_since = now;
        }
        while out.len() < n {
            let Some(token) = self.expired.pop_front() else {
                break;
            };
            if !self
                .leased
                .get(&token)
                .is_some_and(|l| l.expired && l.generation == generation)
            {
                continue;
            }
            let Some(old) = self.leased.remove(&token) else {
                continue;
            };
            let mut decoded = old.decoded;
            decoded.attempts_done = old.attempt;
            let b = Buffered {
                generation,
                tag: old.tag,
                incarnation: old.incarnation,
                decoded,
            };
            match self.lease(b, now) {
                Handed::Out(d) => out.push(d),
                Handed::Refused(l, why) => refused.push((l, why)),
            }
        }
        while out.len() < n {
            let Some(b) = self.buffer.pop_front() else {
                break;
            };
            if b.generation != generation || self.generation != generation {
                continue;
            }
            match self.lease(b, now) {
                Handed::Out(d) => out.push(d),
                Handed::Refused(l, why) => refused.push((l, why)),
            }
        }
        out
    }

    /// Turns a received delivery into a leased one, or refuses it: it
    /// cannot be decoded, or it would exceed `max_attempts`.
    pub(super) fn lease(&mut self, b: Buffered, now: Instant) -> Handed {
        let attempt = b.decoded.attempts_done.saturating_add(1);
        let deadline = now + self.lease;
        let lease = Lease {
            generation: b.generation,
            tag: b.tag,
            incarnation: b.incarnation,
            deadline,
            attempt,
            decoded: b.decoded,
            purged: false,
            expired: false,
        };
        if let Some(what) = &lease.decoded.undecodable {
            let why = undecodable_reason(what);
            self.settled(lease.incarnation);
            return Handed::Refused(lease, why);
        }
        if let Some(max) = self.max_attempts.filter(|&max| attempt > max) {
            self.settled(lease.incarnation);
            return Handed::Refused(lease, max_attempts_reason(max));
        }
        let token = self.next_token;
        self.next_token += 1;
        let delivery = Delivery::new(
            lease.decoded.message.clone(),
            receipt(self.uid, lease.generation, lease.tag, token),
            attempt,
            deadline,
        );
        self.deadlines.push(Reverse((deadline, token)));
        self.leased.insert(token, lease);
        Handed::Out(delivery)
    }

    /// Removes a lease so that exactly one caller settles it. Stale when the
    /// delivery was settled, expired and redelivered, or its connection is
    /// gone; `usable` is the generation of the healthy current link, if any.
    pub(super) fn claim(
        &mut self,
        token: u64,
        generation: u64,
        tag: u64,
        usable: Option<u64>,
    ) -> Result<Lease> {
        let Some(lease) = self.leased.get(&token) else {
            return Err(stale());
        };
        if lease.generation != generation || lease.tag != tag {
            return Err(mismatch());
        }
        if usable != Some(lease.generation) || self.generation != lease.generation {
            self.leased.remove(&token);
            return Err(stale());
        }
        let lease = self.leased.remove(&token).ok_or_else(stale)?;
        self.settled(lease.incarnation);
        Ok(lease)
    }

    /// Gives a claimed lease back after a failed settle, so the same receipt
    /// can retry (only while its connection lives).
    pub(super) fn restore(&mut self, token: u64, mut lease: Lease) {
        lease.expired = false;
        if self.generation == lease.generation && !self.broken {
            self.deadlines.push(Reverse((lease.deadline, token)));
            if let Some(c) = self.consumer.as_mut()
                && c.incarnation == lease.incarnation
            {
                c.outstanding += 1;
            }
            self.leased.insert(token, lease);
        }
    }

    /// Moves a lease's deadline to `deadline` (an ended lease, still here
    /// in its grace, is leased again).
    pub(super) fn extend(
        &mut self,
        token: u64,
        generation: u64,
        tag: u64,
        deadline: Instant,
    ) -> Result<()> {
        let current = self.generation;
        let Some(lease) = self.leased.get_mut(&token) else {
            return Err(stale());
        };
        if lease.generation != generation || lease.tag != tag {
            return Err(mismatch());
        }
        if lease.generation != current {
            return Err(stale());
        }
        lease.deadline = deadline;
        lease.expired = false;
        self.deadlines.push(Reverse((deadline, token)));
        Ok(())
    }

    /// The leases whose deadline (or grace after it) passed by `now`.
    pub(super) fn due(&mut self, now: Instant) -> Due {
        let mut due = Due::default();
        while let Some(Reverse((at, token))) = self.deadlines.peek().copied() {
            if at > now {
                break;
            }
            self.deadlines.pop();
            let Some(l) = self.leased.get(&token) else {
                continue;
            };
            let last = self.max_attempts.is_some_and(|m| l.attempt >= m);
            if !l.expired && l.deadline == at {
                if l.purged || last {
                    let Some(lease) = self.leased.remove(&token) else {
                        continue;
                    };
                    self.settled(lease.incarnation);
                    if lease.purged {
                        due.ack.push(lease)
                    } else {
                        due.dead.push(lease)
                    }
                } else {
                    // Kept a while: its receipt still settles it, and our
                    // next pop takes it before anything else.
                    if let Some(l) = self.leased.get_mut(&token) {
                        l.expired = true;
                    }
                    self.expired.push_back(token);
                    self.deadlines.push(Reverse((at + self.grace, token)));
                    due.woke = true;
                }
            } else if l.expired && l.deadline + self.grace == at {
                let Some(lease) = self.leased.remove(&token) else {
                    continue;
                };
                self.settled(lease.incarnation);
                if lease.purged {
                    due.ack.push(lease)
                } else {
                    due.requeue.push(lease)
                }
            }
        }
        due
    }

    /// With no pop waiting: the subscription to end after `linger`, and the
    /// unclaimed buffered deliveries to give back after `hold` (once
    /// unsubscribed).
    pub(super) fn idle(
        &mut self,
        now: Instant,
        linger: Duration,
        hold: Duration,
    ) -> (Option<String>, Vec<Buffered>) {
        if self.waiting > 0 {
            return (None, Vec::new());
        }
        let cancel = if now >= self.idle_since + linger {
            // The next subscription is sized from the demand it meets.
            self.peak_demand = 0;
            self.retire()
        } else {
            None
        };
        let give_back = if self.consumer.is_none() && now >= self.idle_since + hold {
            let generation = self.generation;
            self.buffer
                .drain(..)
                .filter(|b| b.generation == generation)
                .collect()
        } else {
            Vec::new()
        };
        (cancel, give_back)
    }

    /// Ends the current subscription here (the caller sends its
    /// `basic.cancel`) and returns its tag; its task is remembered until it
    /// has buffered its last delivery.
    fn retire(&mut self) -> Option<String> {
        let slot = self.consumer.take()?;
        self.retired
            .retain_mut(|done| matches!(done.try_recv(), Err(TryRecvError::Empty)));
        self.retired.push(slot.done);
        Some(slot.tag)
    }

    /// Ends the current subscription here like [`State::retire`], and
    /// returns its tag to cancel with what resolves once every subscription
    /// of the link, this one and the retired ones, has buffered its last
    /// delivery.
    pub(super) fn unsubscribe(&mut self) -> (Option<String>, Vec<oneshot::Receiver<()>>) {
        let tag = self.retire();
        (tag, std::mem::take(&mut self.retired))
    }

    /// Empties the buffer: the deliveries of the current link received and
    /// never handed to a caller, to give back.
    pub(super) fn unclaimed(&mut self) -> Vec<Buffered> {
        let generation = self.generation;
        let out: Vec<Buffered> = self
            .buffer
            .drain(..)
            .filter(|b| b.generation == generation)
            .collect();
        for b in &out {
            self.settled(b.incarnation);
        }
        out
    }

    /// Whether waiting pops need a new subscription, and with which window.
    ///
    /// The prefetch is twice the most deliveries callers held and asked for
    /// at once (rounded up to a power of two, at most `cap`), so the broker
    /// keeps sending while earlier batches are handled and acknowledged,
    /// and a steady consumer is subscribed once rather than again whenever
    /// its leases fill the window. It re-subscribes only when that need
    /// outgrew the prefetch, or when every slot is taken by deliveries
    /// callers hold (a new consumer gets a fresh window; the old deliveries
    /// stay on the channel and are settled there).
    pub(super) fn resubscribe(&mut self, cap: usize) -> Option<Resubscribe> {
        let want = self.demand.saturating_sub(self.buffer.len());
        if want == 0 {
            return None;
        }
        let need = self.leased.len() + self.demand;
        self.peak_demand = self.peak_demand.max(need);
        let sized = self
            .peak_demand
            .saturating_mul(2)
            .checked_next_power_of_two()
            .unwrap_or(usize::MAX)
            .clamp(1, cap);
        if let Some(c) = &self.consumer {
            let free = c.prefetch.saturating_sub(c.outstanding);
            if free >= want || (free > 0 && c.prefetch >= sized) {
                return None;
            }
        }
        let cancel = self.retire();
        let incarnation = self.next_incarnation;
        self.next_incarnation += 1;
        let prefetch = sized.max(want.min(cap));
        // basic.qos applies to consumers started after it: sent only when
        // the window changes.
        let qos = (self.qos != prefetch).then(|| {
            self.qos = prefetch;
            prefetch
        });
        Some(Resubscribe {
            cancel,
            prefetch,
            incarnation,
            qos,
        })
    }

    /// `purge`: the delivery tags to acknowledge now (buffered, and ended
    /// leases); leases still held are marked, so their future redeliveries
    /// are dropped.
    pub(super) fn purge(&mut self) -> Vec<u64> {
        let generation = self.generation;
        let mut tags: Vec<u64> = self
            .buffer
            .drain(..)
            .filter(|b| b.generation == generation)
            .map(|b| b.tag)
            .collect();
        let ended: Vec<u64> = self
            .leased
            .iter()
            .filter(|(_, l)| l.expired)
            .map(|(t, _)| *t)
            .collect();
        for token in ended {
            if let Some(l) = self.leased.remove(&token) {
                tags.push(l.tag);
            }
        }
        for lease in self.leased.values_mut() {
            lease.purged = true;
        }
        tags
    }

    /// (buffered, leased, oldest enqueued ms) of the current link; an ended
    /// lease counts as buffered.
    pub(super) fn counts(&self) -> (u64, u64, Option<i64>) {
        let (mut buffered, mut leased, mut oldest) = (0u64, 0u64, None::<i64>);
        let mut seen = |ms: i64| oldest = Some(oldest.map_or(ms, |o: i64| o.min(ms)));
        for b in self
            .buffer
            .iter()
            .filter(|b| b.generation == self.generation)
        {
            buffered += 1;
            seen(b.decoded.enqueued_ms);
        }
        for l in self
            .leased
            .values()
            .filter(|l| l.generation == self.generation)
        {
            if l.expired {
                buffered += 1;
            } else {
                leased += 1;
            }
            seen(l.decoded.enqueued_ms);
        }
        (buffered, leased, oldest)
    }
}

#[cfg(test)]
mod tests;
