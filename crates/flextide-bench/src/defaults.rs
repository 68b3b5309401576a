//! The worker at its default settings (issues #19 and #24): one process,
//! `Worker::builder(queue).concurrency(16)` and nothing else, a no-op
//! handler, burning down a pre-filled backlog; beside it the raw client's
//! W2-shaped burn-down (batches of 100, the plan's consumers) of the same
//! backlog. After the burn-down the worker stays up and serial pushes to
//! the now idle queue measure push→start, so growing batches for the
//! backlog is seen not to cost latency once it is gone.
//!
//! Where the server counts commits (PostgreSQL's `pg_stat_database.xact_commit`
//! for a database of the bench's own, MariaDB's server-wide `Com_commit`),
//! each side's burn-down runs on connections of its own, opened after the
//! fill and closed before the count is read (a PostgreSQL backend reports
//! its counts when it exits at the latest), and commits per 1,000 jobs are
//! reported beside the raw client's.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use flextide_queue_core::{Message, QueueProvider};
use flextide_worker::{CancellationToken, HandlerError, Task, Worker, handler_fn};

use crate::{
    backends::{self, Backend},
    driver::Res,
    plan::Plan,
    run::{Cell, Row, print_row},
    stats,
    workloads::{self, Figure},
};

/// Row ids, for the report's targets.
pub(crate) const RATE_ROW: &str = "worker-defaults";
pub(crate) const COMMITS_ROW: &str = "worker-defaults-commits";
/// What the report's worker table appends to the backend's name.
pub(crate) const WORKER_ROW_SUFFIX: &str = " · defaults, c16";

/// Serial pushes timed once the backlog is gone.
fn idle_samples(plan: &Plan) -> usize {
    plan.idle_samples.min(if plan.quick { 50 } else { 200 })
}

/// Both rows for backend `b`.
pub(crate) async fn rows(b: &Arc<dyn Backend>, plan: &Plan) -> Vec<Row> {
    let total = plan.worker_defaults_backlog;
    let (lib, lib_commits) = side(b, plan, false).await;
    let (raw, raw_commits) = side(b, plan, true).await;
    let label = format!(
        "worker at defaults, {} jobs × concurrency {} (raw: W2 shape); latency: idle push→start after",
        stats::group(total),
        plan.worker_defaults_concurrency
    );
    let rate = Row::throughput(RATE_ROW.into(), label, lib, raw);
    print_row(&rate);
    let mut out = vec![rate];
    if let (Some(l), Some(r)) = (lib_commits, raw_commits) {
        let commits = Row::unit(
            COMMITS_ROW.into(),
            format!(
                "commits per 1,000 jobs in that burn-down ({})",
                b.commit_counter_name()
            ),
            l,
            r,
            "commits/1k",
        );
        print_row(&commits);
        out.push(commits);
    }
    out
}

/// One side's burn-down (and its commits per 1,000 jobs where counted).
async fn side(b: &Arc<dyn Backend>, plan: &Plan, raw: bool) -> (Cell, Option<Cell>) {
    let counted = match b.commit_db().await {
        None => None,
        Some(Ok(db)) => Some(db),
        Some(Err(e)) => {
            let e = format!("commit database: {e}");
            return (Cell::Error(e.clone()), Some(Cell::Error(e)));
        }
    };
    let Some(fill_db) = counted else {
        return (run_plain(b, plan, raw).await, None);
    };
    match run_counted(b, fill_db, plan, raw).await {
        Ok((figure, per_1k)) => {
            let commits = Figure {
                messages: figure.messages,
                secs: figure.secs,
                rate: per_1k,
                latency: None,
                fill_rate: None,
                note: None,
            };
            (Cell::Figure(figure), Some(Cell::Figure(commits)))
        }
        Err(e) => (Cell::Error(e.to_string()), Some(Cell::Error(e.to_string()))),
    }
}

/// Without a commit counter: fill and burn on the backend's own connections.
async fn run_plain(b: &Arc<dyn Backend>, plan: &Plan, raw: bool) -> Cell {
    let queue = backends::queue_name(&format!("{}-wdef", &b.name()[..2.min(b.name().len())]));
    let out = if raw {
        raw_burn(b, &queue, plan, true).await
    } else {
        match b.library(&queue).await {
            Ok(q) => {
                match workloads::prefill(q.clone(), plan.worker_defaults_backlog, plan.payload)
                    .await
                {
                    Ok(()) => worker_burn(q, plan, None).await,
                    Err(e) => Err(e),
                }
            }
            Err(e) => Err(e),
        }
    };
    if !raw && let Err(e) = b.drop_library(&queue).await {
        eprintln!("  warning: cleanup of {queue} failed: {e}");
    }
    if let Err(e) = b.maintain().await {
        eprintln!("  warning: housekeeping on {} failed: {e}", b.name());
    }
    match out {
        Ok(Some(f)) => Cell::Figure(f),
        Ok(None) => Cell::NotApplicable("no raw client".into()),
        Err(e) => Cell::Error(e.to_string()),
    }
}

