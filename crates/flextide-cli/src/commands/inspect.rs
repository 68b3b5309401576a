//! `flextide peek | stats | purge`: looking at a queue, and emptying it.

use std::{process::ExitCode, time::Duration};

use clap::Args;
use flextide_queue::{QueueProvider, QueueStats};

use super::{Error, message_json};

#[derive(Debug, Args)]
pub(crate) struct PeekArgs {
    /// How many waiting messages to show.
    #[arg(long, short = 'n', default_value_t = 10)]
    count: usize,
}

#[derive(Debug, Args)]
pub(crate) struct StatsArgs {
    /// One JSON object per line instead of the table.
    #[arg(long)]
    json: bool,
    /// Print again every N seconds until interrupted.
    #[arg(long, value_name = "SECONDS")]
    watch: Option<f64>,
}

#[derive(Debug, Args)]
pub(crate) struct PurgeArgs {
    /// Really delete them.
    #[arg(long)]
    yes: bool,
}

pub(crate) async fn peek(queue: &dyn QueueProvider, args: PeekArgs) -> Result<ExitCode, Error> {
    let waiting = flextide_admin::peek(queue, args.count).await?;
    for m in &waiting {
        println!("{}", message_json(m));
    }
    if waiting.is_empty() {
        eprintln!("no waiting messages in {}", queue.queue_name());
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) async fn stats(queue: &dyn QueueProvider, args: StatsArgs) -> Result<ExitCode, Error> {
    let every = match args.watch {
        None => None,
        Some(s) if s.is_finite() && s >= 0.1 => Some(Duration::from_secs_f64(s)),
        Some(s) => return Err(format!("--watch {s} must be at least 0.1 seconds").into()),
    };
    loop {
        let s = queue.stats().await?;
        if args.json {
            println!("{}", stats_json(queue, &s));
        } else {
            print_table(queue, &s);
        }
        let Some(every) = every else {
            return Ok(ExitCode::SUCCESS);
        };
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = tokio::signal::ctrl_c() => return Ok(ExitCode::SUCCESS),
        }
        if !args.json {
            println!();
        }
    }
}

fn stats_json(queue: &dyn QueueProvider, s: &QueueStats) -> serde_json::Value {
    serde_json::json!(flextide_admin::StatsView::new(queue, s))
}

fn print_table(queue: &dyn QueueProvider, s: &QueueStats) {
    let exact = if queue.capabilities().exact_stats {
        ""
    } else {
        " (approximate)"
    };
    println!(
        "queue          {} [{}]{exact}",
        queue.queue_name(),
        queue.backend_name()
    );
    println!("ready          {}", s.depth);
    println!("in flight      {}", s.in_flight);
    println!("delayed        {}", s.delayed);
    println!("dead letters   {}", s.dead_lettered);
    match s.oldest_age {
        Some(age) => println!("oldest         {:.1}s", age.as_secs_f64()),
        None => println!("oldest         -"),
    }
}

pub(crate) async fn purge(queue: &dyn QueueProvider, args: PurgeArgs) -> Result<ExitCode, Error> {
    if !args.yes {
        let question = flextide_admin::purge_confirmation(queue).await?;
        return Err(format!("{question}; add --yes to confirm").into());
    }
    let n = queue.purge().await?;
    println!("purged {n} messages from {}", queue.queue_name());
    Ok(ExitCode::SUCCESS)
}
