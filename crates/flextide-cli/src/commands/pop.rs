//! `flextide pop`

use std::{process::ExitCode, time::Duration};

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
    for d in &deliveries {
        let mut line = message_json(&d.message);
        line["attempt"] = d.attempt.into();
        println!("{line}");
    }
    let receipts: Vec<_> = deliveries.iter().map(|d| d.receipt.clone()).collect();
    if args.keep {
        for r in &receipts {
            queue.nack(r, Duration::ZERO).await?;
        }
    } else {
        queue.delete_batch(&receipts).await?;
    }
    Ok(ExitCode::SUCCESS)
}
