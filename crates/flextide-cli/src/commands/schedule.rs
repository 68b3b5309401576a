//! `flextide schedule list | run`: periodic schedules from a TOML file.
//!
//! ```toml
//! [[schedule]]
//! name = "nightly-report"          # unique per queue; makes the dedup ids
//! cron = "0 30 2 * * *"            # sec min hour day month weekday (sec optional)
//! time_zone = "Europe/Berlin"      # IANA name; default UTC
//! queue = "reports"                # default: --queue / QUEUE_NAME
//! payload = '{"report":"daily"}'   # default empty
//! headers = { content-type = "application/json" }
//! missed = "run-once"              # skip (default) | run-once | catch-up
//! max_missed = 10                  # catch-up: at most this many (default 10)
//! grace_seconds = 60               # later than this a slot is missed
//! look_back_seconds = 1800         # run-once / catch-up: how far back
//! ```

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::ExitCode,
    sync::Arc,
    time::{Duration, SystemTime},
};

use clap::{Args, Subcommand};
use flextide_queue::QueueProvider;
use flextide_worker::{
    CancellationToken, MissedSlots, Schedule, ScheduleError, ScheduleLock, Scheduler,
};
use serde::Deserialize;

use super::Error;

#[derive(Debug, Subcommand)]
pub(crate) enum ScheduleCommand {
    /// Print each schedule of the file and its next runs (connects to nothing).
    List {
        #[command(flatten)]
        file: FileArg,
        /// How many next runs to show per schedule.
        #[arg(long, short = 'n', default_value_t = 3)]
        next: usize,
    },
    /// Push each schedule's slots to its queue until Ctrl-C or SIGTERM. Run
    /// it on as many hosts as you like: on a backend with dedup each slot
    /// becomes one task; on one without, give every host the same --lock
    /// (otherwise it refuses to start).
    Run {
        #[command(flatten)]
        file: FileArg,
        /// A leader lock shared by every host: `postgres://…` (a lease row)
        /// or `redis://…` (`SET NX PX` with fencing); only its holder
        /// pushes. Needed for queues without dedup (feature `schedule-lock`).
        #[arg(
            long,
            env = "FLEXTIDE_SCHEDULE_LOCK",
            value_name = "URL",
            hide_env_values = true
        )]
        lock: Option<String>,
    },
}

#[derive(Debug, Args)]
pub(crate) struct FileArg {
    /// The schedules file (TOML, `[[schedule]]` tables).
    #[arg(long, short = 'f', env = "FLEXTIDE_SCHEDULES", value_name = "PATH")]
    file: PathBuf,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    schedule: Vec<Entry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    name: String,
    cron: String,
    time_zone: Option<String>,
    queue: Option<String>,
    #[serde(default)]
    payload: String,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default)]
    missed: Missed,
    max_missed: Option<usize>,
    grace_seconds: Option<u64>,
    look_back_seconds: Option<u64>,
}

#[derive(Debug, Default, Clone, Copy, Deserialize)]
#[serde(rename_all = "kebab-case")]
enum Missed {
    #[default]
    Skip,
    RunOnce,
    CatchUp,
}

/// The schedules of the file, each with its queue name (`None`: the
/// default queue).
fn load(path: &Path) -> Result<Vec<(Schedule, Option<String>)>, Error> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read the schedules file {}: {e}", path.display()))?;
    let file: File = toml::from_str(&text)
        .map_err(|e| format!("the schedules file {} is not valid: {e}", path.display()))?;
    if file.schedule.is_empty() {
        return Err(format!(
            "the schedules file {} has no [[schedule]] table",
            path.display()
        )
        .into());
    }
    let mut out = Vec::new();
    for e in file.schedule {
        let policy = match (e.missed, e.max_missed) {
            (Missed::Skip, None) => MissedSlots::Skip,
            (Missed::RunOnce, None) => MissedSlots::RunOnce,
            (Missed::CatchUp, max) => MissedSlots::CatchUp {
                max: max.unwrap_or(10),
            },
            (_, Some(_)) => {
                return Err(format!(
                    "schedule {:?}: max_missed applies only to missed = \"catch-up\"",
                    e.name
                )
                .into());
            }
        };
        let mut s = Schedule::new(e.name, e.cron)?
            .time_zone(e.time_zone.as_deref().unwrap_or("UTC"))?
            .payload(e.payload)
            .missed(policy);
        for (k, v) in e.headers {
            s = s.header(k, v);
        }
        if let Some(g) = e.grace_seconds {
            s = s.grace(Duration::from_secs(g));
        }
        if let Some(l) = e.look_back_seconds {
            s = s.look_back(Duration::from_secs(l));
        }
        out.push((s, e.queue));
    }
    Ok(out)
}

pub(crate) async fn run(
    default_queue: Option<String>,
    cmd: ScheduleCommand,
) -> Result<ExitCode, Error> {
    match cmd {
        ScheduleCommand::List { file, next } => list(&file.file, default_queue, next),
        ScheduleCommand::Run { file, lock } => {
            run_schedules(&file.file, default_queue, lock.as_deref()).await
        }
    }
}

