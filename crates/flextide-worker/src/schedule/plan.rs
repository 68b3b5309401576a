//! Which slots to push at a given moment: the missed-slot policies, as a
//! pure function of the schedule, the last moment handled and now.

use std::time::{Duration, SystemTime};

use jiff::{SignedDuration, Timestamp, Zoned};

use super::{Schedule, ScheduleError};

/// What an instance does with slots that passed, more than the
/// [grace](Schedule::grace) ago, while no instance was pushing them (all
/// were down, or this one is starting).
///
/// The scheduler keeps no state outside the queue: an instance only knows
/// the moment up to which it handled the slots itself, and at start not even
/// that. So a starting instance considers the slots within the look-back
/// before now ([`Schedule::look_back`]; only the grace under `Skip`), and
/// leaves it to the queue's dedup to drop the ones another instance, or
/// this one before a restart, already pushed. Slots older than the
/// look-back are never pushed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum MissedSlots {
    /// Push none of them; the next slot is pushed when it comes.
    #[default]
    Skip,
    /// Push the latest missed slot only (its own slot time and dedup id, so
    /// every instance picks the same one).
    RunOnce,
    /// Push the latest `max` missed slots, oldest first; older ones are
    /// skipped (and logged).
    CatchUp {
        /// At most this many missed slots are pushed.
        max: usize,
    },
}

/// One slot of a schedule: a moment, shown in UTC and in the schedule's zone.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Slot {
    at: Zoned,
}

impl Slot {
    pub(crate) fn new(at: Zoned) -> Self {
        Slot { at }
    }

    /// The moment.
    pub fn time(&self) -> SystemTime {
        SystemTime::from(self.at.timestamp())
    }

    /// RFC 3339 in UTC, as in the slot header and the dedup id:
    /// `2026-11-30T02:00:00Z`.
    pub fn utc(&self) -> String {
        Slot::utc_text(self.at.timestamp())
    }

    /// The wall-clock time in the schedule's zone, with offset and zone:
    /// `2026-03-29T03:00:00+02:00[Europe/Berlin]`.
    pub fn local(&self) -> String {
        self.at.to_string()
    }

    pub(crate) fn utc_text(at: Timestamp) -> String {
        // Whole seconds: cron slots have no fraction.
        at.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
    }
}

/// What to do at one tick.
#[derive(Debug, Default)]
pub(crate) struct Plan {
    /// Slots to push, oldest first.
    pub(crate) push: Vec<Zoned>,
    /// Missed slots the policy leaves out.
    pub(crate) skipped: Vec<Timestamp>,
}

/// How late after its time a slot of `schedule` may still be pushed.
pub(crate) fn reach(schedule: &Schedule, look_back: Duration) -> Duration {
    match schedule.missed_policy() {
        MissedSlots::Skip => schedule.grace_period(),
        MissedSlots::RunOnce | MissedSlots::CatchUp { .. } => {
            schedule.grace_period().max(look_back)
        }
    }
}

/// The slots in `(handled, now]` (`handled`: the moment up to which this
/// instance handled the slots; `None` at start), never older than
/// `reach`, split by the policy.
pub(crate) fn plan(
    schedule: &Schedule,
    handled: Option<Timestamp>,
    now: Timestamp,
    reach: Duration,
) -> Result<Plan, ScheduleError> {
    let reach = SignedDuration::try_from(reach).unwrap_or(SignedDuration::MAX);
    let grace = SignedDuration::try_from(schedule.grace_period()).unwrap_or(SignedDuration::MAX);
    let horizon = now.checked_sub(reach).unwrap_or(Timestamp::MIN);
    let start = match handled {
        Some(h) if h > horizon => h,
        _ => horizon,
    };
    let mut on_time = Vec::new();
    let mut missed = Vec::new();
    let mut at = schedule.zoned(start);
    loop {
        at = schedule.next_after(&at)?;
        let t = at.timestamp();
        if t > now {
            break;
        }
        if now.duration_since(t) <= grace {
            on_time.push(at.clone());
        } else {
            missed.push(at.clone());
        }
    }
    let keep = match schedule.missed_policy() {
        MissedSlots::Skip => 0,
        MissedSlots::RunOnce => 1,
        MissedSlots::CatchUp { max } => max,
    };
    let split = missed.len().saturating_sub(keep);
    let mut plan = Plan {
        skipped: missed[..split].iter().map(Zoned::timestamp).collect(),
        push: missed.split_off(split),
    };
    plan.push.extend(on_time);
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn times(plan: &Plan) -> Vec<String> {
        plan.push
            .iter()
            .map(|z| Slot::utc_text(z.timestamp()))
            .collect()
    }

    const HOUR: Duration = Duration::from_secs(3600);

    #[test]
    fn on_time_slots_are_pushed_under_every_policy() {
        for policy in [
            MissedSlots::Skip,
            MissedSlots::RunOnce,
            MissedSlots::CatchUp { max: 2 },
        ] {
            let s = Schedule::new("s", "*/10 * * * * *").unwrap().missed(policy);
            let p = plan(
                &s,
                Some(ts("2026-01-01T00:00:00Z")),
                ts("2026-01-01T00:00:20Z"),
                HOUR,
            )
            .unwrap();
            assert_eq!(times(&p), ["2026-01-01T00:00:10Z", "2026-01-01T00:00:20Z"]);
            assert!(p.skipped.is_empty());
        }
    }

    #[test]
    fn missed_slots_follow_the_policy_within_the_reach() {
        // Every minute; started at 00:10:30 with nothing handled, a 5 min
        // look-back and the default 60 s grace: 00:06..00:09 are missed,
        // 00:10 is on time, 00:05 and before are out of reach.
        let now = ts("2026-01-01T00:10:30Z");
        let reach = Duration::from_secs(300);
        let cases = [
            (MissedSlots::Skip, vec!["10"], 0),
            (MissedSlots::RunOnce, vec!["09", "10"], 3),
            (MissedSlots::CatchUp { max: 2 }, vec!["08", "09", "10"], 2),
            (
                MissedSlots::CatchUp { max: 10 },
                vec!["06", "07", "08", "09", "10"],
                0,
            ),
        ];
        for (policy, want, skipped) in cases {
            let s = Schedule::new("s", "* * * * *").unwrap().missed(policy);
            let p = plan(&s, None, now, super::reach(&s, reach)).unwrap();
            let want: Vec<String> = want
                .iter()
                .map(|m| format!("2026-01-01T00:{m}:00Z"))
                .collect();
            assert_eq!(times(&p), want, "{policy:?}");
            // Skip looks back only the grace, so it never sees the rest.
            assert_eq!(p.skipped.len(), skipped, "{policy:?}");
        }
    }

    #[test]
    fn a_handled_moment_is_not_looked_at_again() {
        let s = Schedule::new("s", "* * * * *")
            .unwrap()
            .missed(MissedSlots::CatchUp { max: 10 });
        let p = plan(
            &s,
            Some(ts("2026-01-01T00:09:00Z")),
            ts("2026-01-01T00:10:30Z"),
            HOUR,
        )
        .unwrap();
        assert_eq!(times(&p), ["2026-01-01T00:10:00Z"]);
    }
}
