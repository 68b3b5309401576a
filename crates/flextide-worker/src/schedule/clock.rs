//! Where a scheduler reads the time.

use std::{fmt, time::SystemTime};

/// The wall clock a [`Scheduler`](crate::Scheduler) computes slots with.
/// Sleeps between slots are Tokio sleeps for the difference.
pub trait Clock: Send + Sync + fmt::Debug {
    /// The current time.
    fn now(&self) -> SystemTime;
}

/// The system's clock: what every instance should use in production (keep
/// the hosts' clocks in sync with NTP: a slot's time is read on each host).
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// A wall clock that starts at a chosen time and advances with Tokio's
/// clock, so a test on a paused runtime (`#[tokio::test(start_paused =
/// true)]`) runs a simulated day in milliseconds.
#[derive(Debug, Clone)]
pub struct TokioClock {
    wall: SystemTime,
    start: tokio::time::Instant,
}

impl TokioClock {
    /// A clock reading `wall` now. Call it inside a Tokio runtime.
    pub fn starting_at(wall: SystemTime) -> Self {
        TokioClock {
            wall,
            start: tokio::time::Instant::now(),
        }
    }
}

impl Clock for TokioClock {
    fn now(&self) -> SystemTime {
        self.wall + self.start.elapsed()
    }
}
