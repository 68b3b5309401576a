//! Periodic schedules: cron expressions with seconds and time zones, each
//! slot pushed as one message, by any number of scheduler instances
//! without a leader (on queues with dedup) or behind a lease-based lock.
//!
//! ```no_run
//! use std::sync::Arc;
//! use flextide_queue_core::{QueueOptions, QueueProvider};
//! use flextide_queue_memory::MemoryQueue;
//! use flextide_worker::{MissedSlots, Schedule, Scheduler, shutdown_on_signal};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let queue: Arc<dyn QueueProvider> = Arc::new(MemoryQueue::new("reports", QueueOptions::default())?);
//! let nightly = Schedule::new("nightly-report", "0 30 2 * * *")?
//!     .time_zone("Europe/Berlin")?
//!     .missed(MissedSlots::RunOnce);
//! let scheduler = Scheduler::builder().schedule(nightly, queue).build()?;
//! scheduler.run(shutdown_on_signal()).await;
//! # Ok(()) }
//! ```

mod clock;
mod definition;
mod error;
mod lock;
mod plan;
mod scheduler;

pub use clock::{Clock, SystemClock, TokioClock};
pub use definition::{DEFAULT_GRACE, SCHEDULE_HEADER, SLOT_HEADER, Schedule};
pub use error::ScheduleError;
pub use lock::{Lease, MemoryScheduleLock, ScheduleLock};
pub use plan::{MissedSlots, Slot};
pub use scheduler::{DEFAULT_LOCK_TTL, Scheduler, SchedulerBuilder, SchedulerReport};
