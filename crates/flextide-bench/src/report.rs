//! The result of a run: JSON for tools, Markdown for people, and the check
//! of every target.

use std::fmt::Write as _;

use serde::Serialize;

use crate::{
    defaults,
    machine::Machine,
    plan::Plan,
    run::{Cell, Row},
    stats::{self, fmt_latency, fmt_rate, fmt_ratio},
};

/// One backend's part of the report.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct BackendReport {
    pub(crate) name: String,
    /// `ok`, or why it was not measured (`skipped: …`).
    pub(crate) status: String,
    pub(crate) server: Vec<(String, String)>,
    pub(crate) rows: Vec<Row>,
}

/// A worker-runtime run.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct WorkerRow {
    pub(crate) backend: String,
    pub(crate) worker: Cell,
    /// The figure it is compared with (the backend's own W2 burn-down), if any.
    pub(crate) reference: Option<f64>,
    pub(crate) ratio: Option<f64>,
}

/// A target and whether this run met it.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Target {
    pub(crate) backend: String,
    pub(crate) what: String,
    pub(crate) goal: String,
    /// The measured figure, as shown.
    pub(crate) figure: String,
    /// `None`: not measured in this run.
    pub(crate) met: Option<bool>,
}

impl Target {
    pub(crate) fn status(&self) -> &'static str {
        match self.met {
            Some(true) => "met",
            Some(false) => "MISSED",
            None => "not measured",
        }
    }
}

/// Everything one run found.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Report {
    pub(crate) started: String,
    pub(crate) git_revision: String,
    pub(crate) machine: Machine,
    pub(crate) plan: Plan,
    pub(crate) seconds: f64,
    pub(crate) backends: Vec<BackendReport>,
    pub(crate) worker: Vec<WorkerRow>,
    pub(crate) targets: Vec<Target>,
}

fn row<'a>(r: &'a Report, backend: &str, id: &str) -> Option<&'a Row> {
    r.backends
        .iter()
        .find(|b| b.name == backend)?
        .rows
        .iter()
        .find(|x| x.id == id)
}

fn lib_rate(r: &Report, backend: &str, id: &str) -> Option<f64> {
    row(r, backend, id)?.library.figure().map(|f| f.rate)
}

fn at_least(
    backend: &str,
    what: &str,
    goal: f64,
    got: Option<f64>,
    show: impl Fn(f64) -> String,
) -> Target {
    Target {
        backend: backend.into(),
        what: what.into(),
        goal: format!("≥ {}", show(goal)),
        figure: got.map_or_else(|| "–".into(), &show),
        met: got.map(|g| g >= goal),
    }
}

fn at_most(
    backend: &str,
    what: &str,
    goal: f64,
    got: Option<f64>,
    show: impl Fn(f64) -> String,
) -> Target {
    Target {
        backend: backend.into(),
        what: what.into(),
        goal: format!("≤ {}", show(goal)),
        figure: got.map_or_else(|| "–".into(), &show),
        met: got.map(|g| g <= goal),
    }
}

fn best(values: impl IntoIterator<Item = Option<f64>>) -> Option<f64> {
    values
        .into_iter()
        .flatten()
        .fold(None, |a: Option<f64>, v| Some(a.map_or(v, |a| a.max(v))))
}

fn ms(us: f64) -> String {
    format!("{:.2} ms", us / 1000.0)
}

