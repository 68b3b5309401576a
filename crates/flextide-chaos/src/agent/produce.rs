//! `flextide-chaos produce`: pushes ids `first..first+count` at a steady
//! rate, retrying every failed push, and logs an id durably only after its
//! push returned Ok. Ids it has to give up on (past its deadline) go to a
//! second log, so the checker knows they may exist without an ack.

use std::{collections::HashSet, path::PathBuf, time::Duration};

use clap::Args;
use flextide_queue::{Message, QueueError};
use tokio::time::Instant;

use super::Target;
use crate::logs::DurableLog;

/// Arguments of `produce`.
#[derive(Debug, Args)]
pub(crate) struct Produce {
    #[command(flatten)]
    target: Target,
    /// The first id.
    #[arg(long)]
    first: u64,
    /// How many ids.
    #[arg(long)]
    count: u64,
    /// Pushes per second (0: as fast as possible).
    #[arg(long, default_value_t = 0.0)]
    rate: f64,
    /// Ids per push_batch.
    #[arg(long, default_value_t = 20)]
    batch: usize,
    /// The acknowledged-ids log.
    #[arg(long)]
    acked: PathBuf,
    /// The given-up ids log.
    #[arg(long)]
    abandoned: PathBuf,
    /// Give up on what is not pushed after this many seconds.
    #[arg(long, default_value_t = 600)]
    deadline_secs: u64,
}

/// Runs a producer to the end.
pub(crate) async fn run(args: Produce) -> Result<(), String> {
    let start = Instant::now();
    let deadline = start + Duration::from_secs(args.deadline_secs);
    let queue = args.target.open().await?;
    let acked = DurableLog::open(&args.acked)?;
    let end = args.first + args.count;
    let mut next = args.first;
    let mut retries = 0u64;
    while next < end {
        if args.rate > 0.0 {
            let due = start + Duration::from_secs_f64((next - args.first) as f64 / args.rate);
            tokio::time::sleep_until(due).await;
        }
        let mut pending: Vec<u64> = (next..end.min(next + args.batch as u64)).collect();
        next += pending.len() as u64;
        let mut backoff = Duration::from_millis(100);
        while !pending.is_empty() {
            if Instant::now() > deadline {
                let rest: String = pending
                    .iter()
                    .copied()
                    .chain(next..end)
                    .map(|id| format!("{id}\n"))
                    .collect();
                DurableLog::open(&args.abandoned)?.append(rest).await?;
                return Err(format!(
                    "gave up on {} ids after {} s of failing pushes",
                    pending.len() as u64 + (end - next),
                    args.deadline_secs
                ));
            }
            let messages = pending.iter().map(|id| Message::new(id.to_string()));
            let pushed = tokio::time::timeout(
                Duration::from_secs(15),
                queue.push_batch(messages.collect()),
            )
            .await;
            let failed: HashSet<usize> = match pushed {
                Ok(Ok(_)) => HashSet::new(),
                Ok(Err(QueueError::PartialBatch { failures, .. })) => {
                    if let Some(first) = failures.first() {
                        note_retry(&mut retries, &first.error.to_string());
                    }
                    failures.iter().map(|f| f.index).collect()
                }
                Ok(Err(e)) => {
                    note_retry(&mut retries, &e.to_string());
                    (0..pending.len()).collect()
                }
                Err(_) => {
                    note_retry(&mut retries, "push timed out after 15 s");
                    (0..pending.len()).collect()
                }
            };
            let mut retry = Vec::new();
            let mut lines = String::new();
            for (i, id) in pending.iter().enumerate() {
                if failed.contains(&i) {
                    retry.push(*id);
                } else {
                    lines.push_str(&format!("{id}\n"));
                }
            }
            if !lines.is_empty() {
                acked.append(lines).await?;
            }
            pending = retry;
            if !pending.is_empty() {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
        }
    }
    eprintln!("pushed {} ids with {retries} retried pushes", args.count);
    Ok(())
}

fn note_retry(retries: &mut u64, error: &str) {
    *retries += 1;
    // The first failures of an outage say what happened; the rest are noise.
    if *retries <= 3 || retries.is_power_of_two() {
        eprintln!("push failed ({retries} so far), retrying: {error}");
    }
}
