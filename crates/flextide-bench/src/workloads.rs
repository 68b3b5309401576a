//! The workloads (W1–W4, the payload sweep, the worker runs), each a plain
//! async function over a [`Driver`].

use std::{
    sync::{
        Arc, LazyLock,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use bytes::{BufMut, Bytes, BytesMut};
use flextide_queue_core::{Message, QueueProvider};
use flextide_worker::{CancellationToken, HandlerError, Task, Worker, handler_fn};
use serde::Serialize;

use crate::{
    driver::{Driver, Handle, Res},
    stats::{self, Latency},
};

/// The clock payload timestamps count from: one per process, so producer and
/// consumer read the same monotonic clock.
static EPOCH: LazyLock<Instant> = LazyLock::new(Instant::now);

/// The figure of one measured run.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Figure {
    /// Messages counted (pushed, or deleted for consuming workloads).
    pub(crate) messages: u64,
    pub(crate) secs: f64,
    pub(crate) rate: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) latency: Option<Latency>,
    /// The rate of the timed pre-fill, where the run had one (the sweep).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) fill_rate: Option<f64>,
    /// Anything the run wants the reader to know (partial runs, errors).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) note: Option<String>,
}

impl Figure {
    pub(crate) fn new(messages: u64, secs: f64) -> Self {
        Figure {
            messages,
            secs,
            rate: stats::rate(messages, secs),
            latency: None,
            fill_rate: None,
            note: None,
        }
    }
}

/// A payload of `size` bytes (at least 8) starting with the current time.
pub(crate) fn stamped(size: usize) -> Bytes {
    let mut b = BytesMut::with_capacity(size.max(8));
    b.put_u64(EPOCH.elapsed().as_nanos() as u64);
    b.resize(size.max(8), b'x');
    b.freeze()
}

/// Microseconds since the payload's stamp.
pub(crate) fn age_us(payload: &[u8]) -> Option<u64> {
    let stamp = u64::from_be_bytes(payload.get(..8)?.try_into().ok()?);
    let now = EPOCH.elapsed().as_nanos() as u64;
    Some(now.saturating_sub(stamp) / 1_000)
}

/// Operations retried after a transient conflict (deadlock, serialization
/// failure, busy database) since the last reset; the report notes them.
pub(crate) static RETRIES: AtomicU64 = AtomicU64::new(0);

fn transient(e: &crate::driver::BoxError) -> bool {
    let text = e.to_string();
    [
        "Deadlock",
        "deadlock",
        "40001",
        "40P01",
        "database is locked",
    ]
    .iter()
    .any(|t| text.contains(t))
}

/// Runs `op`, again (up to 5 times) after a transient conflict, as any
/// producer or consumer would.
async fn retrying<T, F, Fut>(mut op: F) -> Res<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Res<T>>,
{
    let mut tries = 0;
    loop {
        match op().await {
            Err(e) if tries < 5 && transient(&e) => {
                tries += 1;
                RETRIES.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(2 * tries)).await;
            }
            other => return other,
        }
    }
}

async fn push(d: &Arc<dyn Driver>, n: usize, size: usize) -> Res<()> {
    let batch = batch_of(n, size);
    retrying(|| d.push(batch.clone())).await
}

async fn pop(d: &Arc<dyn Driver>, max: usize, wait: Duration) -> Res<Vec<crate::driver::Popped>> {
    retrying(|| d.pop(max, wait)).await
}

async fn delete(d: &Arc<dyn Driver>, handles: Vec<Handle>) -> Res<()> {
    retrying(|| d.delete(handles.clone())).await
}

fn batch_of(n: usize, size: usize) -> Vec<Bytes> {
    let one = stamped(size);
    vec![one; n]
}