/// The targets of issues #8 and the backend issues, checked against `r`.
pub(crate) fn check_targets(r: &Report) -> Vec<Target> {
    let mut t = Vec::new();
    let measured = |name: &str| {
        r.backends
            .iter()
            .any(|b| b.name == name && b.status == "ok")
    };
    let idle_p50 = |b: &str| {
        row(r, b, "w4")
            .and_then(|x| x.library.figure())
            .and_then(|f| f.latency)
            .map(|l| l.p50_us as f64)
    };
    let batch_push = |b: &str| {
        best([
            lib_rate(r, b, "w1-b100-p1"),
            lib_rate(r, b, &format!("w1-b100-p{}", r.plan.producers)),
        ])
    };
    if measured("postgres") {
        t.push(at_least(
            "postgres",
            "burn-down, batch pop + batch delete (W2)",
            10_000.0,
            lib_rate(r, "postgres", "w2"),
            fmt_rate,
        ));
        t.push(at_least(
            "postgres",
            "batch push, batch 100 (W1, best of 1 and N producers)",
            30_000.0,
            batch_push("postgres"),
            fmt_rate,
        ));
        t.push(at_most(
            "postgres",
            "idle push-to-pop p50 (W4)",
            5_000.0,
            idle_p50("postgres"),
            ms,
        ));
    }
    if measured("redis") {
        t.push(at_least(
            "redis",
            "burn-down, batch pop + batch delete (W2)",
            60_000.0,
            lib_rate(r, "redis", "w2"),
            fmt_rate,
        ));
        t.push(at_least(
            "redis",
            "batch push, batch 100 (W1, best of 1 and N producers)",
            100_000.0,
            batch_push("redis"),
            fmt_rate,
        ));
        t.push(at_most(
            "redis",
            "idle push-to-pop p50 (W4)",
            1_000.0,
            idle_p50("redis"),
            ms,
        ));
    }
    if measured("rabbitmq") {
        t.push(at_least(
            "rabbitmq",
            "end to end, confirms + manual acks (W3 flat out)",
            15_000.0,
            lib_rate(r, "rabbitmq", "w3-max"),
            fmt_rate,
        ));
        t.push(at_least(
            "rabbitmq",
            "end to end ÷ raw lapin (W3 flat out)",
            0.9,
            row(r, "rabbitmq", "w3-max").and_then(|x| x.ratio),
            |v| format!("{v:.2}"),
        ));
    }
    if measured("nats") {
        t.push(at_least(
            "nats",
            "burn-down, batch fetch + batch acks (W2)",
            40_000.0,
            lib_rate(r, "nats", "w2"),
            fmt_rate,
        ));
        t.push(at_least(
            "nats",
            "burn-down ÷ raw async-nats (W2)",
            0.9,
            row(r, "nats", "w2").and_then(|x| x.ratio),
            |v| format!("{v:.2}"),
        ));
        t.push(at_least(
            "nats",
            "batch push, batch 100 (W1, best of 1 and N producers)",
            50_000.0,
            batch_push("nats"),
            fmt_rate,
        ));
        t.push(at_most(
            "nats",
            "idle push-to-pop p50 (W4)",
            1_000.0,
            idle_p50("nats"),
            ms,
        ));
    }
    if measured("kafka") {
        for (id, what) in [
            (
                "w1-b1-p1",
                "single push ÷ raw rdkafka (W1, batch 1, 1 producer)",
            ),
            (
                "w1-b100-p1",
                "batch push ÷ raw rdkafka (W1, batch 100, 1 producer)",
            ),
            ("w2", "burn-down ÷ raw rdkafka (W2)"),
        ] {
            t.push(at_least(
                "kafka",
                what,
                0.9,
                row(r, "kafka", id).and_then(|x| x.ratio),
                |v| format!("{v:.2}"),
            ));
        }
        t.push(at_most(
            "kafka",
            "idle push-to-pop p50 (W4)",
            1_000.0,
            idle_p50("kafka"),
            ms,
        ));
    }
    if measured("sqs") {
        let per = row(r, "sqs", "sqs-requests-total")
            .and_then(|x| x.library.figure())
            .map(|f| f.rate);
        t.push(at_most(
            "sqs",
            "requests per message, push + pop + delete, batching on",
            0.3,
            per,
            |v| format!("{v:.3}"),
        ));
    }
    for w in &r.worker {
        let rate = w.worker.figure().map(|f| f.rate);
        if let Some(b) = w.backend.strip_suffix(defaults::WORKER_ROW_SUFFIX) {
            t.push(at_least(
                &format!("worker/{b}"),
                "worker at defaults ÷ its W2 burn-down (#19)",
                0.9,
                w.ratio,
                |v| format!("{v:.2}"),
            ));
            if b == "postgres" {
                t.push(at_least(
                    "worker/postgres",
                    "worker at defaults, no-op burn-down (#24)",
                    40_000.0,
                    rate,
                    fmt_rate,
                ));
                let commits = row(r, b, defaults::COMMITS_ROW)
                    .and_then(|x| x.library.figure())
                    .map(|f| f.rate);
                t.push(at_most(
                    "worker/postgres",
                    "commits per 1,000 jobs in that burn-down (#24)",
                    20.0,
                    commits,
                    |v| format!("{v:.1}"),
                ));
                let idle = w
                    .worker
                    .figure()
                    .and_then(|f| f.latency)
                    .map(|l| l.p50_us as f64);
                t.push(at_most(
                    "worker/postgres",
                    "idle push→start p50 after that burn-down (#24)",
                    5_000.0,
                    idle,
                    ms,
                ));
            }
            continue;
        }
        match w.backend.as_str() {
            "memory" => t.push(at_least(
                "worker/memory",
                "worker, no-op handler",
                300_000.0,
                rate,
                fmt_rate,
            )),
            "postgres" => t.push(at_least(
                "worker/postgres",
                "worker ÷ postgres W2 burn-down",
                0.9,
                w.ratio,
                |v| format!("{v:.2}"),
            )),
            _ => {}
        }
    }
    t
}

