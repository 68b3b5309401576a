//! `flextide demo`: the main job.
//!
//! Enqueues a realistic batch of workflow tasks — mostly fast steps, some
//! slow ones, flaky ones that fail a few times before succeeding, and poison
//! ones (a corrupt payload, a step that always fails) — then runs an
//! autoscaling worker pool over them with a live progress bar, and reports
//! throughput, latency percentiles, retries and the dead letters' reasons.

use std::{
    collections::BTreeMap,
    process::ExitCode,
    sync::{Arc, Mutex},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use clap::Args;
use flextide_queue::{Message, QueueError, QueueProvider};
use flextide_worker::{
    Autoscale, CancellationToken, HandlerError, RetryPolicy, Task, Worker, handler_fn,
};
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use rand::{Rng, SeedableRng, rngs::StdRng};
use serde::{Deserialize, Serialize};

use super::Error;

#[derive(Debug, Args)]
pub(crate) struct DemoArgs {
    /// How many workflow tasks to enqueue.
    #[arg(long, default_value_t = 2000)]
    tasks: usize,
    /// Concurrent handlers per worker.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Most workers the pool scales up to.
    #[arg(long, default_value_t = 4)]
    max_workers: usize,
    /// Attempts before a failing task is dead-lettered.
    #[arg(long, default_value_t = 4)]
    max_attempts: u32,
    /// Seed of the task mix, for a repeatable run.
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Give up and report after this many seconds.
    #[arg(long, default_value_t = 300)]
    timeout: u64,
}

/// What one sample task asks the handler to do.
#[derive(Debug, Serialize, Deserialize)]
struct Step {
    workflow: u64,
    kind: Kind,
    /// Milliseconds the step works.
    work_ms: u64,
    /// Attempts that fail before one succeeds (flaky steps).
    fail_times: u32,
    /// When it was pushed, in ms since the epoch (push-to-start latency).
    pushed_ms: u64,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "kebab-case")]
enum Kind {
    SendEmail,
    UpdateCrm,
    RenderReport,
    ChargeCard,
    SyncLedger,
}

/// What the handlers measured.
struct Measured {
    push_to_start: Histogram<u64>,
    handling: Histogram<u64>,
}