/// W1: producers push batches of `batch` for `secs`; counts messages pushed.
pub(crate) async fn push_throughput(
    d: Arc<dyn Driver>,
    size: usize,
    batch: usize,
    producers: usize,
    secs: f64,
) -> Res<Figure> {
    let count = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let until = start + Duration::from_secs_f64(secs);
    let mut tasks = Vec::new();
    for _ in 0..producers {
        let (d, count) = (d.clone(), count.clone());
        tasks.push(tokio::spawn(async move {
            while Instant::now() < until {
                push(&d, batch, size).await?;
                count.fetch_add(batch as u64, Ordering::Relaxed);
            }
            Res::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(Figure::new(
        count.load(Ordering::Relaxed),
        start.elapsed().as_secs_f64(),
    ))
}

/// Pushes `total` messages with `producers` concurrent batch pushes of
/// `batch`; returns the push figure (used as the sweep's push rate).
pub(crate) async fn fill(
    d: Arc<dyn Driver>,
    total: u64,
    size: usize,
    batch: usize,
    producers: usize,
) -> Res<Figure> {
    let next = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..producers {
        let (d, next) = (d.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let from = next.fetch_add(batch as u64, Ordering::Relaxed);
                if from >= total {
                    return Res::Ok(());
                }
                let n = (total - from).min(batch as u64) as usize;
                push(&d, n, size).await?;
            }
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(Figure::new(total, start.elapsed().as_secs_f64()))
}

/// W2: `consumers` pop batches of `batch` and delete them in one call each,
/// until `total` deletes have returned (or `cap` passed).
pub(crate) async fn burn_down(
    d: Arc<dyn Driver>,
    total: u64,
    consumers: usize,
    batch: usize,
    cap: Duration,
) -> Res<Figure> {
    let done = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let until = start + cap;
    let mut tasks = Vec::new();
    for _ in 0..consumers {
        let (d, done) = (d.clone(), done.clone());
        tasks.push(tokio::spawn(async move {
            // The time of this consumer's last counted delete: the run ends
            // there, not when idle consumers give up their last wait.
            let mut last = start;
            while done.load(Ordering::Relaxed) < total && Instant::now() < until {
                let got = pop(&d, batch, Duration::from_millis(100)).await?;
                if got.is_empty() {
                    continue;
                }
                let n = got.len() as u64;
                delete(&d, got.into_iter().map(|p| p.handle).collect()).await?;
                done.fetch_add(n, Ordering::Relaxed);
                last = Instant::now();
            }
            Res::Ok(last)
        }));
    }
    let mut last = start;
    for t in tasks {
        last = last.max(t.await??);
    }
    let secs = last.duration_since(start).as_secs_f64();
    let n = done.load(Ordering::Relaxed).min(total);
    let mut f = Figure::new(n, secs);
    if n < total {
        f.note = Some(format!(
            "stopped at the {:.0} s cap after {n} of {total}",
            cap.as_secs_f64()
        ));
    }
    Ok(f)
}

/// W3: producers held at `rate` messages/s in total (`None`: flat out, batches
/// of `batch`) for `secs` while `consumers` pop and delete; measures
/// push-to-start latency (push call to pop return) and the delivered rate.
pub(crate) async fn end_to_end(
    d: Arc<dyn Driver>,
    rate: Option<f64>,
    secs: f64,
    producers: usize,
    consumers: usize,
    batch: usize,
    size: usize,
) -> Res<Figure> {
    let pushed = Arc::new(AtomicU64::new(0));
    let got = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let hist = Arc::new(std::sync::Mutex::new(stats::new_histogram()));
    let start = Instant::now();
    let until = start + Duration::from_secs_f64(secs);
    let mut prod = Vec::new();
    for _ in 0..producers {
        let (d, pushed) = (d.clone(), pushed.clone());
        let per = rate.map(|r| r / producers as f64);
        prod.push(tokio::spawn(async move {
            let mut sent = 0u64;
            loop {
                let now = Instant::now();
                if now >= until {
                    return Res::Ok(());
                }
                let n = match per {
                    None => batch,
                    Some(per) => {
                        let due = (now.duration_since(start).as_secs_f64() * per) as u64;
                        if due <= sent {
                            let next = start + Duration::from_secs_f64((sent + 1) as f64 / per);
                            tokio::time::sleep_until(next.min(until).into()).await;
                            continue;
                        }
                        ((due - sent) as usize).min(batch)
                    }
                };
                push(&d, n, size).await?;
                sent += n as u64;
                pushed.fetch_add(n as u64, Ordering::Relaxed);
            }
        }));
    }
    let last_ns = Arc::new(AtomicU64::new(0));
    let failure = Arc::new(std::sync::Mutex::new(None::<String>));
    let mut cons = Vec::new();
    for _ in 0..consumers {
        let (d, got, stop, hist) = (d.clone(), got.clone(), stop.clone(), hist.clone());
        let (pushed, last_ns, failure) = (pushed.clone(), last_ns.clone(), failure.clone());
        cons.push(tokio::spawn(async move {
            let run = async {
                loop {
                    if stop.load(Ordering::Relaxed)
                        && got.load(Ordering::Relaxed) >= pushed.load(Ordering::Relaxed)
                    {
                        return Res::Ok(());
                    }
                    let msgs = pop(&d, 100, Duration::from_millis(50)).await?;
                    if msgs.is_empty() {
                        continue;
                    }
                    {
                        let mut h = hist.lock().expect("histogram lock");
                        for m in &msgs {
                            if let Some(us) = age_us(&m.payload) {
                                let _ = h.record(us.max(1));
                            }
                        }
                    }
                    let n = msgs.len() as u64;
                    delete(&d, msgs.into_iter().map(|m| m.handle).collect()).await?;
                    last_ns.fetch_max(start.elapsed().as_nanos() as u64, Ordering::Relaxed);
                    got.fetch_add(n, Ordering::Relaxed);
                }
            };
            if let Err(e) = run.await {
                *failure.lock().expect("failure lock") = Some(e.to_string());
                stop.store(true, Ordering::Relaxed);
            }
        }));
    }
    let mut producer_error = None;
    for p in prod {
        if let Err(e) = p.await? {
            producer_error = Some(e.to_string());
        }
    }
    stop.store(true, Ordering::Relaxed);
    // Drain what is left, within a bound.
    let drain_until = Instant::now() + Duration::from_secs_f64(secs.max(5.0));
    while got.load(Ordering::Relaxed) < pushed.load(Ordering::Relaxed)
        && Instant::now() < drain_until
        && failure.lock().expect("failure lock").is_none()
    {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for c in cons {
        c.abort();
    }
    if let Some(e) = producer_error.or_else(|| failure.lock().expect("failure lock").take()) {
        return Err(e.into());
    }
    let (p, g) = (pushed.load(Ordering::Relaxed), got.load(Ordering::Relaxed));
    let mut f = Figure::new(g, last_ns.load(Ordering::Relaxed) as f64 / 1e9);
    f.latency = stats::summarize(&hist.lock().expect("histogram lock"));
    if g < p {
        f.note = Some(format!(
            "{} of {p} pushed were not consumed within the drain time",
            p - g
        ));
    }
    Ok(f)
}

/// W4: `samples` serial pushes, each received by a pop already waiting;
/// latency from the push call to the pop's return.
pub(crate) async fn idle_latency(d: Arc<dyn Driver>, samples: usize, size: usize) -> Res<Figure> {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Res<u64>>(1);
    let stop = Arc::new(AtomicBool::new(false));
    let consumer = {
        let (d, stop) = (d.clone(), stop.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let r = d.pop(1, Duration::from_secs(2)).await;
                let msgs = match r {
                    Ok(m) => m,
                    Err(e) => {
                        let _ = tx.send(Err(e)).await;
                        return;
                    }
                };
                for m in msgs {
                    let us = age_us(&m.payload).unwrap_or(0);
                    let del = d.delete(vec![m.handle]).await;
                    let _ = tx.send(del.map(|()| us)).await;
                }
            }
        })
    };
    let mut hist = stats::new_histogram();
    let start = Instant::now();
    // Let the consumer start waiting before the first push.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut note = None;
    for _ in 0..samples {
        d.push(vec![stamped(size)]).await?;
        match tokio::time::timeout(Duration::from_secs(10), rx.recv()).await {
            Ok(Some(Ok(us))) => {
                let _ = hist.record(us.max(1));
            }
            Ok(Some(Err(e))) => {
                stop.store(true, Ordering::Relaxed);
                consumer.abort();
                return Err(e);
            }
            _ => {
                note = Some("a sample was not received within 10 s; stopped".to_owned());
                break;
            }
        }
        // The consumer deletes, then waits again: give it that moment.
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    stop.store(true, Ordering::Relaxed);
    consumer.abort();
    let mut f = Figure::new(hist.len(), start.elapsed().as_secs_f64());
    f.latency = stats::summarize(&hist);
    f.note = note;
    Ok(f)
}

/// Pushes `total` messages of `size` bytes onto `queue` in batches.
pub(crate) async fn prefill(queue: Arc<dyn QueueProvider>, total: u64, size: usize) -> Res<()> {
    let chunk = queue
        .capabilities()
        .max_batch
        .unwrap_or(1000)
        .clamp(1, 1000) as u64;
    let mut left = total;
    while left > 0 {
        let n = left.min(chunk);
        queue
            .push_batch((0..n).map(|_| Message::new(stamped(size))).collect())
            .await?;
        left -= n;
    }
    Ok(())
}

/// The worker runtime with a no-op handler over `queue`, pre-filled with
/// `total` messages: messages acknowledged per second until all are. It runs
/// a pool of `workers` workers, as many as W2 has consumers, so the two
/// figures compare like with like.
pub(crate) async fn worker_burn(
    queue: Arc<dyn QueueProvider>,
    total: u64,
    workers: usize,
    concurrency: usize,
    size: usize,
    cap: Duration,
) -> Res<Figure> {
    prefill(queue.clone(), total, size).await?;
    worker_pool_run(queue, total, workers, concurrency, cap).await
}

/// Like [`worker_run`], with a fixed pool of `workers` workers.
async fn worker_pool_run(
    queue: Arc<dyn QueueProvider>,
    total: u64,
    workers: usize,
    concurrency: usize,
    cap: Duration,
) -> Res<Figure> {
    let pool = Worker::builder(queue)
        .concurrency(concurrency)
        .prefetch(concurrency)
        .poll_wait(Duration::from_millis(200))
        .build_pool(
            handler_fn(|_task: Task| async { Ok::<_, HandlerError>(()) }),
            flextide_worker::Autoscale::new(workers, workers),
        );
    let progress = pool.progress();
    let token = CancellationToken::new();
    let start = Instant::now();
    let run = tokio::spawn(pool.run(token.clone()));
    finish_run(progress, run, token, start, total, cap).await
}

/// Runs the worker with a no-op handler until `total` messages are processed.
pub(crate) async fn worker_run(
    queue: Arc<dyn QueueProvider>,
    total: u64,
    concurrency: usize,
    cap: Duration,
) -> Res<Figure> {
    let worker = Worker::builder(queue)
        .concurrency(concurrency)
        .prefetch(concurrency)
        .poll_wait(Duration::from_millis(200))
        .build(handler_fn(|_task: Task| async {
            Ok::<_, HandlerError>(())
        }));
    let progress = worker.progress();
    let token = CancellationToken::new();
    let start = Instant::now();
    let run = tokio::spawn(worker.run(token.clone()));
    finish_run(progress, run, token, start, total, cap).await
}

/// Waits until `total` messages are processed (or `cap` passes), stops the
/// run and turns what it did into a figure.
async fn finish_run(
    progress: flextide_worker::Progress,
    run: tokio::task::JoinHandle<flextide_worker::WorkerReport>,
    token: CancellationToken,
    start: Instant,
    total: u64,
    cap: Duration,
) -> Res<Figure> {
    let until = start + cap;
    while progress.snapshot().processed < total && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let secs = start.elapsed().as_secs_f64();
    let processed = progress.snapshot().processed.min(total);
    token.cancel();
    let report = run.await?;
    let mut f = Figure::new(processed, secs);
    let mut notes = Vec::new();
    if processed < total {
        notes.push(format!("stopped at the cap after {processed} of {total}"));
    }
    if report.failed + report.settle_errors > 0 {
        notes.push(format!(
            "{} failed, {} settle errors",
            report.failed, report.settle_errors
        ));
    }
    if !notes.is_empty() {
        f.note = Some(notes.join("; "));
    }
    Ok(f)
}

/// The handles of a driver of one kind, e.g. `Handle::Tag`.
pub(crate) fn tags(handles: Vec<Handle>) -> Res<Vec<u64>> {
    crate::driver::expect_handles(handles, |h| {
        if let Handle::Tag(t) = h {
            Some(t)
        } else {
            None
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_round_trip() {
        let p = stamped(100);
        assert_eq!(p.len(), 100);
        assert!(age_us(&p).unwrap() < 5_000_000);
        assert_eq!(stamped(2).len(), 8);
        assert!(age_us(b"short").is_none());
    }
}
