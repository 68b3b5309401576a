//! `flextide work --exec CMD`: a worker that runs a command per message.

use std::{process::ExitCode, process::Stdio, sync::Arc, time::Duration};

use clap::Args;
use flextide_queue::QueueProvider;
use flextide_worker::{HandlerError, RetryPolicy, Task, Worker, handler_fn, shutdown_on_signal};
use indicatif::{ProgressBar, ProgressStyle};
use tokio::io::AsyncWriteExt;

use super::Error;

/// Exit status meaning "this message is bad; do not retry" (sysexits' EX_DATAERR).
const EX_DATAERR: i32 = 65;

#[derive(Debug, Args)]
pub(crate) struct WorkArgs {
    /// Shell command run per message (`sh -c`), with the payload on stdin and
    /// FLEXTIDE_MESSAGE_ID, FLEXTIDE_ATTEMPT and FLEXTIDE_QUEUE set.
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
    /// Stop once nothing is running and the queue has nothing ready, in flight
    /// or delayed for this many seconds (default: run until Ctrl-C).
    #[arg(long, value_name = "SECONDS")]
    until_idle: Option<f64>,
}

pub(crate) async fn run(queue: Arc<dyn QueueProvider>, args: WorkArgs) -> Result<ExitCode, Error> {
    if args.concurrency == 0 || args.max_attempts == 0 {
        return Err("--concurrency and --max-attempts must be at least 1".into());
    }
    if !(args.backoff.is_finite() && args.backoff >= 0.0) {
        return Err(format!("--backoff {} is not a number of seconds", args.backoff).into());
    }
    let command: Arc<str> = args.exec.clone().into();
    let handler = handler_fn(move |task: Task| {
        let command = command.clone();
        async move { exec(&command, task).await }
    });
    let worker = Worker::builder(queue.clone())
        .concurrency(args.concurrency)
        .retry(
            RetryPolicy::default()
                .base(Duration::from_secs_f64(args.backoff))
                .cap(Duration::from_secs(300))
                .max_attempts(args.max_attempts),
        )
        .build(handler);
    let progress = worker.progress();
    let shutdown = shutdown_on_signal();
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
        if let Some(idle) = args.until_idle {
            if s.in_flight > 0 {
                idle_since = tokio::time::Instant::now();
            } else if idle_since.elapsed().as_secs_f64() >= idle {
                let stats = queue.stats().await?;
                if stats.depth == 0 && stats.in_flight == 0 && stats.delayed == 0 {
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
    match report.error {
        Some(e) => Err(format!("the worker stopped on an error: {e}").into()),
        None => Ok(ExitCode::SUCCESS),
    }
}

/// Runs the command for one message; its exit status decides the outcome.
async fn exec(command: &str, task: Task) -> Result<(), HandlerError> {
    let mut child = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(command)
        .env("FLEXTIDE_MESSAGE_ID", task.id().as_str())
        .env("FLEXTIDE_ATTEMPT", task.attempt().to_string())
        .env("FLEXTIDE_QUEUE", task.queue())
        .stdin(Stdio::piped())
        .stdout(Stdio::inherit())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| HandlerError::retryable(format!("cannot start `sh -c {command}`: {e}")))?;
    let mut stdin = child.stdin.take().expect("piped");
    let payload = task.payload().to_vec();
    // A command that ignores its input closes the pipe early: not an error.
    let feed = async move {
        let _ = stdin.write_all(&payload).await;
    };
    let wait = child.wait_with_output();
    let (_, output) = tokio::select! {
        out = async { tokio::join!(feed, wait) } => out,
        _ = task.cancelled() => return Err(HandlerError::retryable("cancelled: lease lost or shutting down")),
    };
    let output = output
        .map_err(|e| HandlerError::retryable(format!("waiting for the command failed: {e}")))?;
    if output.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    let tail: String = stderr
        .trim()
        .lines()
        .last()
        .unwrap_or("")
        .chars()
        .take(300)
        .collect();
    let why = match output.status.code() {
        Some(code) => format!("command exited with status {code}: {tail}"),
        None => format!("command was killed by a signal: {tail}"),
    };
    if output.status.code() == Some(EX_DATAERR) {
        Err(HandlerError::fatal(why))
    } else {
        Err(HandlerError::retryable(why))
    }
}
