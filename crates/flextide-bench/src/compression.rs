//! The compression rows: 16 KiB and 256 KiB JSON payloads (order lines, as
//! tasks carry them; not the sweep's padding, which any compressor erases),
//! pushed in batches and burnt down, through the library as it is and
//! through the zstd wrapper, each beside the raw client with the same
//! payloads in the same run.

use std::{sync::Arc, time::Duration};

use async_trait::async_trait;
use bytes::Bytes;
use flextide_queue::compression::{Compressed, Compression};
use flextide_queue_core::QueueProvider;

use crate::{
    backends::{self, Backend},
    driver::{Driver, Handle, LibDriver, Popped, Res},
    plan::Plan,
    run::{Cell, Row, print_row},
    stats, workloads,
};

/// The payload sizes of the rows.
const SIZES: [usize; 2] = [16 * 1024, 256 * 1024];

/// A JSON document of about `size` bytes: order lines with varied skus,
/// quantities and prices, as a task payload carries them.
pub(crate) fn json_body(size: usize) -> Bytes {
    let mut s = String::with_capacity(size + 128);
    s.push_str(
        r#"{"order":"ord-20261130-000417","customer":{"id":"cus_8812","tier":"gold"},"lines":["#,
    );
    let mut i: u64 = 0;
    while s.len() < size.saturating_sub(16) {
        let x = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40;
        s.push_str(&format!(
            r#"{{"sku":"SKU-{:05}","qty":{},"price":{}.{:02},"warehouse":"{}"}},"#,
            x % 100_000,
            1 + x % 9,
            x % 500,
            x % 100,
            ["fra-1", "ams-2", "dub-1", "waw-3"][(x % 4) as usize]
        ));
        i += 1;
    }
    s.push_str("{}]}");
    Bytes::from(s)
}

/// Pushes JSON of the workload's size instead of its padded payloads.
struct Json {
    inner: Arc<dyn Driver>,
}

#[async_trait]
impl Driver for Json {
    async fn push(&self, batch: Vec<Bytes>) -> Res<()> {
        let body = json_body(batch.first().map_or(0, Bytes::len));
        self.inner.push(vec![body; batch.len()]).await
    }
    async fn pop(&self, max: usize, wait: Duration) -> Res<Vec<Popped>> {
        self.inner.pop(max, wait).await
    }
    async fn delete(&self, handles: Vec<Handle>) -> Res<()> {
        self.inner.delete(handles).await
    }
    async fn cleanup(&self) -> Res<()> {
        self.inner.cleanup().await
    }
}

#[derive(Clone, Copy)]
enum Side {
    Library,
    Zstd,
    Raw,
}

async fn driver(b: &Arc<dyn Backend>, side: Side, queue: &str) -> Res<Option<Arc<dyn Driver>>> {
    Ok(match side {
        Side::Raw => b.raw(queue).await?,
        Side::Library => Some(backends::lib_driver(b.clone(), queue).await?),
        Side::Zstd => {
            let inner = b.library(queue).await?;
            let wrapped: Arc<dyn QueueProvider> =
                Arc::new(Compressed::new(inner, Compression::default()));
            let (b, name) = (b.clone(), queue.to_owned());
            Some(Arc::new(LibDriver {
                queue: wrapped,
                dropper: Box::new(move || {
                    let (b, n) = (b.clone(), name.clone());
                    Box::pin(async move { b.drop_library(&n).await })
                }),
            }))
        }
    })
}

/// Fills a fresh queue with `n` JSON payloads of `size` (batches of 10 from
/// the plan's producers), then burns it down; the fill rate rides along.
async fn measure(b: &Arc<dyn Backend>, side: Side, size: usize, n: u64, plan: &Plan) -> Cell {
    let queue = backends::queue_name(&format!("{}-zstd", &b.name()[..2.min(b.name().len())]));
    let inner = match driver(b, side, &queue).await {
        Ok(Some(d)) => d,
        Ok(None) => return Cell::NotApplicable("no raw client".into()),
        Err(e) => return Cell::Error(format!("setup: {e}")),
    };
    let d: Arc<dyn Driver> = Arc::new(Json { inner });
    let run = async {
        let filled = workloads::fill(d.clone(), n, size, 10, plan.producers).await?;
        let mut f = workloads::burn_down(d.clone(), n, plan.consumers, 100, plan.burn_cap).await?;
        f.fill_rate = Some(filled.rate);
        Res::Ok(f)
    };
    let out = match run.await {
        Ok(f) => Cell::Figure(f),
        Err(e) => Cell::Error(e.to_string()),
    };
    if let Err(e) = d.cleanup().await {
        eprintln!("  warning: cleanup of {queue} failed: {e}");
    }
    out
}

/// The push figure of a measured cell (its fill).
fn as_push(c: &Cell, n: u64) -> Cell {
    match c {
        Cell::Figure(f) => match f.fill_rate {
            Some(r) => {
                let mut push = f.clone();
                push.secs = n as f64 / r.max(f64::MIN_POSITIVE);
                push.rate = r;
                push.fill_rate = None;
                Cell::Figure(push)
            }
            None => Cell::Error("no fill figure".into()),
        },
        other => other.clone(),
    }
}

/// The rows for backend `b`: per size, push and burn-down without and
/// with zstd, each beside the raw client's figure for the same JSON.
pub(crate) async fn rows(b: &Arc<dyn Backend>, plan: &Plan) -> Vec<Row> {
    let mut rows = Vec::new();
    for size in SIZES {
        if b.max_payload().is_some_and(|m| size > m) {
            continue;
        }
        let n = ((plan.sweep_bytes / size) as u64).clamp(200, (plan.backlog / 5).max(200));
        let raw = measure(b, Side::Raw, size, n, plan).await;
        for (side, tag, what) in [
            (Side::Library, "json", "JSON"),
            (Side::Zstd, "zstd", "JSON, zstd"),
        ] {
            let lib = measure(b, side, size, n, plan).await;
            let count = stats::group(n);
            let kib = size / 1024;
            for row in [
                Row::new(
                    format!("{tag}-push-{size}"),
                    format!(
                        "{what} {kib} KiB push batch 10 × {} producers, {count} msgs",
                        plan.producers
                    ),
                    as_push(&lib, n),
                    as_push(&raw, n),
                    false,
                ),
                Row::new(
                    format!("{tag}-burn-{size}"),
                    format!("{what} {kib} KiB burn-down, {count} msgs"),
                    lib.clone(),
                    raw.clone(),
                    false,
                ),
            ] {
                print_row(&row);
                rows.push(row);
            }
        }
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_bodies_are_json_of_about_the_size_and_compress_like_json() {
        for size in SIZES {
            let b = json_body(size);
            assert!(b.len() >= size - 16 && b.len() <= size + 128, "{}", b.len());
            let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
            assert!(v["lines"].as_array().unwrap().len() > 100);
        }
    }
}
