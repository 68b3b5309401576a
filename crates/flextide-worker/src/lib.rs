#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

mod breaker;
mod error;
mod gate;
mod handler;
mod metrics;
mod pool;
mod progress;
mod retry;
mod schedule;
mod shutdown;
mod task;
mod worker;

pub use breaker::CircuitBreaker;
pub use error::{BoxError, ErrorKind, HandlerError, ResultExt};
pub use handler::{HandlerFn, handler_fn};
#[cfg(feature = "prometheus")]
pub use metrics::install_prometheus;
pub use pool::{Autoscale, WorkerPool};
pub use progress::{BreakerState, Progress, ProgressSnapshot, WorkerReport};
pub use retry::{Jitter, RetryPolicy};
pub use schedule::{
    Clock, DEFAULT_GRACE, DEFAULT_LOCK_TTL, Lease, MemoryScheduleLock, MissedSlots,
    SCHEDULE_HEADER, SLOT_HEADER, Schedule, ScheduleError, ScheduleLock, Scheduler,
    SchedulerBuilder, SchedulerReport, Slot, SystemClock, TokioClock,
};
pub use shutdown::{shutdown_on_signal, wait_for_signal};
pub use task::Task;
pub use tokio_util::sync::CancellationToken;
pub use worker::{Worker, WorkerBuilder};
