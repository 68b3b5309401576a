//! `flextide work --exec CMD`: a worker that runs a command per message.

mod exec;
mod group;
mod signals;

use std::{process::ExitCode, sync::Arc, time::Duration};

use clap::Args;
use flextide_queue::{QueueProvider, QueueStats};
use flextide_worker::{ProgressSnapshot, RetryPolicy, Task, Worker, handler_fn};
use indicatif::{ProgressBar, ProgressStyle};
use tokio_util::sync::CancellationToken;

use super::Error;
use exec::Exec;

#[derive(Debug, Args)]
pub(crate) struct WorkArgs {
    /// Shell command run per message (`sh -c`, in a process group of its
    /// own), with the payload on stdin and FLEXTIDE_MESSAGE_ID,
    /// FLEXTIDE_ATTEMPT and FLEXTIDE_QUEUE set. Exit 0 acknowledges, 65
    /// (EX_DATAERR) dead-letters at once, 126/127 (cannot run, not found)
    /// stop the worker as a setup error, anything else retries.
    #[arg(long, value_name = "CMD")]
    exec: String,
    /// Commands running at once.
    #[arg(long, short = 'c', default_value_t = 4)]
    concurrency: usize,
    /// Attempts before a failing message is dead-lettered.
    #[arg(long, default_value_t = 5)]
    max_attempts: u32,
    /// First retry delay in seconds (doubling, with full jitter, up to 5 minutes).
    #[arg(long, default_value_t = 1.0)]
    backoff: f64,
    /// Give up on a command after this many seconds: its process group is
    /// killed and the message retried like a failure (default: no limit).
    #[arg(long, value_name = "SECONDS")]
    timeout: Option<f64>,
    /// On Ctrl-C or SIGTERM, how long running commands get after SIGTERM
    /// before SIGKILL; a command stopped this way is given back, not
    /// counted as failed.
    #[arg(long, value_name = "SECONDS", default_value_t = 10.0)]
    grace: f64,
    /// Stop once nothing is running and the queue has nothing ready, in flight
    /// or delayed for this many seconds (default: run until Ctrl-C). Messages
    /// this run parked (failed for good on a queue without dead letters,
    /// such as an SQS queue without a redrive policy) do not count.
    #[arg(long, value_name = "SECONDS")]
    until_idle: Option<f64>,
}

fn seconds(flag: &str, value: f64) -> Result<Duration, Error> {
    if value.is_finite() && value >= 0.0 {
        Ok(Duration::from_secs_f64(value))
    } else {
        Err(format!("{flag} {value} is not a number of seconds").into())
    }
}

pub(crate) async fn run(queue: Arc<dyn QueueProvider>, args: WorkArgs) -> Result<ExitCode, Error> {
    if args.concurrency == 0 || args.max_attempts == 0 {
        return Err("--concurrency and --max-attempts must be at least 1".into());
    }
    let backoff = seconds("--backoff", args.backoff)?;
    let grace = seconds("--grace", args.grace)?;
    let timeout = args.timeout.map(|t| seconds("--timeout", t)).transpose()?;
    exec::check_command(&args.exec)?;

    let shutdown = CancellationToken::new();
    let exec = Arc::new(Exec::new(&args.exec, grace, shutdown.clone()));
    let stopped = signals::watch(shutdown.clone(), exec.running());
    let handler = {
        let exec = exec.clone();
        handler_fn(move |task: Task| {
            let exec = exec.clone();
            async move { exec.run(task).await }
        })
    };
    let mut builder = Worker::builder(queue.clone())
        .concurrency(args.concurrency)
        // Commands stopped by a shutdown are given back once their grace is over.
        .shutdown_timeout(grace + Duration::from_secs(2))
        .retry(
            RetryPolicy::default()
                .base(backoff)
                .cap(Duration::from_secs(300))
                .max_attempts(args.max_attempts),
        );
    if let Some(t) = timeout {
        builder = builder.handler_timeout(t);
    }
    let worker = builder.build(handler);
    let progress = worker.progress();
    let running = tokio::spawn(worker.run(shutdown.clone()));

    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {msg}")
            .expect("valid template"),
    );
    let mut idle_since = tokio::time::Instant::now();
    while !running.is_finished() {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let s = progress.snapshot();
        bar.set_message(format!(
            "{}: done {} · failed {} · retried {} · dead {} · running {}",
            queue.queue_name(),
            s.processed,
            s.failed,
            s.retried,
            s.dead_lettered,
            s.in_flight
        ));
        if let Some(idle) = args.until_idle
            && !shutdown.is_cancelled()
        {
            if s.in_flight > 0 {
                idle_since = tokio::time::Instant::now();
            } else if idle_since.elapsed().as_secs_f64() >= idle {
                let stats = queue.stats().await?;
                if is_idle(&stats, &s) {
                    shutdown.cancel();
                } else {
                    idle_since = tokio::time::Instant::now();
                }
            }
        }
    }
    bar.finish_and_clear();
    let report = running
        .await
        .map_err(|e| format!("the worker failed: {e}"))?;
    println!(
        "processed {} · failed {} · retried {} · dead-lettered {} · given back at shutdown {} · {:.1}s",
        report.processed,
        report.failed,
        report.retried,
        report.dead_lettered,
        report.nacked_at_shutdown,
        report.elapsed.as_secs_f64()
    );
    if let Some(e) = report.error {
        return Err(format!("the worker stopped on an error: {e}").into());
    }
    if let Some(why) = exec.setup_error() {
        return Err(why.into());
    }
    Ok(match stopped.exit_status() {
        Some(status) => ExitCode::from(status),
        None => ExitCode::SUCCESS,
    })
}

/// Whether `--until-idle` may stop (the caller checked that no command
/// runs): the queue has nothing ready, delayed or in flight. Messages this run parked
/// (held back with a long delay because the queue has no dead letters) are
/// given up on, and leave the in-flight count: on SQS a parked message is
/// in flight (hidden by its visibility timeout) for 15 minutes, then comes
/// back, fails again and is parked again, so counting it would never stop.
fn is_idle(queue: &QueueStats, worker: &ProgressSnapshot) -> bool {
    queue.depth == 0 && queue.delayed == 0 && queue.in_flight.saturating_sub(worker.parked) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(depth: u64, in_flight: u64, delayed: u64) -> QueueStats {
        let mut s = QueueStats::default();
        s.depth = depth;
        s.in_flight = in_flight;
        s.delayed = delayed;
        s
    }

    fn worker(parked: u64) -> ProgressSnapshot {
        ProgressSnapshot {
            parked,
            ..ProgressSnapshot::default()
        }
    }

    #[test]
    fn parked_messages_do_not_keep_the_worker_running() {
        assert!(is_idle(&stats(0, 0, 0), &worker(0)));
        // SQS without a redrive policy: the parked message is in flight.
        assert!(is_idle(&stats(0, 1, 0), &worker(1)));
        assert!(!is_idle(&stats(0, 2, 0), &worker(1)), "another in flight");
        assert!(!is_idle(&stats(1, 1, 0), &worker(1)), "one is ready");
        assert!(!is_idle(&stats(0, 0, 1), &worker(0)), "a retry is delayed");
        assert!(!is_idle(&stats(0, 1, 0), &worker(0)), "one is in flight");
    }
}
