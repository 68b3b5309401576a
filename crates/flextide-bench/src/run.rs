//! Runs every workload on one backend, library then raw, and collects rows.

use std::{future::Future, sync::Arc, time::Duration};

use futures::future::BoxFuture;
use serde::Serialize;

use crate::{
    backends::{self, Backend},
    driver::{Driver, Res},
    plan::Plan,
    stats::{self, fmt_bytes},
    workloads::{self, Figure},
};

/// The outcome of one side of a row.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Cell {
    Figure(Figure),
    Error(String),
    NotApplicable(String),
}

impl Cell {
    pub(crate) fn figure(&self) -> Option<&Figure> {
        if let Cell::Figure(f) = self {
            Some(f)
        } else {
            None
        }
    }
}

/// One workload: the library's figure beside the raw client's.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Row {
    /// Stable key, e.g. `w2` or `w1-b100-p4`.
    pub(crate) id: String,
    pub(crate) label: String,
    pub(crate) library: Cell,
    pub(crate) raw: Cell,
    /// library ÷ raw of the rate (throughput rows) or of p50 (latency rows).
    pub(crate) ratio: Option<f64>,
    /// Whether the row is about latency (lower is better).
    pub(crate) latency_row: bool,
    /// A unit other than messages per second (`req/msg`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) unit: Option<String>,
}

impl Row {
    pub(crate) fn new(
        id: String,
        label: String,
        library: Cell,
        raw: Cell,
        latency_row: bool,
    ) -> Self {
        let pick = |c: &Cell| {
            c.figure().and_then(|f| {
                if latency_row {
                    f.latency.map(|l| l.p50_us as f64)
                } else {
                    Some(f.rate)
                }
            })
        };
        let ratio = stats::ratio(pick(&library), pick(&raw));
        Row {
            id,
            label,
            library,
            raw,
            ratio,
            latency_row,
            unit: None,
        }
    }

    /// A throughput row (messages per second).
    pub(crate) fn throughput(id: String, label: String, library: Cell, raw: Cell) -> Self {
        Self::new(id, label, library, raw, false)
    }

    /// A latency row (W4-like).
    pub(crate) fn latency(id: String, label: String, library: Cell, raw: Cell) -> Self {
        Self::new(id, label, library, raw, true)
    }

    /// A row whose figure is in `unit`, held in the figure's `rate`.
    pub(crate) fn unit(id: String, label: String, library: Cell, raw: Cell, unit: &str) -> Self {
        let mut r = Self::new(id, label, library, raw, false);
        r.unit = Some(unit.to_owned());
        r
    }
}

/// A work item for one driver.
type Work = Arc<dyn Fn(Arc<dyn Driver>) -> BoxFuture<'static, Res<Figure>> + Send + Sync>;

