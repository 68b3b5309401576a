//! The scheduler: pushes each schedule's slots to its queue, without a
//! leader where the queue deduplicates, behind a [`ScheduleLock`] where not.

use std::{
    collections::HashSet,
    sync::Arc,
    time::{Duration, SystemTime},
};

use flextide_queue_core::{Pushed, QueueProvider};
use jiff::Timestamp;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::{
    Clock, Lease, ScheduleError, ScheduleLock, SystemClock,
    definition::Schedule,
    plan::{self, Slot},
};

/// The default [`SchedulerBuilder::lock_ttl`].
pub const DEFAULT_LOCK_TTL: Duration = Duration::from_secs(30);
/// Look-back on a queue without dedup (behind a lock), or with dedup whose
/// window the backend does not report.
const LOOK_BACK_WITHOUT_WINDOW: Duration = Duration::from_secs(3600);

/// What one tick did, or a whole run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SchedulerReport {
    /// Slots this instance enqueued.
    pub enqueued: u64,
    /// Slots the queue dropped as already pushed (by another instance).
    pub duplicates: u64,
    /// Missed slots the policy left out.
    pub skipped: u64,
    /// Ticks that failed (a push or the lock; retried).
    pub errors: u64,
}

impl SchedulerReport {
    fn add(&mut self, other: SchedulerReport) {
        self.enqueued += other.enqueued;
        self.duplicates += other.duplicates;
        self.skipped += other.skipped;
        self.errors += other.errors;
    }
}

/// Counters of one schedule, registered once.
#[derive(Debug)]
struct Counters {
    enqueued: metrics::Counter,
    duplicates: metrics::Counter,
    skipped: metrics::Counter,
}

impl Counters {
    fn new(schedule: &str, queue: &str) -> Self {
        let labels = [
            ("flextide.schedule", schedule.to_owned()),
            ("messaging.destination.name", queue.to_owned()),
        ];
        Counters {
            enqueued: metrics::counter!("flextide.schedule.enqueued", &labels),
            duplicates: metrics::counter!("flextide.schedule.duplicates", &labels),
            skipped: metrics::counter!("flextide.schedule.skipped", &labels),
        }
    }
}

#[derive(Debug)]
struct Entry {
    counters: Counters,
    schedule: Schedule,
    queue: Arc<dyn QueueProvider>,
    dedup: bool,
    reach: Duration,
    key: String,
    /// The moment up to which this instance handled the slots.
    handled: Option<Timestamp>,
    lease: Option<Lease>,
}

/// Builds a [`Scheduler`]; [`SchedulerBuilder::build`] checks each queue.
#[derive(Debug)]
pub struct SchedulerBuilder {
    schedules: Vec<(Schedule, Arc<dyn QueueProvider>)>,
    lock: Option<Arc<dyn ScheduleLock>>,
    lock_ttl: Duration,
    clock: Arc<dyn Clock>,
    holder: String,
}

/// Pushes one message per slot of each of its schedules.
///
/// Run one on every worker host: on a queue with dedup
/// ([`Capabilities::dedup`](flextide_queue_core::Capabilities::dedup)),
/// each instance pushes every slot with the dedup id
/// `<schedule name>@<slot, RFC 3339 UTC>`, and the queue enqueues the first
/// push of each slot only, so any number of instances make exactly one
/// task per slot without electing a leader. On a queue without dedup only
/// the holder of the schedule's [`ScheduleLock`] pushes.
#[derive(Debug)]
pub struct Scheduler {
    entries: Vec<Entry>,
    lock: Option<Arc<dyn ScheduleLock>>,
    lock_ttl: Duration,
    clock: Arc<dyn Clock>,
    holder: String,
}

impl Scheduler {
    /// A builder with no schedules, the system clock and no lock.
    pub fn builder() -> SchedulerBuilder {
        SchedulerBuilder {
            schedules: Vec::new(),
            lock: None,
            lock_ttl: DEFAULT_LOCK_TTL,
            clock: Arc::new(SystemClock),
            holder: format!("{}-{:08x}", std::process::id(), rand::random::<u32>()),
        }
    }
}

impl SchedulerBuilder {
    /// Adds `schedule`, pushing to `queue`.
    pub fn schedule(mut self, schedule: Schedule, queue: Arc<dyn QueueProvider>) -> Self {
        self.schedules.push((schedule, queue));
        self
    }

    /// The lock that elects one pusher per schedule, required for queues
    /// without dedup (with dedup it is optional and gates pushes too).
    pub fn lock(mut self, lock: Arc<dyn ScheduleLock>) -> Self {
        self.lock = Some(lock);
        self
    }

    /// How long a lease lasts; the holder renews it at a third of that.
    /// Default 30 s.
    pub fn lock_ttl(mut self, ttl: Duration) -> Self {
        self.lock_ttl = ttl;
        self
    }

    /// Where the time is read (default [`SystemClock`]).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// This instance's name as a lock holder (default: process id and a
    /// random suffix). Must differ between instances.
    pub fn holder(mut self, holder: impl Into<String>) -> Self {
        self.holder = holder.into();
        self
    }

