//! One backend, one scenario: start its private server, run producers and
//! workers while killing workers and crashing the server on schedule,
//! drain, stop everything, and check the evidence.

use std::{
    collections::HashSet,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use flextide_queue::QueueProvider;
use tokio::time::Instant;

use crate::{
    agents::Agents,
    backends::Backend,
    check::{Evidence, Outcome, check},
    logs::{ids, read_lines},
    plan::Plan,
    report::Row,
    servers::Servers,
};

/// What the run did besides the counts.
#[derive(Debug, Default)]
pub(crate) struct Events {
    pub kills: u64,
    pub crashes: u64,
    pub worker_exits: Vec<String>,
    pub longest_restart: Duration,
    pub drain: Duration,
    pub notes: Vec<String>,
}

/// Runs `backend` under `plan` and returns its table row. Servers, agents
/// and the run directory are gone when this returns, whatever happened.
pub(crate) async fn run(backend: Backend, plan: &Plan, keep: bool) -> Row {
    let started = Instant::now();
    if let Some(reason) = backend.skip_reason() {
        return Row::skipped(backend, plan, reason);
    }
    let dir = match RunDir::new(backend.name, keep) {
        Ok(d) => d,
        Err(e) => return Row::error(backend, plan, e, started.elapsed()),
    };
    let mut events = Events::default();
    let result = run_in(backend, plan, &dir.path, &mut events).await;
    match result {
        Ok(outcome) => Row::done(backend, plan, outcome, events, started.elapsed()),
        Err(e) => {
            let e = format!("{e}{}", agent_log_tails(&dir.path));
            Row::error(backend, plan, e, started.elapsed())
        }
    }
}

/// The last lines of the producers' logs and of the last worker's, for an
/// error message (the run directory is removed afterwards).
fn agent_log_tails(dir: &Path) -> String {
    let mut logs: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("agent-"))
        })
        .collect();
    logs.sort();
    let mut out = String::new();
    for log in logs
        .iter()
        .filter(|p| p.to_string_lossy().contains("produce"))
        .chain(logs.last())
    {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let tail = lines[lines.len().saturating_sub(3)..].join("\n    ");
        out.push_str(&format!("\n  {}:\n    {tail}", log.display()));
    }
    out
}

