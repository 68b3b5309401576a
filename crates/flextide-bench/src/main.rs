#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

mod backends;
mod chart;
mod compression;
mod defaults;
mod driver;
mod machine;
mod many;
mod plan;
mod report;
mod run;
mod stats;
mod workloads;

use std::{
    path::PathBuf,
    process::ExitCode,
    sync::Arc,
    time::{Instant, SystemTime, UNIX_EPOCH},
};

use clap::Parser;

use crate::{
    backends::{Backend, Unavailable},
    report::{BackendReport, Report, WorkerRow},
    run::Cell,
};

/// Benchmarks every Flextide Queue backend beside its raw client.
#[derive(Debug, Parser)]
#[command(name = "flextide-bench", about)]
struct Args {
    /// Smoke run: small backlog, short runs, fewer samples (under two minutes).
    #[arg(long)]
    quick: bool,
    /// Backends to run (repeatable): memory sqlite postgres mysql redis rabbitmq sqs. Default: all.
    #[arg(long = "backend", value_name = "NAME")]
    backends: Vec<String>,
    /// Override W2's backlog.
    #[arg(long)]
    backlog: Option<u64>,
    /// Override the seconds of each W1 run and each W3 level.
    #[arg(long)]
    secs: Option<f64>,
    /// Override W4's samples.
    #[arg(long)]
    samples: Option<usize>,
    /// Where to write the results.
    #[arg(long, default_value = "bench-results")]
    out: PathBuf,
    /// Print the report only; write no file.
    #[arg(long)]
    no_write: bool,
    /// Instead of the workloads: look at N never-used queue names, use N
    /// queues once (push, drain), drop them all, and report time per queue,
    /// the broker's footprint after each phase and its health after.
    #[arg(long, value_name = "N")]
    many_queues: Option<usize>,
    /// Run only the worker-at-defaults burn-down (with commits per 1,000
    /// jobs where the server counts them), not W1–W4 and the rest.
    #[arg(long)]
    worker_defaults_only: bool,
    /// Override the worker-at-defaults burn-down's backlog (20,000).
    #[arg(long, value_name = "N")]
    worker_backlog: Option<u64>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let all = backends::all();
    for b in &args.backends {
        if !all.contains(&b.as_str()) {
            eprintln!(
                "flextide-bench: unknown backend `{b}` (known: {})",
                all.join(" ")
            );
            return ExitCode::FAILURE;
        }
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("flextide-bench: no runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(bench(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("flextide-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn bench(args: Args) -> Result<(), String> {
    if let Some(n) = args.many_queues {
        return many_queues(&args, n.max(1)).await;
    }
    let mut plan = plan::Plan::new(args.quick);
    if let Some(n) = args.backlog {
        plan.backlog = n.max(1);
    }
    if let Some(n) = args.worker_backlog {
        plan.worker_defaults_backlog = n.max(1);
    }
    if let Some(s) = args.secs {
        plan.push_secs = s;
        plan.e2e_secs = s;
    }
    if let Some(n) = args.samples {
        plan.idle_samples = n.max(1);
    }
    let wanted: Vec<&str> = backends::all()
        .into_iter()
        .filter(|b| args.backends.is_empty() || args.backends.iter().any(|w| w == b))
        .collect();
    // Read before the run: the tree may change while it goes on.
    let git_revision = machine::git_revision();
    let started_at = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let started = Instant::now();
    let mut reports = Vec::new();
    let mut worker = Vec::new();
    for name in wanted {
        eprintln!("\n== {name}");
        let b: Arc<dyn Backend> = match backends::connect(name).await {
            Ok(b) => b,
            Err(why) => {
                let status = match why {
                    Unavailable::NotBuilt => {
                        "skipped: not built (its cargo feature is off)".to_owned()
                    }
                    Unavailable::Unreachable(e) => format!("skipped: server unreachable ({e})"),
                };
                eprintln!("  {status}");
                reports.push(BackendReport {
                    name: name.into(),
                    status,
                    server: vec![],
                    rows: vec![],
                });
                continue;
            }
        };
        let server = b.info().await;
        for (k, v) in &server {
            eprintln!("  {k}: {v}");
        }
        let special = b.special(&plan).await;
        let measured = special.is_none();
        let mut rows = match special {
            Some(rows) => rows,
            None if args.worker_defaults_only => vec![],
            None => run::workloads(&b, &plan).await,
        };
        let w2 = rows
            .iter()
            .find(|r| r.id == "w2")
            .and_then(|r| r.library.figure())
            .map(|f| f.rate);
        if measured {
            rows.extend(defaults::rows(&b, &plan).await);
            let cell = rows
                .iter()
                .find(|r| r.id == defaults::RATE_ROW)
                .map(|r| r.library.clone());
            if let Some(cell) = cell {
                let rate = cell.figure().map(|f| f.rate);
                worker.push(WorkerRow {
                    backend: format!("{name}{}", defaults::WORKER_ROW_SUFFIX),
                    worker: cell,
                    reference: w2,
                    ratio: stats::ratio(rate, w2),
                });
            }
        }
        let worker_total = match name {
            _ if args.worker_defaults_only => None,
            "memory" => Some(plan.worker_memory_backlog),
            "postgres" => Some(plan.backlog),
            _ => None,
        };
        if let Some(total) = worker_total {
            let cell = run::worker(&b, total, &plan).await;
            let rate = cell.figure().map(|f| f.rate);
            let reference = if name == "memory" { None } else { w2 };
            let ratio = stats::ratio(rate, reference);
            eprintln!(
                "  worker over {name}: {} (÷ W2 {})",
                match &cell {
                    Cell::Figure(f) => stats::fmt_rate(f.rate),
                    Cell::Error(e) => format!("ERROR {e}"),
                    Cell::NotApplicable(w) => w.clone(),
                },
                stats::fmt_ratio(ratio)
            );
            worker.push(WorkerRow {
                backend: name.into(),
                worker: cell,
                reference,
                ratio,
            });
        }
        b.close().await;
        reports.push(BackendReport {
            name: name.into(),
            status: "ok".into(),
            server,
            rows,
        });
        run::settle().await;
    }
    let mut report = Report {
        started: stats::utc_timestamp(started_at),
        git_revision,
        machine: machine::Machine::detect(),
        plan,
        seconds: started.elapsed().as_secs_f64(),
        backends: reports,
        worker,
        targets: vec![],
    };
    report.targets = report::check_targets(&report);
    let md = report::markdown(&report);
    println!("{md}");
    if args.no_write {
        return Ok(());
    }
    write_files(&args.out, &report, &md)
}

async fn many_queues(args: &Args, n: usize) -> Result<(), String> {
    let wanted: Vec<&str> = backends::all()
        .into_iter()
        .filter(|b| args.backends.is_empty() || args.backends.iter().any(|w| w == b))
        .collect();
    let mut runs = Vec::new();
    for name in wanted {
        eprintln!("\n== {name}: {n} queues");
        let b: Arc<dyn Backend> = match backends::connect(name).await {
            Ok(b) => b,
            Err(why) => {
                eprintln!("  skipped: {why:?}");
                continue;
            }
        };
        for (k, v) in b.info().await {
            eprintln!("  {k}: {v}");
        }
        runs.push(many::run(&b, n).await);
    }
    let md = many::markdown(&runs);
    println!("{md}");
    if args.no_write {
        return Ok(());
    }
    std::fs::create_dir_all(&args.out).map_err(|e| format!("{}: {e}", args.out.display()))?;
    let started = stats::utc_timestamp(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
    );
    let stamp: String = started
        .chars()
        .filter(char::is_ascii_digit)
        .take(14)
        .collect();
    let path = args.out.join(format!("many-queues-{stamp}.md"));
    std::fs::write(&path, md).map_err(|e| format!("{}: {e}", path.display()))?;
    eprintln!("wrote {}", path.display());
    if runs.iter().any(|r| r.health.is_err()) {
        return Err("a broker failed its health probe after the run".into());
    }
    Ok(())
}

fn write_files(dir: &std::path::Path, report: &Report, md: &str) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    // Date and time, so two runs at one revision never overwrite each other.
    let time: String = report
        .started
        .chars()
        .skip(11)
        .take(8)
        .filter(char::is_ascii_digit)
        .collect();
    let when = format!("{}-{time}", &report.started[..10]);
    let stem = format!(
        "{}-{}{}",
        when,
        report.git_revision,
        if report.plan.quick { "-quick" } else { "" }
    );
    let json = serde_json::to_string_pretty(report).map_err(|e| e.to_string())?;
    let svg = chart::svg(report)?;
    let latest = if report.plan.quick {
        "latest-quick"
    } else {
        "latest"
    };
    for (name, body) in [
        (format!("{stem}.json"), json.as_str()),
        (format!("{stem}.md"), md),
        (format!("{stem}.svg"), svg.as_str()),
        (format!("{latest}.md"), md),
        (format!("{latest}.json"), json.as_str()),
        (format!("{latest}.svg"), svg.as_str()),
    ] {
        let path = dir.join(&name);
        std::fs::write(&path, body).map_err(|e| format!("{}: {e}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}