    /// Checks every schedule against its queue: a queue without dedup needs
    /// a lock, and a queue's dedup window must outlast the latest a slot
    /// may be pushed (its grace, or its look-back under `RunOnce` and
    /// `CatchUp`): a shorter window would forget a slot while an instance
    /// could still push it.
    pub fn build(self) -> Result<Scheduler, ScheduleError> {
        let mut names = HashSet::new();
        let mut entries = Vec::with_capacity(self.schedules.len());
        for (schedule, queue) in self.schedules {
            if !names.insert((queue.queue_name().to_owned(), schedule.name().to_owned())) {
                return Err(ScheduleError::DuplicateName {
                    name: schedule.name().to_owned(),
                });
            }
            let caps = queue.capabilities();
            let look_back;
            if caps.dedup {
                look_back = schedule
                    .look_back_period()
                    .unwrap_or(match caps.dedup_window {
                        Some(window) => window / 2,
                        None => LOOK_BACK_WITHOUT_WINDOW,
                    });
                let reach = plan::reach(&schedule, look_back);
                match caps.dedup_window {
                    Some(window) if reach >= window => {
                        return Err(ScheduleError::WindowTooShort {
                            name: schedule.name().to_owned(),
                            queue: queue.queue_name().to_owned(),
                            window,
                            reach,
                            grace: schedule.grace_period(),
                            look_back,
                        });
                    }
                    Some(_) => {}
                    None => warn!(
                        schedule = schedule.name(),
                        queue = queue.queue_name(),
                        "the backend does not report its dedup window: cannot check it covers {reach:?}"
                    ),
                }
            } else if self.lock.is_none() {
                return Err(ScheduleError::NeedsLock {
                    name: schedule.name().to_owned(),
                    queue: queue.queue_name().to_owned(),
                    backend: queue.backend_name(),
                });
            } else {
                look_back = schedule
                    .look_back_period()
                    .unwrap_or(LOOK_BACK_WITHOUT_WINDOW);
            }
            entries.push(Entry {
                counters: Counters::new(schedule.name(), queue.queue_name()),
                reach: plan::reach(&schedule, look_back),
                key: format!("{}/{}", queue.queue_name(), schedule.name()),
                dedup: caps.dedup,
                schedule,
                queue,
                handled: None,
                lease: None,
            });
        }
        Ok(Scheduler {
            entries,
            lock: self.lock,
            lock_ttl: self.lock_ttl,
            clock: self.clock,
            holder: self.holder,
        })
    }
}

impl Scheduler {
    /// Pushes what is due by the clock's now: see [`Scheduler::tick_at`].
    pub async fn tick(&mut self) -> Result<SchedulerReport, ScheduleError> {
        let now = self.clock.now();
        self.tick_at(now).await
    }

    /// Pushes, for each schedule, the slots due at `now` that this instance
    /// has not handled yet, as the missed-slot policy says. One step of
    /// [`Scheduler::run`], public for callers that drive their own clock
    /// (and tests). On an error the other schedules are still ticked, and
    /// the failed slots are tried again at the next tick.
    pub async fn tick_at(&mut self, now: SystemTime) -> Result<SchedulerReport, ScheduleError> {
        match self.tick_all(now).await {
            (report, None) => Ok(report),
            (_, Some(e)) => Err(e),
        }
    }

    /// Ticks every schedule; the counts of all, and the first error.
    async fn tick_all(&mut self, now: SystemTime) -> (SchedulerReport, Option<ScheduleError>) {
        let mut report = SchedulerReport::default();
        let Ok(now) = Timestamp::try_from(now) else {
            report.errors += 1;
            return (report, Some(ScheduleError::Clock));
        };
        let mut first_error = None;
        for i in 0..self.entries.len() {
            match self.tick_entry(i, now).await {
                Ok(r) => report.add(r),
                Err(e) => {
                    report.errors += 1;
                    first_error.get_or_insert(e);
                }
            }
        }
        (report, first_error)
    }

