//! `flextide pop`

use std::{
    io::{ErrorKind, Write},
    process::ExitCode,
    time::Duration,
};

use clap::Args;
use flextide_queue::QueueProvider;

use super::{Error, message_json};

#[derive(Debug, Args)]
pub(crate) struct PopArgs {
    /// How many messages to take at most.
    #[arg(long, short = 'n', default_value_t = 1)]
    count: usize,
    /// Seconds to wait for a first message.
    #[arg(long, default_value_t = 5.0)]
    wait: f64,
    /// Give the messages back (visible again at once) instead of deleting them.
    #[arg(long)]
    keep: bool,
}

pub(crate) async fn run(queue: &dyn QueueProvider, args: PopArgs) -> Result<ExitCode, Error> {
    if !(args.wait.is_finite() && args.wait >= 0.0) {
        return Err(format!("--wait {} is not a number of seconds", args.wait).into());
    }
    let deliveries = queue
        .pop_batch(args.count, Duration::from_secs_f64(args.wait))
        .await?;
    if deliveries.is_empty() {
        eprintln!("no message within {}s", args.wait);
        return Ok(ExitCode::from(3));
    }
    // Print one line at a time; a reader that went away (`| head -1`)
    // closes the pipe, and what it did not get goes back at once.
    let mut out = std::io::stdout().lock();
    let mut printed = 0;
    let mut closed = None;
    for d in &deliveries {
        let mut line = message_json(&d.message);
        line["attempt"] = d.attempt.into();
        match writeln!(out, "{line}").and_then(|()| out.flush()) {
            Ok(()) => printed += 1,
            Err(e) => {
                closed = Some(e);
                break;
            }
        }
    }
    drop(out);
    let (shown, unshown) = deliveries.split_at(printed);
    let receipts = |ds: &[flextide_queue::Delivery]| -> Vec<_> {
        ds.iter().map(|d| d.receipt.clone()).collect()
    };
    // Not shown: as if never popped (released where the backend can).
    for r in receipts(unshown) {
        flextide_queue::give_back_unstarted(queue, &r).await?;
    }
    if args.keep {
        give_back(queue, &receipts(shown)).await?;
    } else if !shown.is_empty() {
        queue.delete_batch(&receipts(shown)).await?;
    }
    match closed {
        None => Ok(ExitCode::SUCCESS),
        Some(e) if e.kind() == ErrorKind::BrokenPipe => {
            if !unshown.is_empty() {
                eprintln!(
                    "output closed after {printed} of {} messages; gave the other {} back",
                    deliveries.len(),
                    unshown.len()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Some(e) => Err(format!(
            "writing to standard output failed after {printed} messages ({e}); gave the other {} back",
            unshown.len()
        )
        .into()),
    }
}

/// Makes these deliveries visible again at once; they were shown, so their
/// attempt counts.
async fn give_back(
    queue: &dyn QueueProvider,
    receipts: &[flextide_queue::Receipt],
) -> Result<(), Error> {
    for r in receipts {
        queue.nack(r, Duration::ZERO).await?;
    }
    Ok(())
}