fn list(path: &Path, default_queue: Option<String>, next: usize) -> Result<ExitCode, Error> {
    let now = SystemTime::now();
    // --queue wins over QUEUE_NAME (clap reads both into default_queue).
    let default_queue =
        default_queue.unwrap_or_else(|| flextide_queue::DEFAULT_QUEUE_NAME.to_owned());
    for (i, (s, queue)) in load(path)?.iter().enumerate() {
        if i > 0 {
            println!();
        }
        println!("{}", s.name());
        println!("  cron       {}", s.expression());
        println!("  time zone  {}", s.time_zone_name());
        println!(
            "  queue      {}",
            queue.as_deref().unwrap_or(&default_queue)
        );
        println!("  missed     {}", policy_text(s.missed_policy()));
        for slot in s.next_slots(now, next)? {
            println!("  next       {}  ({})", slot.local(), slot.utc());
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A token cancelled by Ctrl-C or SIGTERM, with SIGTERM's handler in place
/// on return (not at the first poll of a task), so a supervisor that sends
/// it right after the start line gets a graceful stop.
fn on_signal() -> Result<CancellationToken, Error> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate())?;
        let token = CancellationToken::new();
        let cancel = token.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            eprintln!("flextide schedule: stopping");
            cancel.cancel();
        });
        Ok(token)
    }
    #[cfg(not(unix))]
    {
        Ok(flextide_worker::shutdown_on_signal())
    }
}

fn policy_text(p: MissedSlots) -> String {
    match p {
        MissedSlots::Skip => "skip".into(),
        MissedSlots::RunOnce => "run once".into(),
        MissedSlots::CatchUp { max } => format!("catch up (at most {max})"),
    }
}

/// The lock named by `--lock`, by its URL's scheme.
#[cfg(feature = "schedule-lock")]
async fn open_lock(url: &str) -> Result<Arc<dyn ScheduleLock>, Error> {
    use flextide_schedule_lock::{PostgresScheduleLock, RedisScheduleLock};
    let scheme = url.split("://").next().unwrap_or_default();
    // The URL may hold a password: errors name the kind of lock only.
    Ok(match scheme {
        "postgres" | "postgresql" => Arc::new(
            PostgresScheduleLock::connect(url)
                .await
                .map_err(|e| format!("cannot open the PostgreSQL schedule lock (--lock): {e}"))?,
        ),
        "redis" | "rediss" => Arc::new(
            RedisScheduleLock::connect(url)
                .await
                .map_err(|e| format!("cannot open the Redis schedule lock (--lock): {e}"))?,
        ),
        _ => {
            return Err(
                format!("--lock takes a postgres:// or redis:// URL, not {scheme:?}").into(),
            );
        }
    })
}

#[cfg(not(feature = "schedule-lock"))]
async fn open_lock(_url: &str) -> Result<Arc<dyn ScheduleLock>, Error> {
    Err("this flextide was built without the `schedule-lock` feature: --lock needs it (cargo install flextide-cli --features schedule-lock)".into())
}

async fn run_schedules(
    path: &Path,
    default_queue: Option<String>,
    lock: Option<&str>,
) -> Result<ExitCode, Error> {
    let schedules = load(path)?;
    let mut queues: BTreeMap<Option<String>, Arc<dyn QueueProvider>> = BTreeMap::new();
    let mut builder = Scheduler::builder();
    if let Some(url) = lock {
        builder = builder.lock(open_lock(url).await?);
    }
    for (schedule, queue) in schedules {
        let name = queue.or_else(|| default_queue.clone());
        let q = match queues.get(&name) {
            Some(q) => q.clone(),
            None => {
                let q = super::open_lasting(name.clone()).await?;
                queues.insert(name, q.clone());
                q
            }
        };
        builder = builder.schedule(schedule, q);
    }
    let scheduler = builder.build().map_err(|e| match e {
        ScheduleError::NeedsLock { queue, backend, .. } => format!(
            "queue {queue:?} ({backend}) does not deduplicate pushes: every host running `flextide schedule run` would push every slot. Give every host the same --lock postgres://… or redis://… (FLEXTIDE_SCHEDULE_LOCK) so only its holder pushes, or use a backend whose queues deduplicate (docs/schedules.md)"
        )
        .into(),
        e => Error::from(e),
    })?;
    let shutdown = on_signal()?;
    eprintln!(
        "pushing the slots of {} until Ctrl-C or SIGTERM",
        path.display()
    );
    let report = scheduler.run(shutdown).await;
    for q in queues.values() {
        super::close(&**q).await;
    }
    println!(
        "enqueued {} · already pushed elsewhere {} · missed and skipped {} · failed ticks {}",
        report.enqueued, report.duplicates, report.skipped, report.errors
    );
    Ok(ExitCode::SUCCESS)
}