pub(crate) async fn run(queue_arg: Option<String>, args: DemoArgs) -> Result<ExitCode, Error> {
    if args.tasks == 0 || args.concurrency == 0 || args.max_workers == 0 || args.max_attempts == 0 {
        return Err(
            "--tasks, --concurrency, --max-workers and --max-attempts must be at least 1".into(),
        );
    }
    let mut config = super::config(queue_arg.clone())?;
    if queue_arg.is_none() && std::env::var_os("QUEUE_NAME").is_none() {
        config.queue_name = "flextide-demo".into();
    }
    // Short leases so a crashed demo's tasks come back quickly; the worker's
    // heartbeat keeps slow steps leased.
    config.options.lease = Duration::from_secs(10);
    let queue = flextide_queue::connect(&config).await?;
    let where_ = config.describe();
    eprintln!(
        "flextide demo: {} tasks on queue {:?} ({where_})",
        args.tasks,
        queue.queue_name()
    );

    // Start from an empty queue so the numbers describe this run only.
    ignore_unsupported(queue.purge().await)?;
    ignore_unsupported(queue.purge_dead_letters().await)?;

    let started = Instant::now();
    let expected_dead = enqueue(&queue, &args).await?;
    let pushed_in = started.elapsed();

    let measured = Arc::new(Mutex::new(Measured {
        push_to_start: Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid bounds"),
        handling: Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid bounds"),
    }));
    let handler = {
        let measured = measured.clone();
        handler_fn(move |task: Task| {
            let measured = measured.clone();
            async move { handle(task, &measured).await }
        })
    };
    let autoscale = Autoscale {
        check_interval: Duration::from_millis(500),
        cooldown: Duration::from_secs(1),
        scale_down_after: Duration::from_secs(3),
        ..Autoscale::new(1, args.max_workers)
    };
    let pool = Worker::builder(queue.clone())
        .concurrency(args.concurrency)
        .retry(
            RetryPolicy::default()
                .base(Duration::from_millis(20))
                .factor(2.0)
                .cap(Duration::from_millis(500))
                .max_attempts(args.max_attempts),
        )
        .build_pool(handler, autoscale);
    let progress = pool.progress();
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(pool.run(shutdown.clone()));

    let bar = ProgressBar::new(args.tasks as u64);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:40.cyan/blue} {pos}/{len} {per_sec:>10} {msg}",
        )
        .expect("valid template"),
    );
    let work_started = Instant::now();
    let deadline = work_started + Duration::from_secs(args.timeout);
    let mut timed_out = false;
    loop {
        let s = progress.snapshot();
        let done = s.processed + s.dead_lettered;
        bar.set_position(done);
        bar.set_message(format!(
            "retries {} · dead {} · running {} · workers {}",
            s.retried, s.dead_lettered, s.in_flight, s.workers
        ));
        if done >= args.tasks as u64 {
            break;
        }
        if Instant::now() >= deadline {
            timed_out = true;
            break;
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            _ = tokio::signal::ctrl_c() => { timed_out = true; break; }
        }
    }
    let worked_for = work_started.elapsed();
    bar.finish_and_clear();
    shutdown.cancel();
    let report = running
        .await
        .map_err(|e| format!("the worker pool failed: {e}"))?;

    let dead = ignore_unsupported(queue.dead_letters(1000).await)?.unwrap_or_default();
    let m = measured.lock().expect("not poisoned");
    print_summary(
        &args,
        &report,
        worked_for,
        pushed_in,
        &m,
        &dead,
        expected_dead,
        &where_,
    );
    if timed_out {
        eprintln!(
            "\nstopped before every task finished (timeout or Ctrl-C); unfinished tasks stay queued"
        );
        return Ok(ExitCode::FAILURE);
    }
    if let Some(error) = &report.error {
        return Err(format!("the worker stopped on an error: {error}").into());
    }
    Ok(ExitCode::SUCCESS)
}

