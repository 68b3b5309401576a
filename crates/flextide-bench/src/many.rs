//! `--many-queues N`: the cost of many queues, each used once (issue #25).
//!
//! Per backend: N never-used names are only looked at (open, `stats`,
//! close: what `flextide stats -q NAME` does), which must leave the
//! broker's footprint unchanged; then N queues each get one message pushed
//! and drained; then all N are dropped with `drop_queue`. The broker's
//! footprint (its own figures: memory, keys, queues, table sizes) is read
//! before and after each phase, and a health probe (a fresh queue's push,
//! pop, ack and drop, timed) runs at the end. Four names are worked on at a
//! time, as a few processes would.

use std::{sync::Arc, time::Duration};

use flextide_queue_core::Message;
use futures::{StreamExt, stream};
use tokio::time::Instant;

use crate::{backends::Backend, driver::Res};

/// Names worked on at once.
const CONCURRENCY: usize = 4;
/// Longest wait for one broker call before the run counts it as hung.
const CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// What one backend's run measured.
#[derive(Debug)]
pub(crate) struct ManyQueues {
    pub(crate) backend: &'static str,
    pub(crate) n: usize,
    /// Footprint before anything, after the look-only phase, after the
    /// used phase, after dropping: the backend's own figures.
    pub(crate) footprints: Vec<(&'static str, Vec<(String, String)>)>,
    /// (phase, seconds, errors).
    pub(crate) phases: Vec<(&'static str, f64, usize)>,
    /// The health probe after the run: its time, or why it failed.
    pub(crate) health: Result<Duration, String>,
}

async fn timed<T>(what: &str, f: impl std::future::Future<Output = Res<T>>) -> Res<T> {
    match tokio::time::timeout(CALL_TIMEOUT, f).await {
        Ok(r) => r,
        Err(_) => Err(format!("{what} took longer than {CALL_TIMEOUT:?}").into()),
    }
}

/// Closes a handle; a close that hangs is an error of the run.
async fn close(q: &Arc<dyn flextide_queue_core::QueueProvider>) -> Res<()> {
    timed("close", async { Ok(q.close().await?) }).await
}

/// Looks at a name without writing: open, stats, close.
async fn look(b: &Arc<dyn Backend>, name: String) -> Res<()> {
    let q = timed("open", b.library(&name)).await?;
    let looked = timed("stats", async { Ok(q.stats().await?) }).await;
    let closed = close(&q).await;
    looked.and(closed).map(drop)
}

/// Uses a queue once: push one message, pop it, ack it.
async fn use_once(b: &Arc<dyn Backend>, name: String) -> Res<()> {
    let q = timed("open", b.library(&name)).await?;
    let result = timed("push, pop, ack", async {
        q.push(Message::new("once")).await?;
        let d = q
            .pop(Duration::from_secs(10))
            .await?
            .ok_or("the message pushed was not delivered within 10 s")?;
        q.delete(&d.receipt).await?;
        Ok(())
    })
    .await;
    let closed = close(&q).await;
    result.and(closed)
}

/// Drops a queue through a handle.
async fn drop_one(b: &Arc<dyn Backend>, name: String) -> Res<()> {
    let q = timed("open", b.library(&name)).await?;
    let result = timed("drop_queue", async { Ok(q.drop_queue().await?) }).await;
    let closed = close(&q).await;
    result.and(closed)
}

/// Runs `work` on every name, `CONCURRENCY` at a time; (seconds, errors).
async fn phase<F, Fut>(label: &str, b: &Arc<dyn Backend>, names: &[String], work: F) -> (f64, usize)
where
    F: Fn(Arc<dyn Backend>, String) -> Fut,
    Fut: std::future::Future<Output = Res<()>>,
{
    let started = Instant::now();
    let results: Vec<Res<()>> = stream::iter(names.iter().cloned())
        .map(|n| work(b.clone(), n))
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    let errors: Vec<String> = results
        .into_iter()
        .filter_map(|r| r.err().map(|e| e.to_string()))
        .collect();
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "  {label}: {} names in {secs:.1} s ({:.1} ms each, {} at a time), {} errors{}",
        names.len(),
        secs * 1000.0 / names.len().max(1) as f64,
        CONCURRENCY,
        errors.len(),
        errors
            .first()
            .map(|e| format!(" (first: {e})"))
            .unwrap_or_default()
    );
    (secs, errors.len())
}

/// A fresh queue's push, pop, ack and drop, timed: is the broker still well?
async fn health(b: &Arc<dyn Backend>) -> Result<Duration, String> {
    let name = format!(
        "ftmq_health_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    let started = Instant::now();
    let probe = async {
        use_once(b, name.clone()).await?;
        drop_one(b, name.clone()).await
    };
    match tokio::time::timeout(Duration::from_secs(60), probe).await {
        Ok(Ok(())) => Ok(started.elapsed()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("no answer within 60 s".into()),
    }
}

/// The backend's footprint and this process's resident memory.
async fn footprint(b: &Arc<dyn Backend>) -> Vec<(String, String)> {
    let mut f = b.footprint().await;
    let rss = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:").map(|v| v.trim().to_owned()))
        })
        .unwrap_or_else(|| "unknown".into());
    f.push(("bench RSS".into(), rss));
    f
}

pub(crate) async fn run(b: &Arc<dyn Backend>, n: usize) -> ManyQueues {
    let run = uuid::Uuid::new_v4().simple().to_string();
    let run = &run[..6];
    let looked: Vec<String> = (0..n).map(|i| format!("ftmq_{run}_look_{i}")).collect();
    let used: Vec<String> = (0..n).map(|i| format!("ftmq_{run}_used_{i}")).collect();
    let mut footprints = vec![("before", footprint(b).await)];
    let mut phases = Vec::new();

    let (s, e) = phase(
        "look only (open, stats, close)",
        b,
        &looked,
        |b, n| async move { look(&b, n).await },
    )
    .await;
    phases.push(("look only", s, e));
    footprints.push(("after looking", footprint(b).await));

    let (s, e) = phase(
        "use once (open, push, pop, ack, close)",
        b,
        &used,
        |b, n| async move { use_once(&b, n).await },
    )
    .await;
    phases.push(("use once", s, e));
    footprints.push(("after using", footprint(b).await));

    let all: Vec<String> = used.iter().chain(&looked).cloned().collect();
    let (s, e) = phase(
        "drop (open, drop_queue, close)",
        b,
        &all,
        |b, n| async move { drop_one(&b, n).await },
    )
    .await;
    phases.push(("drop", s, e));
    footprints.push(("after dropping", footprint(b).await));
    let health = health(b).await;
    eprintln!("  health probe: {health:?}");
    ManyQueues {
        backend: b.name(),
        n,
        footprints,
        phases,
        health,
    }
}

/// The results as markdown.
pub(crate) fn markdown(runs: &[ManyQueues]) -> String {
    let mut out = String::from("# Many queues\n\n");
    for r in runs {
        out.push_str(&format!("## {} — {} names per phase\n\n", r.backend, r.n));
        out.push_str("| phase | total | per queue | errors |\n|---|---|---|---|\n");
        for (label, secs, errors) in &r.phases {
            let count = if *label == "drop" { 2 * r.n } else { r.n };
            out.push_str(&format!(
                "| {label} | {secs:.1} s | {:.2} ms | {errors} |\n",
                secs * 1000.0 / count.max(1) as f64
            ));
        }
        out.push_str("\n| footprint | ");
        let keys: Vec<String> = r
            .footprints
            .first()
            .map(|(_, f)| f.iter().map(|(k, _)| k.clone()).collect())
            .unwrap_or_default();
        out.push_str(&keys.join(" | "));
        out.push_str(" |\n|---|");
        out.push_str(&"---|".repeat(keys.len()));
        out.push('\n');
        for (label, values) in &r.footprints {
            out.push_str(&format!("| {label} | "));
            let row: Vec<String> = keys
                .iter()
                .map(|k| {
                    values
                        .iter()
                        .find(|(vk, _)| vk == k)
                        .map(|(_, v)| v.clone())
                        .unwrap_or_default()
                })
                .collect();
            out.push_str(&row.join(" | "));
            out.push_str(" |\n");
        }
        out.push_str(&format!(
            "\nHealth after the run (a fresh queue's push, pop, ack, drop): {}\n\n",
            match &r.health {
                Ok(d) => format!("ok in {:.0} ms", d.as_secs_f64() * 1000.0),
                Err(e) => format!("FAILED: {e}"),
            }
        ));
    }
    out
}
