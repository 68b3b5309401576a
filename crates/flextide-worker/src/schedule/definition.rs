//! One schedule: its cron expression, time zone, message and missed-slot policy.

use std::{fmt, time::Duration, time::SystemTime};

use bytes::Bytes;
use croner::{
    Cron,
    parser::{CronParser, Seconds, Year},
};
use flextide_queue_core::{Headers, Message};
use jiff::{Timestamp, Zoned, tz::TimeZone};

use super::{MissedSlots, ScheduleError, Slot};

/// The default [`Schedule::grace`]: a slot pushed at most this late is on time.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(60);

/// Header carrying the schedule's name on every message it pushes.
pub const SCHEDULE_HEADER: &str = "flextide-schedule";
/// Header carrying the slot's time, RFC 3339 in UTC (`2026-11-30T02:00:00Z`).
pub const SLOT_HEADER: &str = "flextide-schedule-slot";

/// A periodic task: a cron expression evaluated in a time zone, and the
/// message pushed once per slot.
///
/// ```
/// use flextide_worker::{MissedSlots, Schedule};
/// let nightly = Schedule::new("nightly-report", "0 30 2 * * *")?
///     .time_zone("Europe/Berlin")?
///     .payload(r#"{"report":"daily"}"#)
///     .header("content-type", "application/json")
///     .missed(MissedSlots::RunOnce);
/// assert_eq!(nightly.name(), "nightly-report");
/// # Ok::<_, flextide_worker::ScheduleError>(())
/// ```
///
/// Cron fields: `sec min hour day-of-month month day-of-week`; the seconds
/// field may be left out (5 fields: second 0). `*`, `,`, `-`, `/`, names
/// (`MON`, `JAN`), `L`, `W`, `#` and `@daily`-style nicknames are
/// understood (croner's syntax). DST follows the Open Cron Pattern
/// Specification: a fixed time that falls in a spring-forward gap runs at
/// the first valid time after it on that day; one in a fall-back fold runs
/// once, in the first pass; wildcard and step fields run in every real
/// occurrence.
#[derive(Clone)]
pub struct Schedule {
    name: String,
    expression: String,
    cron: Cron,
    zone_name: String,
    zone: TimeZone,
    payload: Bytes,
    headers: Headers,
    missed: MissedSlots,
    grace: Duration,
    look_back: Option<Duration>,
}

impl fmt::Debug for Schedule {
    // The payload may hold customer data: its size only.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Schedule")
            .field("name", &self.name)
            .field("expression", &self.expression)
            .field("time_zone", &self.zone_name)
            .field("payload_len", &self.payload.len())
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .field("missed", &self.missed)
            .field("grace", &self.grace)
            .field("look_back", &self.look_back)
            .finish()
    }
}

