//! `flextide-chaos consume`: a `flextide_worker::Worker` whose handler
//! appends the message's payload (its id) to a durable log before it
//! returns Ok, so the id is on disk before the message is acknowledged.
//! Optionally the first attempt of every k-th id hangs, to check that the
//! handler timeout hands it back for another try.

use std::{path::PathBuf, time::Duration};

use clap::Args;
use flextide_worker::{
    CancellationToken, HandlerError, ResultExt, RetryPolicy, Task, Worker, handler_fn,
};

use super::Target;
use crate::logs::DurableLog;

/// Arguments of `consume`.
#[derive(Debug, Args)]
pub(crate) struct Consume {
    #[command(flatten)]
    target: Target,
    /// The handled-ids log.
    #[arg(long)]
    handled: PathBuf,
    /// Handlers at once.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// The worker's handler timeout, in milliseconds.
    #[arg(long, default_value_t = 3000)]
    timeout_ms: u64,
    /// Time each handling takes, in milliseconds (so a backlog builds up
    /// and crashes find messages waiting in the queue).
    #[arg(long, default_value_t = 0)]
    work_ms: u64,
    /// The first attempt of every id divisible by this hangs (0: none).
    #[arg(long, default_value_t = 0)]
    hang_every: u64,
}

/// Stops the worker if the orchestrator dies without stopping it (it was
/// SIGKILLed itself): the worker's parent then changes.
fn stop_when_orphaned(shutdown: CancellationToken) {
    let parent = std::os::unix::process::parent_id();
    tokio::spawn(async move {
        while std::os::unix::process::parent_id() == parent {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        eprintln!("the orchestrator is gone; stopping");
        shutdown.cancel();
    });
}

/// Runs a worker until SIGTERM (or SIGKILL).
pub(crate) async fn run(args: Consume) -> Result<(), String> {
    let queue = args.target.open().await?;
    let log = DurableLog::open(&args.handled)?;
    let hang_every = args.hang_every;
    let work = Duration::from_millis(args.work_ms);
    let handler = handler_fn(move |task: Task| {
        let log = log.clone();
        async move {
            let text = String::from_utf8_lossy(task.payload()).replace('\n', "\\n");
            let hangs = hang_every > 0
                && task.attempt() == 1
                && text.parse::<u64>().is_ok_and(|id| id % hang_every == 0);
            if hangs {
                // Far past the timeout: the worker must give up on it.
                tokio::time::sleep(Duration::from_secs(3600)).await;
            }
            tokio::time::sleep(work).await;
            log.append(format!("{text}\n")).await.retryable()?;
            Ok::<_, HandlerError>(())
        }
    });
    let worker = Worker::builder(queue)
        .concurrency(args.concurrency)
        .prefetch(args.concurrency)
        .poll_wait(Duration::from_millis(500))
        .handler_timeout(Duration::from_millis(args.timeout_ms))
        .shutdown_timeout(Duration::from_secs(5))
        .retry(
            RetryPolicy::default()
                .base(Duration::from_millis(200))
                .cap(Duration::from_secs(2))
                .max_attempts(1000),
        )
        .build(handler);
    let shutdown = flextide_worker::shutdown_on_signal();
    stop_when_orphaned(shutdown.clone());
    let report = worker.run(shutdown).await;
    eprintln!("worker stopped: {report:?}");
    Ok(())
}