fn work<F, Fut>(f: F) -> Work
where
    F: Fn(Arc<dyn Driver>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Res<Figure>> + Send + 'static,
{
    Arc::new(move |d| Box::pin(f(d)))
}

/// Runs `w` on a fresh queue of the library (`raw = false`) or the raw client.
async fn side(b: &Arc<dyn Backend>, raw: bool, id: &str, w: &Work) -> Cell {
    let queue = backends::queue_name(&format!("{}-{}", &b.name()[..2.min(b.name().len())], id));
    let driver = if raw {
        match b.raw(&queue).await {
            Ok(Some(d)) => d,
            Ok(None) => return Cell::NotApplicable("no raw client".into()),
            Err(e) => return Cell::Error(format!("raw setup: {e}")),
        }
    } else {
        match backends::lib_driver(b.clone(), &queue).await {
            Ok(d) => d,
            Err(e) => return Cell::Error(format!("open: {e}")),
        }
    };
    workloads::RETRIES.swap(0, std::sync::atomic::Ordering::Relaxed);
    let out = match w(driver.clone()).await {
        Ok(mut f) => {
            let retried = workloads::RETRIES.swap(0, std::sync::atomic::Ordering::Relaxed);
            if retried > 0 {
                let n = format!("{retried} operations retried after a deadlock or lock conflict");
                f.note = Some(f.note.map_or(n.clone(), |x| format!("{x}; {n}")));
            }
            Cell::Figure(f)
        }
        Err(e) => Cell::Error(e.to_string()),
    };
    if let Err(e) = driver.cleanup().await {
        eprintln!("  warning: cleanup of {queue} failed: {e}");
    }
    maintain(b).await;
    out
}

/// Runs the backend's housekeeping between two runs; a failure only warns.
async fn maintain(b: &Arc<dyn Backend>) {
    if let Err(e) = b.maintain().await {
        eprintln!("  warning: housekeeping on {} failed: {e}", b.name());
    }
}

async fn pair(
    b: &Arc<dyn Backend>,
    id: &str,
    label: &str,
    w: Work,
    with_raw: bool,
    latency_row: bool,
) -> Row {
    let lib = side(b, false, id, &w).await;
    let raw = if with_raw {
        side(b, true, id, &w).await
    } else {
        Cell::NotApplicable("no waiting pop in the raw client".into())
    };
    let row = Row::new(id.to_owned(), label.to_owned(), lib, raw, latency_row);
    print_row(&row);
    row
}

/// A short progress line per row on stderr.
pub(crate) fn print_row(r: &Row) {
    let show = |c: &Cell| match c {
        Cell::Figure(f) if r.unit.is_some() => {
            format!("{:.3} {}", f.rate, r.unit.as_deref().unwrap_or_default())
        }
        Cell::Figure(f) => match (&f.latency, r.latency_row) {
            (Some(l), true) => stats::fmt_latency(l),
            (Some(l), false) => format!(
                "{} (p50 {})",
                stats::fmt_rate(f.rate),
                stats::fmt_us(l.p50_us)
            ),
            _ => stats::fmt_rate(f.rate),
        },
        Cell::Error(e) => format!("ERROR {e}"),
        Cell::NotApplicable(_) => "–".into(),
    };
    eprintln!(
        "  {:<44} lib {:<28} raw {:<28} ratio {}",
        r.label,
        show(&r.library),
        show(&r.raw),
        stats::fmt_ratio(r.ratio)
    );
}

/// Every workload of W1–W4 and the sweep on one backend.
pub(crate) async fn workloads(b: &Arc<dyn Backend>, plan: &Plan) -> Vec<Row> {
    let mut rows = Vec::new();
    let p = plan.clone();
    // W1: push only.
    for batch in [1usize, 10, 100] {
        for producers in [1usize, p.producers] {
            let (size, secs) = (p.payload, p.push_secs);
            let w = work(move |d| workloads::push_throughput(d, size, batch, producers, secs));
            let label = format!(
                "W1 push {} × {producers} producer{}",
                if batch == 1 {
                    "single".into()
                } else {
                    format!("batch {batch}")
                },
                if producers == 1 { "" } else { "s" }
            );
            rows.push(
                pair(
                    b,
                    &format!("w1-b{batch}-p{producers}"),
                    &label,
                    w,
                    true,
                    false,
                )
                .await,
            );
        }
    }
    // W2: burn-down of a pre-filled backlog.
    let (backlog, cons, prod, cap, size) =
        (p.backlog, p.consumers, p.producers, p.burn_cap, p.payload);
    let w = work(move |d| async move {
        workloads::fill(d.clone(), backlog, size, 100, prod).await?;
        workloads::burn_down(d, backlog, cons, 100, cap).await
    });
    let label = format!(
        "W2 burn-down {} × {cons} consumers (batch 100)",
        stats::group(backlog)
    );
    let w2 = pair(b, "w2", &label, w, true, false).await;
    let base = w2.library.figure().map(|f| f.rate).filter(|r| *r > 0.0);
    rows.push(w2);
    // W3: end to end at a fraction of W2's library rate, then flat out.
    let levels: Vec<(String, Option<f64>)> = match base {
        Some(r) => vec![
            ("50".into(), Some(r * 0.5)),
            ("80".into(), Some(r * 0.8)),
            ("100".into(), Some(r)),
            ("max".into(), None),
        ],
        None => vec![("max".into(), None)],
    };
    for (level, rate) in levels {
        let (secs, prod, cons, size) = (p.e2e_secs, p.producers, p.consumers, p.payload);
        let w = work(move |d| workloads::end_to_end(d, rate, secs, prod, cons, 100, size));
        let label = match rate {
            Some(r) => format!("W3 end to end at {level}% ({})", stats::fmt_rate(r)),
            None => "W3 end to end, producers flat out".to_owned(),
        };
        rows.push(pair(b, &format!("w3-{level}"), &label, w, true, false).await);
    }
    // W4: idle latency.
    let (samples, size) = (p.idle_samples, p.payload);
    let w = work(move |d| workloads::idle_latency(d, samples, size));
    let label = format!("W4 idle push-to-pop, {samples} samples");
    rows.push(pair(b, "w4", &label, w, b.raw_waits(), true).await);
    // The payload sweep.
    rows.extend(sweep(b, plan).await);
    // JSON payloads with and without zstd.
    rows.extend(crate::compression::rows(b, plan).await);
    rows
}

async fn sweep(b: &Arc<dyn Backend>, plan: &Plan) -> Vec<Row> {
    let mut rows = Vec::new();
    let max_payload = b.max_payload();
    for &size in &plan.sweep_sizes {
        if max_payload.is_some_and(|m| size > m) {
            continue;
        }
        let n = ((plan.sweep_bytes / size) as u64).clamp(200, (plan.backlog / 5).max(200));
        let (prod, cons, cap) = (plan.producers, plan.consumers, plan.burn_cap);
        // One backlog per side: its timed fill is the push figure, then it is burnt down.
        let w = work(move |d| async move {
            let filled = workloads::fill(d.clone(), n, size, 10, prod).await?;
            let mut f = workloads::burn_down(d, n, cons, 100, cap).await?;
            f.fill_rate = Some(filled.rate);
            Ok(f)
        });
        let burn = pair(
            b,
            &format!("sweep-burn-{size}"),
            &format!(
                "sweep {} burn-down, {} msgs",
                fmt_bytes(size),
                stats::group(n)
            ),
            w,
            true,
            false,
        )
        .await;
        let as_push = |c: &Cell| match c {
            Cell::Figure(f) => f.fill_rate.map_or_else(
                || Cell::Error("no fill figure".into()),
                |r| {
                    Cell::Figure(Figure {
                        messages: n,
                        secs: n as f64 / r.max(f64::MIN_POSITIVE),
                        rate: r,
                        latency: None,
                        fill_rate: None,
                        note: None,
                    })
                },
            ),
            other => other.clone(),
        };
        let push = Row::new(
            format!("sweep-push-{size}"),
            format!(
                "sweep {} push batch 10 × {prod} producers, {} msgs",
                fmt_bytes(size),
                stats::group(n)
            ),
            as_push(&burn.library),
            as_push(&burn.raw),
            false,
        );
        print_row(&push);
        rows.push(push);
        rows.push(burn);
    }
    rows
}

/// The worker runtime over `b` with a no-op handler.
pub(crate) async fn worker(b: &Arc<dyn Backend>, total: u64, plan: &Plan) -> Cell {
    let queue = backends::queue_name(&format!("{}-worker", &b.name()[..2]));
    let q = match b.library(&queue).await {
        Ok(q) => q,
        Err(e) => return Cell::Error(e.to_string()),
    };
    let out = match workloads::worker_burn(
        q,
        total,
        plan.consumers,
        plan.worker_concurrency,
        plan.payload,
        plan.burn_cap,
    )
    .await
    {
        Ok(f) => Cell::Figure(f),
        Err(e) => Cell::Error(e.to_string()),
    };
    if let Err(e) = b.drop_library(&queue).await {
        eprintln!("  warning: cleanup of {queue} failed: {e}");
    }
    maintain(b).await;
    out
}

/// Waits a moment between backends so one's background work (checkpoints,
/// vacuum) weighs less on the next.
pub(crate) async fn settle() {
    tokio::time::sleep(Duration::from_millis(500)).await;
}