    async fn tick_entry(
        &mut self,
        i: usize,
        now: Timestamp,
    ) -> Result<SchedulerReport, ScheduleError> {
        let lock = self.lock.clone();
        let entry = &mut self.entries[i];
        let name = entry.schedule.name().to_owned();
        let lock_error = |source| ScheduleError::Lock {
            name: name.clone(),
            source,
        };
        if let Some(lock) = &lock {
            match lock
                .acquire(&entry.key, &self.holder, self.lock_ttl)
                .await
                .map_err(lock_error)?
            {
                None => {
                    if entry.lease.take().is_some() {
                        info!(schedule = %name, "lost the schedule lock");
                    }
                    entry.handled = None;
                    return Ok(SchedulerReport::default());
                }
                Some(lease) => {
                    if entry.lease.as_ref().map(|l| l.token) != Some(lease.token) {
                        info!(schedule = %name, token = lease.token, "took the schedule lock");
                        // Continue where the previous holder stopped.
                        entry.handled = lease.handled.and_then(|t| Timestamp::try_from(t).ok());
                    }
                    entry.lease = Some(lease);
                }
            }
        }
        let plan = plan::plan(&entry.schedule, entry.handled, now, entry.reach)?;
        let mut report = SchedulerReport {
            skipped: plan.skipped.len() as u64,
            ..SchedulerReport::default()
        };
        entry.counters.skipped.increment(report.skipped);
        if let (Some(first), Some(last)) = (plan.skipped.first(), plan.skipped.last()) {
            warn!(
                schedule = %name,
                "skipped {} missed slot(s) from {} to {} (missed-slot policy {:?})",
                plan.skipped.len(),
                Slot::utc_text(*first),
                Slot::utc_text(*last),
                entry.schedule.missed_policy()
            );
        }
        let mut done = None;
        for slot in &plan.push {
            let at = slot.timestamp();
            let mut message = entry.schedule.message(at);
            if entry.dedup {
                message.dedup_id = Some(format!("{name}@{}", Slot::utc_text(at)));
            }
            let pushed = if entry.dedup {
                entry.queue.push_unique(message).await
            } else {
                entry.queue.push(message).await.map(Pushed::Enqueued)
            };
            match pushed {
                Ok(Pushed::Enqueued(id)) => {
                    report.enqueued += 1;
                    entry.counters.enqueued.increment(1);
                    done = Some(at);
                    debug!(schedule = %name, slot = %Slot::utc_text(at), %id, "pushed a slot");
                }
                Ok(Pushed::Duplicate(id)) => {
                    report.duplicates += 1;
                    entry.counters.duplicates.increment(1);
                    done = Some(at);
                    debug!(schedule = %name, slot = %Slot::utc_text(at), %id, "slot already pushed");
                }
                Err(source) => {
                    // The slots before this one (pushed or skipped) are
                    // done; this one and the rest are tried again at the
                    // next tick.
                    if let Some(h) = done.or(plan.skipped.last().copied()) {
                        entry.handled = Some(h);
                    }
                    return Err(ScheduleError::Push {
                        name,
                        slot: Slot::utc_text(at),
                        source,
                    });
                }
            }
        }
        entry.handled = Some(now);
        if let (Some(lock), Some(lease)) = (&lock, &entry.lease) {
            let kept = lock
                .record(&entry.key, lease, SystemTime::from(now))
                .await
                .map_err(lock_error)?;
            if !kept {
                info!(schedule = %name, "the schedule lock ran out while pushing");
                entry.lease = None;
                entry.handled = None;
            }
        }
        Ok(report)
    }

    /// Ticks at every slot until `shutdown` is cancelled (pass
    /// [`shutdown_on_signal()`](crate::shutdown_on_signal), or the token the
    /// worker runs with), then gives up the locks it holds. A failed tick is
    /// logged and retried after a pause (1 s, doubling to 30 s). A push in
    /// progress at shutdown is finished first.
    pub async fn run(mut self, shutdown: CancellationToken) -> SchedulerReport {
        let mut total = SchedulerReport::default();
        let mut pause = Duration::from_secs(1);
        while !shutdown.is_cancelled() {
            let now = self.clock.now();
            let mut retry = None;
            let (report, error) = self.tick_all(now).await;
            total.add(report);
            match error {
                None => pause = Duration::from_secs(1),
                Some(e) => {
                    warn!("schedule tick failed, trying again in {pause:?}: {e}");
                    retry = Some(pause);
                    pause = (pause * 2).min(Duration::from_secs(30));
                }
            }
            let wait = match self.next_wake(now) {
                Ok(at) => {
                    let until = at.duration_since(self.clock.now()).unwrap_or_default();
                    retry.map_or(until, |r| r.min(until))
                }
                Err(e) => {
                    warn!("cannot compute the next slot: {e}");
                    retry.unwrap_or(pause)
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.cancelled() => {}
            }
        }
        if let Some(lock) = &self.lock {
            for entry in &self.entries {
                if entry.lease.is_some()
                    && let Err(e) = lock.release(&entry.key, &self.holder).await
                {
                    warn!(
                        schedule = entry.schedule.name(),
                        "releasing the schedule lock failed: {e}"
                    );
                }
            }
        }
        total
    }

    /// The earliest next slot after `now` of any schedule, or the lease
    /// renewal, whichever comes first.
    fn next_wake(&self, now: SystemTime) -> Result<SystemTime, ScheduleError> {
        let at = Timestamp::try_from(now).map_err(|_| ScheduleError::Clock)?;
        let mut wake = now + Duration::from_secs(24 * 3600);
        for entry in &self.entries {
            let next = entry.schedule.next_after(&entry.schedule.zoned(at))?;
            wake = wake.min(SystemTime::from(next.timestamp()));
        }
        if self.lock.is_some() {
            wake = wake.min(now + self.lock_ttl / 3);
        }
        Ok(wake)
    }
}