fn cell(c: &Cell, latency_row: bool, unit: Option<&str>) -> String {
    match c {
        Cell::Figure(f) if unit.is_some() => format!("{:.3} {}", f.rate, unit.unwrap_or_default()),
        Cell::Figure(f) => {
            let mut s = match (&f.latency, latency_row) {
                (Some(l), true) => fmt_latency(l),
                _ => fmt_rate(f.rate),
            };
            if let Some(n) = &f.note {
                let _ = write!(s, " ⚠ {n}");
            }
            s
        }
        Cell::Error(e) => format!("error: {}", e.replace('|', "/")),
        Cell::NotApplicable(why) => format!("n/a ({why})"),
    }
}

fn latency(c: &Cell, latency_row: bool) -> String {
    match c {
        Cell::Figure(f) if !latency_row => f.latency.as_ref().map_or_else(String::new, fmt_latency),
        _ => String::new(),
    }
}

/// The report as Markdown.
pub(crate) fn markdown(r: &Report) -> String {
    let mut s = String::new();
    let m = &r.machine;
    let _ = writeln!(
        s,
        "# Flextide Queue benchmark, {} ({})\n",
        r.started,
        if r.plan.quick { "quick" } else { "full" }
    );
    let _ = writeln!(
        s,
        "Revision `{}` · {} · {} cores · {} MiB RAM · Linux {} · run took {:.0} s\n",
        r.git_revision,
        if m.cpu.is_empty() {
            "cpu unknown"
        } else {
            &m.cpu
        },
        m.cores,
        stats::group(m.memory_mib),
        m.kernel,
        r.seconds
    );
    let p = &r.plan;
    let _ = writeln!(
        s,
        "Payload {} B unless stated; W1 runs {} s each; W2 backlog {} with {} consumers; W3 levels {} s each with {} producers and {} consumers; W4 {} samples. \
         Servers run on the same machine as the harness, so figures are lower bounds and the library ÷ raw ratio is the figure to compare across machines.\n",
        p.payload,
        p.push_secs,
        stats::group(p.backlog),
        p.consumers,
        p.e2e_secs,
        p.producers,
        p.consumers,
        p.idle_samples
    );
    s.push_str(
        "## Targets\n\n| backend | target | goal | measured | status |\n|---|---|---|---|---|\n",
    );
    for t in &r.targets {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} |",
            t.backend,
            t.what,
            t.goal,
            t.figure,
            if t.met == Some(false) {
                "**MISSED**"
            } else {
                t.status()
            }
        );
    }
    if !r.worker.is_empty() {
        s.push_str("\n## Worker runtime (no-op handler)\n\n| backend | worker | backend's own W2 | worker ÷ W2 |\n|---|---|---|---|\n");
        for w in &r.worker {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} |",
                w.backend,
                cell(&w.worker, false, None),
                w.reference.map_or_else(|| "–".into(), fmt_rate),
                fmt_ratio(w.ratio)
            );
        }
    }
    for b in &r.backends {
        let _ = writeln!(s, "\n## {}\n", b.name);
        if b.status != "ok" {
            let _ = writeln!(s, "{}\n", b.status);
            continue;
        }
        if !b.server.is_empty() {
            let info: Vec<String> = b
                .server
                .iter()
                .map(|(k, v)| format!("{k}: `{v}`"))
                .collect();
            let _ = writeln!(s, "{}\n", info.join(" · "));
        }
        s.push_str("| workload | library | raw client | library ÷ raw | library latency p50 / p99 / p99.9 | raw latency p50 / p99 / p99.9 |\n|---|---|---|---|---|---|\n");
        for x in &b.rows {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} | {} |",
                x.label,
                cell(&x.library, x.latency_row, x.unit.as_deref()),
                cell(&x.raw, x.latency_row, x.unit.as_deref()),
                fmt_ratio(x.ratio),
                latency(&x.library, x.latency_row),
                latency(&x.raw, x.latency_row)
            );
        }
    }
    s.push_str(
        "\nThroughput rows: messages per second (higher is better), ratio = library ÷ raw (1.00 = no overhead). \
         Latency rows (W4): p50 / p99 / p99.9, ratio = library p50 ÷ raw p50 (lower is better). \
         W2 and W3 count a message once its delete returned.\n",
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workloads::Figure;

    fn fig(rate: f64) -> Cell {
        Cell::Figure(Figure {
            messages: 10,
            secs: 1.0,
            rate,
            latency: None,
            fill_rate: None,
            note: None,
        })
    }

    fn report(rows: Vec<Row>) -> Report {
        Report {
            started: "2024-01-01T00:00:00Z".into(),
            git_revision: "abc".into(),
            machine: Machine {
                cpu: "cpu".into(),
                cores: 2,
                memory_mib: 1024,
                kernel: "6".into(),
            },
            plan: Plan::new(true),
            seconds: 1.0,
            backends: vec![BackendReport {
                name: "postgres".into(),
                status: "ok".into(),
                server: vec![],
                rows,
            }],
            worker: vec![],
            targets: vec![],
        }
    }

    #[test]
    fn targets_print_missed_with_the_figure() {
        let rows = vec![Row {
            id: "w2".into(),
            label: "W2".into(),
            library: fig(9_000.0),
            raw: fig(10_000.0),
            ratio: Some(0.9),
            latency_row: false,
            unit: None,
        }];
        let mut r = report(rows);
        r.targets = check_targets(&r);
        let w2 = r.targets.iter().find(|t| t.what.contains("W2")).unwrap();
        assert_eq!(w2.met, Some(false));
        assert_eq!(w2.figure, "9,000/s");
        let push = r
            .targets
            .iter()
            .find(|t| t.what.contains("batch push"))
            .unwrap();
        assert_eq!(push.met, None);
        let md = markdown(&r);
        assert!(md.contains("| postgres | burn-down, batch pop + batch delete (W2) | ≥ 10,000/s | 9,000/s | **MISSED** |"), "{md}");
        assert!(md.contains("| W2 | 9,000/s | 10,000/s | 0.90 |"), "{md}");
    }
}
