//! What can go wrong when defining or starting a schedule.

use std::time::Duration;

use flextide_queue_core::QueueError;

use crate::BoxError;

/// A schedule that cannot be defined or started, or a push that failed.
///
/// Each message says what to change.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ScheduleError {
    /// The cron expression does not parse, or never matches a time.
    #[error(
        "schedule {name:?}: bad cron expression {expression:?}: {source} (expected 5 fields `min hour day month weekday` or 6 with seconds first, e.g. `0 */5 * * * *`)"
    )]
    Cron {
        /// The schedule's name.
        name: String,
        /// The expression as given.
        expression: String,
        /// What croner said.
        #[source]
        source: croner::errors::CronError,
    },
    /// The time zone is not an IANA name known to the system or the bundled
    /// time zone database.
    #[error(
        "schedule {name:?}: unknown time zone {zone:?} (use an IANA name such as `UTC` or `Europe/Berlin`)"
    )]
    TimeZone {
        /// The schedule's name.
        name: String,
        /// The zone as given.
        zone: String,
    },
    /// The name cannot be part of a dedup id.
    #[error(
        "schedule name {name:?} is not usable: use 1 to 100 printable ASCII characters without spaces (it becomes part of the dedup id `<name>@<slot>`)"
    )]
    Name {
        /// The name as given.
        name: String,
    },
    /// Two schedules of one scheduler share a name (they would share dedup ids).
    #[error("two schedules are named {name:?}: names must be unique, they make the dedup ids")]
    DuplicateName {
        /// The name.
        name: String,
    },
    /// The queue does not deduplicate and no [`ScheduleLock`](crate::ScheduleLock) was given.
    #[error(
        "schedule {name:?}: queue {queue:?} ({backend}) does not deduplicate pushes, so several scheduler instances would each push every slot; give the scheduler a ScheduleLock (`Scheduler::lock`) so only the lock holder pushes, or use a backend with dedup"
    )]
    NeedsLock {
        /// The schedule's name.
        name: String,
        /// The queue's name.
        queue: String,
        /// The backend's name.
        backend: &'static str,
    },
    /// The queue forgets dedup ids sooner than a late slot may still be
    /// pushed, so a slot could be pushed twice.
    #[error(
        "schedule {name:?}: queue {queue:?} remembers dedup ids for {window:?}, but this schedule may push a slot up to {reach:?} after its time (grace {grace:?}, look-back {look_back:?}); lower the look-back or grace below the window, or raise the queue's dedup window (QueueOptions::dedup_window)"
    )]
    WindowTooShort {
        /// The schedule's name.
        name: String,
        /// The queue's name.
        queue: String,
        /// The queue's dedup window.
        window: Duration,
        /// How late a slot may still be pushed.
        reach: Duration,
        /// The schedule's grace.
        grace: Duration,
        /// The schedule's look-back.
        look_back: Duration,
    },
    /// The schedule's payload could not be encoded.
    #[error("schedule {name:?}: the payload cannot be encoded: {source}")]
    Payload {
        /// The schedule's name.
        name: String,
        /// Why.
        #[source]
        source: QueueError,
    },
    /// Pushing a slot's message failed.
    #[error("schedule {name:?}: pushing the slot {slot} failed: {source}")]
    Push {
        /// The schedule's name.
        name: String,
        /// The slot, RFC 3339 in UTC.
        slot: String,
        /// The queue's error.
        #[source]
        source: QueueError,
    },
    /// The [`ScheduleLock`](crate::ScheduleLock) failed.
    #[error("schedule {name:?}: the schedule lock failed: {source}")]
    Lock {
        /// The schedule's name.
        name: String,
        /// The lock's error.
        #[source]
        source: BoxError,
    },
    /// The clock is outside the range a schedule can compute with.
    #[error("the clock reads a time outside years -9999..=9999")]
    Clock,
}

impl ScheduleError {
    /// Whether trying again later may succeed (a failed push or lock call).
    pub fn is_retryable(&self) -> bool {
        match self {
            ScheduleError::Push { source, .. } => source.is_retryable(),
            ScheduleError::Lock { .. } => true,
            _ => false,
        }
    }
}