impl Schedule {
    /// A schedule named `name` (unique among the schedules pushing to one
    /// queue: it makes the dedup ids) on the cron `expression`, in UTC,
    /// with an empty payload and the [`MissedSlots::Skip`] policy.
    ///
    /// Fails on a name that cannot be part of a dedup id (1 to 100
    /// printable ASCII characters, no spaces: SQS FIFO takes 128) and on an
    /// expression that does not parse or never matches (`0 0 30 2 *`).
    pub fn new(
        name: impl Into<String>,
        expression: impl Into<String>,
    ) -> Result<Self, ScheduleError> {
        let name = name.into();
        let expression = expression.into();
        if name.is_empty() || name.len() > 100 || !name.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(ScheduleError::Name { name });
        }
        // Year disallowed: with both optional, six fields would be ambiguous.
        let parser = CronParser::builder()
            .seconds(Seconds::Optional)
            .year(Year::Disallowed)
            .build();
        let cron = match parser.parse(&expression) {
            Ok(cron) => cron,
            Err(source) => {
                return Err(ScheduleError::Cron {
                    name,
                    expression,
                    source,
                });
            }
        };
        let schedule = Schedule {
            name,
            expression,
            cron,
            zone_name: "UTC".into(),
            zone: TimeZone::UTC,
            payload: Bytes::new(),
            headers: Headers::new(),
            missed: MissedSlots::default(),
            grace: DEFAULT_GRACE,
            look_back: None,
        };
        // A pattern that never matches (30 February) fails here, not at run.
        if let Err(source) = schedule
            .cron
            .find_next_occurrence(&Zoned::now().with_time_zone(TimeZone::UTC), false)
        {
            return Err(ScheduleError::Cron {
                name: schedule.name,
                expression: schedule.expression,
                source,
            });
        }
        Ok(schedule)
    }

    /// Evaluates the expression in this IANA time zone (`Europe/Berlin`,
    /// `America/New_York`, `UTC`) instead of UTC.
    pub fn time_zone(mut self, zone: &str) -> Result<Self, ScheduleError> {
        match jiff::tz::db().get(zone) {
            Ok(tz) => {
                self.zone = tz;
                self.zone_name = zone.to_owned();
                Ok(self)
            }
            Err(_) => Err(ScheduleError::TimeZone {
                name: self.name,
                zone: zone.to_owned(),
            }),
        }
    }

    /// The payload of every message this schedule pushes.
    pub fn payload(mut self, payload: impl Into<Bytes>) -> Self {
        self.payload = payload.into();
        self
    }

    /// A header of every message this schedule pushes (beside
    /// [`SCHEDULE_HEADER`] and [`SLOT_HEADER`], which it always sets).
    pub fn header(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.insert(key.into(), value.into());
        self
    }

    /// What to do with slots missed while no instance was running: see
    /// [`MissedSlots`]. Default [`MissedSlots::Skip`].
    pub fn missed(mut self, policy: MissedSlots) -> Self {
        self.missed = policy;
        self
    }

    /// How late a slot may be pushed and still count as on time (the
    /// process was busy, a push was retried, the host slept briefly).
    /// Later slots are *missed* and follow the policy. Default 60 s.
    pub fn grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }

    /// How far back from now an instance looks for missed slots, under
    /// [`MissedSlots::RunOnce`] and [`MissedSlots::CatchUp`]: slots older
    /// than that are never pushed. Default: half the queue's dedup window
    /// (so that window, checked at start, always covers it, with room for
    /// clock skew between hosts); one hour on a queue without dedup.
    pub fn look_back(mut self, look_back: Duration) -> Self {
        self.look_back = Some(look_back);
        self
    }

    /// The name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The cron expression as given.
    pub fn expression(&self) -> &str {
        &self.expression
    }

    /// The time zone's name.
    pub fn time_zone_name(&self) -> &str {
        &self.zone_name
    }

    /// The missed-slot policy.
    pub fn missed_policy(&self) -> MissedSlots {
        self.missed
    }

    /// The grace (see [`Schedule::grace`]).
    pub fn grace_period(&self) -> Duration {
        self.grace
    }

    /// The look-back set with [`Schedule::look_back`], if any.
    pub fn look_back_period(&self) -> Option<Duration> {
        self.look_back
    }

    /// The `n` slots after `after`, in order.
    pub fn next_slots(&self, after: SystemTime, n: usize) -> Result<Vec<Slot>, ScheduleError> {
        let start = Timestamp::try_from(after).map_err(|_| ScheduleError::Clock)?;
        let mut at = start.to_zoned(self.zone.clone());
        let mut slots = Vec::with_capacity(n);
        for _ in 0..n {
            at = self.next_after(&at)?;
            slots.push(Slot::new(at.clone()));
        }
        Ok(slots)
    }

    /// The first slot strictly after `at` (in this schedule's zone). Pass
    /// the previous slot as it was returned to keep a DST fold's pass.
    pub(crate) fn next_after(&self, at: &Zoned) -> Result<Zoned, ScheduleError> {
        self.cron
            .find_next_occurrence(at, false)
            .map_err(|source| ScheduleError::Cron {
                name: self.name.clone(),
                expression: self.expression.clone(),
                source,
            })
    }

    /// `at` in this schedule's zone.
    pub(crate) fn zoned(&self, at: Timestamp) -> Zoned {
        at.to_zoned(self.zone.clone())
    }

    /// The dedup id of a slot: `<name>@<slot, RFC 3339 UTC>`.
    pub fn dedup_id(&self, slot: SystemTime) -> Result<String, ScheduleError> {
        let at = Timestamp::try_from(slot).map_err(|_| ScheduleError::Clock)?;
        Ok(format!("{}@{}", self.name, Slot::utc_text(at)))
    }

    /// The message for one slot (without the dedup id, which the scheduler
    /// sets where the queue deduplicates).
    pub(crate) fn message(&self, slot: Timestamp) -> Message {
        let mut headers = self.headers.clone();
        headers.insert(SCHEDULE_HEADER.into(), self.name.clone());
        headers.insert(SLOT_HEADER.into(), Slot::utc_text(slot));
        Message::new(self.payload.clone()).with_headers(headers)
    }
}
