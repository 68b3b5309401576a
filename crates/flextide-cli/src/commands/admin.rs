//! `flextide migrate | queues | queue create | queue delete`: setting up and
//! taking down queues, through the backend's connector.

use std::{process::ExitCode, sync::Arc};

use clap::{Args, Subcommand};
use flextide_queue::{Config, Connector, QueueError, QueueStats};

use super::{Error, config};

#[derive(Debug, Args)]
pub(crate) struct QueuesArgs {
    /// One JSON object per queue instead of the table.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Subcommand)]
pub(crate) enum QueueCommand {
    /// Create a queue and its helpers (idempotent): the SQL tables, an SQS
    /// queue with its dead-letter queue and redrive policy, a RabbitMQ
    /// queue with its dead-letter queue.
    Create {
        /// The queue's name.
        name: String,
        /// SQS: receives before SQS moves a message to the dead-letter
        /// queue (default QUEUE_MAX_ATTEMPTS, else 10; 0: no redrive
        /// policy). Elsewhere the worker applies QUEUE_MAX_ATTEMPTS itself.
        #[arg(long, value_name = "N")]
        max_receive: Option<u32>,
    },
    /// Delete a queue with all its messages, dead letters and helpers
    /// (asks for --yes).
    Delete {
        /// The queue's name.
        name: String,
        /// Really delete it.
        #[arg(long)]
        yes: bool,
    },
}

/// The configuration and its backend's connector. The in-process memory
/// backend is refused: a command would only see a broker of its own.
fn connector(queue: Option<String>) -> Result<(Config, Arc<dyn Connector>), Error> {
    let config = config(queue)?;
    if config.backend == "memory" {
        return Err("QUEUE_PROVIDER=memory keeps queues inside one process: there is nothing for this command to set up or list. Choose a backend that keeps messages (the default SQLite file needs no server)".into());
    }
    let connector = flextide_queue::registry().by_name(&config.backend)?.clone();
    Ok((config, connector))
}

pub(crate) async fn migrate(queue: Option<String>) -> Result<ExitCode, Error> {
    let config = config(queue)?;
    let connector = flextide_queue::registry().by_name(&config.backend)?.clone();
    match connector.migrate(&config.url).await? {
        None => println!(
            "nothing to migrate: the {} backend keeps no schema (queues are created as they are used, or with `flextide queue create`)",
            config.backend
        ),
        Some(applied) if applied.is_empty() => {
            println!("schema up to date ({})", config.describe());
        }
        Some(applied) => {
            for step in &applied {
                println!("applied {step}");
            }
            println!("schema up to date ({})", config.describe());
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) async fn queues(queue: Option<String>, args: QueuesArgs) -> Result<ExitCode, Error> {
    let (config, connector) = connector(queue)?;
    let names = match connector.list_queues(&config.url).await {
        Err(QueueError::Unsupported { hint, .. }) => {
            return Err(format!(
                "the {} backend cannot list its queues{}",
                config.backend,
                hint.map(|h| format!(": {h}")).unwrap_or_default()
            )
            .into());
        }
        other => other?,
    };
    if names.is_empty() && !args.json {
        eprintln!("no queues at {}", config.describe());
        return Ok(ExitCode::SUCCESS);
    }
    if !args.json {
        println!(
            "{:<32} {:>10} {:>10} {:>10} {:>10}",
            "QUEUE", "READY", "IN FLIGHT", "DELAYED", "DEAD"
        );
    }
    let mut failed = false;
    for name in &names {
        match stats_of(&*connector, &config, name).await {
            Ok(s) if args.json => println!(
                "{}",
                serde_json::json!({
                    "queue": name,
                    "ready": s.depth,
                    "in_flight": s.in_flight,
                    "delayed": s.delayed,
                    "dead_letters": s.dead_lettered,
                })
            ),
            Ok(s) => println!(
                "{name:<32} {:>10} {:>10} {:>10} {:>10}",
                s.depth, s.in_flight, s.delayed, s.dead_lettered
            ),
            Err(e) => {
                failed = true;
                eprintln!("{name}: {e}");
            }
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// Counts of one queue, opened without creating anything.
async fn stats_of(
    connector: &dyn Connector,
    config: &Config,
    name: &str,
) -> Result<QueueStats, Error> {
    let q = connector
        .open_existing(&config.url, name, config.options.clone())
        .await?;
    let stats = q.stats().await;
    let _ = q.close().await;
    Ok(stats?)
}

pub(crate) async fn queue(cmd: QueueCommand) -> Result<ExitCode, Error> {
    match cmd {
        QueueCommand::Create { name, max_receive } => {
            let (config, connector) = connector(Some(name.clone()))?;
            let mut options = config.options.clone();
            if let Some(n) = max_receive {
                options = options.max_attempts((n > 0).then_some(n));
            }
            connector.create_queue(&config.url, &name, options).await?;
            println!("queue {name} is ready ({})", config.describe());
            Ok(ExitCode::SUCCESS)
        }
        QueueCommand::Delete { name, yes } => {
            let (config, connector) = connector(Some(name.clone()))?;
            let q = connector
                .open_existing(&config.url, &name, config.options.clone())
                .await?;
            if !q.capabilities().drop_queue {
                let _ = q.close().await;
                return Err(unsupported_drop(&config.backend).into());
            }
            if !yes {
                let s = q.stats().await;
                let _ = q.close().await;
                let counts = match s {
                    Ok(s) => format!(
                        " ({} ready, {} in flight, {} delayed, {} dead letters)",
                        s.depth, s.in_flight, s.delayed, s.dead_lettered
                    ),
                    Err(_) => String::new(),
                };
                return Err(format!(
                    "this deletes the queue {name} with every message, dead letter and helper it has{counts}, for good; add --yes to confirm"
                )
                .into());
            }
            let dropped = q.drop_queue().await;
            let _ = q.close().await;
            match dropped {
                Ok(()) => {
                    println!("deleted queue {name} ({})", config.describe());
                    Ok(ExitCode::SUCCESS)
                }
                Err(QueueError::Unsupported { .. }) => {
                    Err(unsupported_drop(&config.backend).into())
                }
                Err(e) => Err(e.into()),
            }
        }
    }
}

fn unsupported_drop(backend: &str) -> String {
    format!(
        "the {backend} backend cannot delete queues (drop_queue is not supported); `flextide purge --yes` and `flextide dlq purge --yes` empty it instead"
    )
}
