//! The lease guard of prefetched deliveries: one that waits unstarted
//! until half its lease is gone is given back (released, so the attempt
//! is not spent), never left to lose its lease in the worker's hands,
//! where another consumer would get it while this one still may start it.
//! Deliveries wait in pop order, so the dispatcher only ever waits on the
//! oldest: guarding that one guards them all.

use std::time::Duration;

use tokio::time::Instant;

/// Leases shorter than this are not guarded: half of such a lease is gone
/// before a handler could start, and giving everything back would only
/// spin.
const MIN_GUARDED_LEASE: Duration = Duration::from_millis(100);

/// When a delivery popped at `popped_at` whose lease ends at `deadline`
/// must be given back if it has not started; `None` for leases too short
/// to guard.
pub(crate) fn give_back_at(popped_at: Instant, deadline: Instant) -> Option<Instant> {
    let lease = deadline.checked_duration_since(popped_at)?;
    (lease >= MIN_GUARDED_LEASE).then(|| popped_at + lease / 2)
}

/// Whether a delivery starting at `now` waited long enough (an eighth of
/// its lease) that the worker should hold fewer.
pub(crate) fn started_late(popped_at: Instant, deadline: Instant, now: Instant) -> bool {
    let lease = deadline.saturating_duration_since(popped_at);
    lease >= MIN_GUARDED_LEASE && now.saturating_duration_since(popped_at) * 8 > lease
}

pub(crate) async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn half_the_lease_unstarted_is_the_limit() {
        let at = Instant::now();
        let lease = Duration::from_secs(30);
        assert_eq!(give_back_at(at, at + lease), Some(at + lease / 2));
        assert_eq!(give_back_at(at, at + Duration::from_millis(50)), None);
        assert_eq!(give_back_at(at + lease, at), None);
        assert!(!started_late(at, at + lease, at + Duration::from_secs(3)));
        assert!(started_late(at, at + lease, at + Duration::from_secs(4)));
        assert!(!started_late(
            at,
            at + Duration::from_millis(50),
            at + lease
        ));
    }
}