/// With a commit counter: fill on connections of their own (closed), read
/// the counter, burn down on fresh connections (closed), read it again.
async fn run_counted(
    b: &Arc<dyn Backend>,
    fill_db: Arc<dyn Backend>,
    plan: &Plan,
    raw: bool,
) -> Res<(Figure, f64)> {
    let total = plan.worker_defaults_backlog;
    let queue = backends::queue_name(&format!("{}-wdef", &b.name()[..2.min(b.name().len())]));
    // Both sides are filled by the library: the raw client runs the
    // library's statements on the same tables (and its waiting listener
    // would hold a connection the close waits for).
    let q = fill_db.library(&queue).await?;
    workloads::prefill(q, total, plan.payload).await?;
    fill_db.close().await;
    let before = b.commits().await?;
    let run_db = b
        .commit_db()
        .await
        .ok_or("the commit database went away")??;
    let mut after = before;
    let figure = if raw {
        raw_burn(&run_db, &queue, plan, false).await
    } else {
        match run_db.library(&queue).await {
            Ok(q) => worker_burn(q, plan, Some((b, &mut after))).await,
            Err(e) => Err(e),
        }
    };
    run_db.close().await;
    if raw {
        after = b.commits().await?;
    }
    // Removing the queue and vacuuming happen after the count.
    if let Some(Ok(cleanup)) = b.commit_db().await {
        if let Err(e) = cleanup.drop_library(&queue).await {
            eprintln!("  warning: cleanup of {queue} failed: {e}");
        }
        let _ = cleanup.maintain().await;
        cleanup.close().await;
    }
    let figure = figure?.ok_or("no raw client")?;
    let per_1k = after.saturating_sub(before) as f64 * 1000.0 / figure.messages.max(1) as f64;
    Ok((figure, per_1k))
}

/// The raw client's W2-shaped burn-down of `queue` (filled first when
/// `fill`); `None` without a raw client.
async fn raw_burn(
    b: &Arc<dyn Backend>,
    queue: &str,
    plan: &Plan,
    fill: bool,
) -> Res<Option<Figure>> {
    let Some(d) = b.raw(queue).await? else {
        return Ok(None);
    };
    let total = plan.worker_defaults_backlog;
    let run = async {
        if fill {
            workloads::fill(d.clone(), total, plan.payload, 100, plan.producers).await?;
        }
        workloads::burn_down(d.clone(), total, plan.consumers, 100, plan.burn_cap).await
    };
    let out = run.await;
    if let Err(e) = d.cleanup().await {
        eprintln!("  warning: cleanup of {queue} failed: {e}");
    }
    out.map(Some)
}

/// The worker at its defaults (but concurrency) with a no-op handler over a
/// filled `queue`: jobs per second until all are done, then push→start of
/// serial pushes to the idle queue.
async fn worker_burn(
    queue: Arc<dyn QueueProvider>,
    plan: &Plan,
    counter: Option<(&Arc<dyn Backend>, &mut u64)>,
) -> Res<Option<Figure>> {
    let total = plan.worker_defaults_backlog;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<u64>();
    let timing = Arc::new(AtomicBool::new(false));
    let t = timing.clone();
    let worker = Worker::builder(queue.clone())
        .concurrency(plan.worker_defaults_concurrency)
        .build(handler_fn(move |task: Task| {
            if t.load(Ordering::Relaxed)
                && let Some(us) = workloads::age_us(task.payload())
            {
                let _ = tx.send(us);
            }
            async { Ok::<_, HandlerError>(()) }
        }));
    let progress = worker.progress();
    let token = CancellationToken::new();
    let start = Instant::now();
    let run = tokio::spawn(worker.run(token.clone()));
    let until = start + plan.burn_cap;
    while progress.snapshot().processed < total && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let secs = start.elapsed().as_secs_f64();
    let processed = progress.snapshot().processed.min(total);
    let mut notes = Vec::new();
    if processed < total {
        notes.push(format!("stopped at the cap after {processed} of {total}"));
    }
    // Idle: let the last acks go and the pops shrink, then time serial pushes.
    // A busy server process reports its counts at least once a second, and
    // the idle worker's polls keep them busy: the commits of the burn-down
    // are counted now (with a second and a half of idle polling), before
    // the timed pushes add theirs.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    if let Some((b, after)) = counter {
        *after = b.commits().await?;
    }
    timing.store(true, Ordering::Relaxed);
    let mut hist = stats::new_histogram();
    for _ in 0..idle_samples(plan) {
        queue
            .push(Message::new(workloads::stamped(plan.payload)))
            .await?;
        match tokio::time::timeout(Duration::from_secs(10), rx.recv()).await {
            Ok(Some(us)) => {
                let _ = hist.record(us.max(1));
            }
            _ => {
                notes.push("an idle push did not start within 10 s".into());
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    token.cancel();
    let report = run.await?;
    if report.failed + report.settle_errors + report.given_back_late > 0 {
        notes.push(format!(
            "{} failed, {} settle errors, {} given back late",
            report.failed, report.settle_errors, report.given_back_late
        ));
    }
    let mut f = Figure::new(processed, secs);
    f.latency = stats::summarize(&hist);
    if !notes.is_empty() {
        f.note = Some(notes.join("; "));
    }
    Ok(Some(f))
}