async fn run_in(
    backend: Backend,
    plan: &Plan,
    dir: &Path,
    events: &mut Events,
) -> Result<Outcome, String> {
    let mut server = blocking(|| Servers::start(backend.home))?;
    let url = match &server {
        Some(s) => s.url(),
        None => backend.file_url(dir),
    };
    crate::backends::prepare(backend, &url).await?;
    let queue = format!("chaos_{}", rand::random::<u32>());
    let target = vec![
        "--url".into(),
        url.clone(),
        "--queue".into(),
        queue.clone(),
        "--lease-ms".into(),
        plan.lease.as_millis().to_string(),
    ];
    if matches!(backend.home, crate::backends::Home::External { .. }) {
        // SQS opens only queues that exist.
        create_queue(&url, &queue, plan).await?;
    }
    // The orchestrator's own handle, for stats and dead letters; opening it
    // first also creates the queue (and the schema) before anyone races.
    let control = open(&url, &queue, plan).await?;

    let worker_args = vec![
        "--timeout-ms".into(),
        plan.handler_timeout.as_millis().to_string(),
        "--hang-every".into(),
        plan.hang_every.to_string(),
        "--concurrency".into(),
        plan.concurrency.to_string(),
        "--work-ms".into(),
        plan.work().as_millis().to_string(),
    ];
    let mut agents = Agents::new(dir, target, worker_args)?;
    let mut down_until = None;
    if let (Some(down), Some(s)) = (plan.start_down, server.as_mut()) {
        s.crash()?;
        events.crashes += 1;
        down_until = Some(Instant::now() + down);
    }
    for _ in 0..plan.workers {
        agents.add_worker()?;
    }
    let per = plan.messages.div_ceil(plan.producers);
    for n in 0..plan.producers {
        let first = n * per;
        let count = per.min(plan.messages.saturating_sub(first));
        agents.add_producer(
            n,
            vec![
                "--first".into(),
                first.to_string(),
                "--count".into(),
                count.to_string(),
                "--rate".into(),
                plan.rate_per_producer().to_string(),
                "--batch".into(),
                plan.batch().to_string(),
                "--deadline-secs".into(),
                (plan.push_for + Duration::from_secs(240))
                    .as_secs()
                    .to_string(),
            ],
        )?;
    }

    // The chaos: until producers are done and every outage is over.
    let start = Instant::now();
    let mut outages = plan.outages.clone();
    if server.is_none() {
        outages.clear();
    }
    let mut next_kill = plan.kill_every.map(|k| start + k);
    let limit = plan.push_for
        + plan.outages.iter().map(|o| o.down).sum::<Duration>()
        + plan.start_down.unwrap_or_default()
        + Duration::from_secs(300);
    loop {
        let now = Instant::now();
        if let (Some(until), Some(s)) = (down_until, server.as_mut()) {
            if now >= until {
                let t = Instant::now();
                blocking(|| s.restart())?;
                events.longest_restart = events.longest_restart.max(t.elapsed());
                down_until = None;
            }
        } else if let (Some(o), Some(s)) = (outages.first().copied(), server.as_mut())
            && now >= start + o.at
        {
            s.crash()?;
            events.crashes += 1;
            down_until = Some(now + o.down);
            outages.remove(0);
        }
        if let Some(at) = next_kill
            && now >= at
        {
            agents.kill_a_worker()?;
            next_kill = plan.kill_every.map(|k| now + k);
        }
        agents.replace_exited_workers()?;
        if agents.producers_done()? && outages.is_empty() && down_until.is_none() {
            break;
        }
        if start.elapsed() > limit {
            return Err(format!(
                "producers did not finish within {} s",
                limit.as_secs()
            ));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    let acked = ids(&read_lines(dir, "acked-")?)?;
    let drain = Instant::now();
    drain_queue(dir, &acked, control.as_ref(), plan).await?;
    events.drain = drain.elapsed();
    blocking(|| {
        agents.stop_workers(Duration::from_secs(15));
        Ok(())
    })?;
    events.kills = agents.kills;
    events.worker_exits = std::mem::take(&mut agents.exits);
    drop(agents);

    let (stats, breakdown) = stats(control.as_ref()).await?;
    if stats > 0 {
        events.notes.push(breakdown);
    }
    let dead = match control.dead_letters(plan.messages as usize + 1000).await {
        Ok(list) => list
            .iter()
            .map(|d| String::from_utf8_lossy(&d.message.payload).into_owned())
            .collect(),
        Err(e) => {
            events.notes.push(format!("dead letters not readable: {e}"));
            Vec::new()
        }
    };
    let evidence = Evidence {
        acked,
        abandoned: ids(&read_lines(dir, "abandoned-")?)?,
        handled: read_lines(dir, "handled-")?,
        dead,
        stuck: stats,
    };
    let _ = control.close().await;
    drop(server.take());
    let mut outcome = check(&evidence, backend.loss_allowed);
    // On a cluster, losing a node must not stop a worker: the others
    // carry on, so the worker should reconnect without exiting.
    if backend.is_cluster() && !events.worker_exits.is_empty() {
        outcome.failures.push(format!(
            "{} worker(s) exited on their own while a node was down: {}",
            events.worker_exits.len(),
            events.worker_exits.join(", ")
        ));
    }
    Ok(outcome)
}

/// Waits until every acknowledged id is handled and the queue is empty;
/// or, when some are missing, until the queue is empty and nothing new
/// was handled for a while (what is missing then is lost or dead); at
/// most the plan's drain limit.
async fn drain_queue(
    dir: &Path,
    acked: &[u64],
    control: &dyn QueueProvider,
    plan: &Plan,
) -> Result<(), String> {
    let deadline = Instant::now() + plan.drain_limit;
    let quiet_for = plan.lease * 2 + Duration::from_secs(5);
    let mut last_count = 0;
    let mut last_change = Instant::now();
    let acked: HashSet<u64> = acked.iter().copied().collect();
    while Instant::now() < deadline {
        let lines = read_lines(dir, "handled-")?;
        if lines.len() != last_count {
            last_count = lines.len();
            last_change = Instant::now();
        }
        let handled: HashSet<u64> = lines.iter().filter_map(|l| l.parse().ok()).collect();
        let missing = acked.difference(&handled).count();
        let left = stats(control).await.map_or(u64::MAX, |(n, _)| n);
        if left == 0 && (missing == 0 || last_change.elapsed() > quiet_for) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // The checker reports what is stuck or missing.
    Ok(())
}

/// Messages ready, delayed or in flight.
/// What is left on the queue, and how the backend counts it.
async fn stats(queue: &dyn QueueProvider) -> Result<(u64, String), String> {
    match tokio::time::timeout(Duration::from_secs(10), queue.stats()).await {
        Ok(Ok(s)) => Ok((
            s.depth + s.in_flight + s.delayed,
            format!(
                "left after the drain: {} ready, {} in flight, {} delayed",
                s.depth, s.in_flight, s.delayed
            ),
        )),
        Ok(Err(e)) => Err(format!("stats failed: {e}")),
        Err(_) => Err("stats timed out after 10 s".into()),
    }
}

async fn create_queue(url: &str, queue: &str, plan: &Plan) -> Result<(), String> {
    let options = flextide_queue::QueueOptions::default()
        .lease(plan.lease)
        .max_attempts(None);
    let connector = flextide_queue::registry()
        .by_url(url)
        .map_err(|e| e.to_string())?
        .clone();
    connector
        .create_queue(url, queue, options)
        .await
        .map_err(|e| format!("could not create the queue: {e}"))
}

async fn open(url: &str, queue: &str, plan: &Plan) -> Result<Arc<dyn QueueProvider>, String> {
    let options = flextide_queue::QueueOptions::default()
        .lease(plan.lease)
        .max_attempts(None);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match flextide_queue::open(url, queue, options.clone()).await {
            Ok(q) => return Ok(q),
            Err(e) if Instant::now() > deadline => {
                return Err(format!("could not open the queue: {e}"));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
}

/// Runs blocking work (server starts, process waits) off the async
/// workers' backs.
fn blocking<T>(f: impl FnOnce() -> Result<T, String>) -> Result<T, String> {
    tokio::task::block_in_place(f)
}

/// The run's directory under /tmp: agents' logs and a SQLite file.
/// Removed on drop unless kept.
struct RunDir {
    path: PathBuf,
    keep: bool,
}

impl RunDir {
    fn new(backend: &str, keep: bool) -> Result<RunDir, String> {
        let path = PathBuf::from(format!(
            "/tmp/flextide-chaos-{backend}-{}-{}",
            std::process::id(),
            rand::random::<u32>()
        ));
        std::fs::create_dir_all(&path)
            .map_err(|e| format!("could not create {}: {e}", path.display()))?;
        Ok(RunDir { path, keep })
    }
}

impl Drop for RunDir {
    fn drop(&mut self) {
        if self.keep {
            eprintln!("kept the run directory {}", self.path.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}