fn ignore_unsupported<T>(r: Result<T, QueueError>) -> Result<Option<T>, QueueError> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(QueueError::Unsupported { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Pushes the sample tasks in batches; returns how many are poison.
async fn enqueue(queue: &Arc<dyn QueueProvider>, args: &DemoArgs) -> Result<usize, Error> {
    let mut rng = StdRng::seed_from_u64(args.seed);
    let bar = ProgressBar::new(args.tasks as u64);
    bar.set_style(
        ProgressStyle::with_template("enqueueing {bar:40} {pos}/{len}").expect("valid template"),
    );
    let mut poison = 0;
    let mut batch = Vec::with_capacity(500);
    for i in 0..args.tasks {
        let roll: f64 = rng.random();
        let workflow = 1000 + (i as u64) / 5;
        let pushed_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        let message = if roll < 0.02 {
            // A corrupt payload: no retry can help, so it is dead-lettered at once.
            poison += 1;
            Message::new(format!(
                "{{\"workflow\": {workflow}, \"kind\": \"charge-card\", truncated"
            ))
            .with_header(flextide_queue::CONTENT_TYPE, "application/json")
        } else {
            let (kind, work_ms, fail_times) = if roll < 0.04 {
                poison += 1;
                (Kind::SyncLedger, 1, u32::MAX) // the ledger rejects it every time
            } else if roll < 0.14 {
                (
                    Kind::ChargeCard,
                    rng.random_range(2..10),
                    rng.random_range(1..args.max_attempts.max(2)),
                )
            } else if roll < 0.24 {
                (Kind::RenderReport, rng.random_range(50..250), 0)
            } else if roll < 0.62 {
                (Kind::SendEmail, rng.random_range(0..3), 0)
            } else {
                (Kind::UpdateCrm, rng.random_range(0..5), 0)
            };
            Message::json(&Step {
                workflow,
                kind,
                work_ms,
                fail_times,
                pushed_ms,
            })?
        };
        batch.push(message.with_header("x-workflow", workflow.to_string()));
        if batch.len() == 500 || i + 1 == args.tasks {
            let n = batch.len() as u64;
            queue.push_batch(std::mem::take(&mut batch)).await?;
            bar.inc(n);
        }
    }
    bar.finish_and_clear();
    Ok(poison)
}

async fn handle(task: Task, measured: &Mutex<Measured>) -> Result<(), HandlerError> {
    let started = Instant::now();
    let step: Step = task.json()?; // a corrupt payload is a fatal error
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    if task.attempt() == 1 {
        let latency_us = now_ms.saturating_sub(step.pushed_ms).max(1) * 1000;
        let _ = measured
            .lock()
            .expect("not poisoned")
            .push_to_start
            .record(latency_us);
    }
    if step.work_ms > 0 {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(step.work_ms)) => {}
            _ = task.cancelled() => return Err(HandlerError::retryable("cancelled by shutdown")),
        }
    }
    if task.attempt() <= step.fail_times {
        let why = match step.kind {
            Kind::SyncLedger => "ledger rejected the entry: account 4411 is closed",
            _ => "payment gateway answered 503 Service Unavailable",
        };
        return Err(HandlerError::retryable(format!(
            "{:?} step of workflow {}: {why}",
            step.kind, step.workflow
        )));
    }
    let took = started.elapsed().as_micros().max(1) as u64;
    let _ = measured.lock().expect("not poisoned").handling.record(took);
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn print_summary(
    args: &DemoArgs,
    report: &flextide_worker::WorkerReport,
    worked_for: Duration,
    pushed_in: Duration,
    m: &Measured,
    dead: &[flextide_queue::DeadLetter],
    expected_dead: usize,
    where_: &str,
) {
    let secs = worked_for.as_secs_f64().max(1e-9);
    let ms = |us: u64| us as f64 / 1000.0;
    println!("\nflextide demo — {where_}");
    println!(
        "  tasks            {} (enqueued in {:.2}s)",
        args.tasks,
        pushed_in.as_secs_f64()
    );
    println!("  completed        {}", report.processed);
    println!(
        "  dead-lettered    {} (expected {expected_dead} poison tasks)",
        report.dead_lettered
    );
    println!("  retries          {}", report.retried);
    println!(
        "  handler failures {} ({} panics)",
        report.failed, report.panicked
    );
    println!("  wall time        {secs:.2}s");
    println!(
        "  throughput       {:.0} tasks/s",
        (report.processed + report.dead_lettered) as f64 / secs
    );
    for (name, h) in [("push→start", &m.push_to_start), ("handling", &m.handling)] {
        if h.is_empty() {
            continue;
        }
        println!(
            "  {name:<16} p50 {:.1} ms · p90 {:.1} ms · p99 {:.1} ms · max {:.1} ms",
            ms(h.value_at_quantile(0.5)),
            ms(h.value_at_quantile(0.9)),
            ms(h.value_at_quantile(0.99)),
            ms(h.max())
        );
    }
    if !dead.is_empty() {
        let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
        for d in dead {
            let reason = normalize_reason(d.reason.lines().next().unwrap_or_default());
            *reasons.entry(reason).or_default() += 1;
        }
        println!("  dead letters by reason:");
        for (reason, n) in reasons {
            println!("    {n:>5} × {reason}");
        }
        println!(
            "  inspect them with `flextide dlq list`, replay with `flextide dlq replay --all`"
        );
    }
}

/// A dead letter's reason with its numbers replaced by `#`, so that reasons
/// differing only in a workflow or line number are counted together.
fn normalize_reason(reason: &str) -> String {
    let mut out = String::with_capacity(reason.len());
    let mut in_number = false;
    for c in reason.chars().take(120) {
        if c.is_ascii_digit() {
            if !in_number {
                out.push('#');
            }
            in_number = true;
        } else {
            in_number = false;
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_group_without_numbers() {
        assert_eq!(
            normalize_reason("workflow 1068 failed at line 12"),
            "workflow # failed at line #"
        );
    }
}
