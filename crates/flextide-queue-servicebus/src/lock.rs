//! Locks of the messages this queue holds: which receive link took each
//! one and until when, so a receipt is fenced here before anything is
//! sent (Service Bus answers `MessageLockLost` for an expired lock even
//! before the message is delivered again; we refuse the same receipt
//! without a round trip), and when to renew a lock to keep it past the
//! queue's fixed lock duration.

use std::{
    collections::HashMap,
    time::{Duration, SystemTime},
};

use uuid::Uuid;

/// A lock held by this process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Held<D> {
    /// The generation of the receive link that took it: settlement must
    /// go over that link, so a lock of an older link is gone with it.
    pub(crate) link: u64,
    /// The delivery to settle on that link.
    pub(crate) delivery: D,
    /// When the lock runs out.
    pub(crate) locked_until: SystemTime,
}

/// Why a receipt cannot be settled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// Unknown token: settled already, or taken on a link since closed.
    Unknown,
    /// The lock ran out.
    Expired,
}

/// The locks this process holds, by lock token.
#[derive(Debug)]
pub(crate) struct Locks<D> {
    held: HashMap<Uuid, Held<D>>,
}

impl<D> Default for Locks<D> {
    fn default() -> Self {
        Self {
            held: HashMap::new(),
        }
    }
}

impl<D: Clone> Locks<D> {
    pub(crate) fn insert(&mut self, token: Uuid, held: Held<D>) {
        self.held.insert(token, held);
    }

    /// The lock of `token`, if it may still be settled at `now` on link
    /// generation `link`. An expired lock is forgotten.
    pub(crate) fn check(
        &mut self,
        token: Uuid,
        link: u64,
        now: SystemTime,
    ) -> Result<Held<D>, Refused> {
        let Some(held) = self.held.get(&token) else {
            return Err(Refused::Unknown);
        };
        if held.link != link {
            self.held.remove(&token);
            return Err(Refused::Unknown);
        }
        if now >= held.locked_until {
            self.held.remove(&token);
            return Err(Refused::Expired);
        }
        Ok(held.clone())
    }

    /// Forgets a settled lock.
    pub(crate) fn remove(&mut self, token: Uuid) -> Option<Held<D>> {
        self.held.remove(&token)
    }

    /// Records a renewal's new expiry.
    pub(crate) fn renewed(&mut self, token: Uuid, locked_until: SystemTime) {
        if let Some(h) = self.held.get_mut(&token) {
            h.locked_until = locked_until;
        }
    }

    /// Forgets every lock of links older than `link` (after a reconnect).
    pub(crate) fn forget_links_before(&mut self, link: u64) {
        self.held.retain(|_, h| h.link >= link);
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.held.len()
    }
}

/// When to renew next, to hold a lock until `want_until`: `None` once
/// the lock already lasts that long. Service Bus renews by the queue's
/// lock duration, not by an amount we choose, so a long extension is a
/// series of renewals, each at two thirds of the lock's life (the last
/// third is the margin for a slow round trip).
pub(crate) fn next_renewal(
    renewed_at: SystemTime,
    locked_until: SystemTime,
    want_until: SystemTime,
) -> Option<SystemTime> {
    if locked_until >= want_until {
        return None;
    }
    let life = locked_until
        .duration_since(renewed_at)
        .unwrap_or(Duration::ZERO);
    Some(renewed_at + life * 2 / 3)
}

#[cfg(test)]
mod tests {
    use std::time::UNIX_EPOCH;

    use super::*;

    fn at(s: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(s)
    }

    #[test]
    fn fences_expired_unknown_and_old_link_locks() {
        let mut locks = Locks::default();
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        locks.insert(
            a,
            Held {
                link: 1,
                delivery: "d1",
                locked_until: at(60),
            },
        );
        locks.insert(
            b,
            Held {
                link: 1,
                delivery: "d2",
                locked_until: at(60),
            },
        );
        assert_eq!(locks.check(a, 1, at(10)).unwrap().delivery, "d1");
        assert_eq!(locks.check(a, 1, at(60)), Err(Refused::Expired));
        assert_eq!(
            locks.check(a, 1, at(10)),
            Err(Refused::Unknown),
            "forgotten once expired"
        );
        assert_eq!(
            locks.check(b, 2, at(10)),
            Err(Refused::Unknown),
            "taken on another link"
        );
        assert_eq!(locks.len(), 0);
    }

    #[test]
    fn renewal_moves_the_expiry_and_reconnects_forget() {
        let mut locks = Locks::default();
        let a = Uuid::new_v4();
        locks.insert(
            a,
            Held {
                link: 1,
                delivery: (),
                locked_until: at(60),
            },
        );
        locks.renewed(a, at(120));
        assert!(locks.check(a, 1, at(90)).is_ok());
        locks.forget_links_before(2);
        assert_eq!(locks.check(a, 1, at(90)), Err(Refused::Unknown));
        assert!(locks.remove(a).is_none());
    }

    #[test]
    fn renews_at_two_thirds_until_the_wanted_time() {
        // Lock duration 60 s, taken at 0, wanted until 150: renew at 40;
        // that renewal (locked until 100) is renewed at 80; then 140
        // does not reach 150 either, and the one after (200) does.
        assert_eq!(next_renewal(at(0), at(60), at(150)), Some(at(40)));
        assert_eq!(next_renewal(at(40), at(100), at(150)), Some(at(80)));
        assert_eq!(next_renewal(at(80), at(140), at(150)), Some(at(120)));
        assert_eq!(next_renewal(at(120), at(180), at(150)), None);
        assert_eq!(next_renewal(at(0), at(60), at(30)), None);
    }
}
