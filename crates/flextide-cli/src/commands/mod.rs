//! One module per subcommand.

pub(crate) mod admin;
pub(crate) mod dashboard;
pub(crate) mod demo;
pub(crate) mod dlq;
pub(crate) mod inspect;
pub(crate) mod pop;
pub(crate) mod push;
pub(crate) mod schedule;
pub(crate) mod work;

use std::{process::ExitCode, sync::Arc, time::Duration};

use flextide_queue::{Config, Message, QueueProvider};

use crate::{Cli, Command};

/// Any failure of a command; printed with its causes.
pub(crate) type Error = Box<dyn std::error::Error + Send + Sync>;

pub(crate) async fn dispatch(cli: Cli) -> Result<ExitCode, Error> {
    let queue = cli.queue.filter(|q| !q.trim().is_empty());
    match cli.command {
        Command::Demo(args) => demo::run(queue, args).await,
        Command::Work(args) => {
            let Some(q) = open_waiting(queue).await? else {
                return Ok(ExitCode::from(130));
            };
            let result = work::run(q.clone(), args).await;
            close(&*q).await;
            result
        }
        Command::Migrate => admin::migrate(queue).await,
        Command::Dashboard(args) => dashboard::run(queue, args).await,
        Command::Queues(args) => admin::queues(queue, args).await,
        Command::Queue(cmd) => admin::queue(cmd).await,
        Command::Schedule(cmd) => schedule::run(queue, cmd).await,
        // Looking only: opened without creating anything.
        Command::Peek(args) => {
            let q = open_existing(queue).await?;
            let result = inspect::peek(&*q, args).await;
            close(&*q).await;
            result
        }
        Command::Stats(args) => {
            let q = open_existing(queue).await?;
            let result = inspect::stats(&*q, args).await;
            close(&*q).await;
            result
        }
        Command::Dlq(dlq::DlqCommand::List { limit }) => {
            let q = open_existing(queue).await?;
            let result = dlq::run(&*q, dlq::DlqCommand::List { limit }).await;
            close(&*q).await;
            result
        }
        one_shot => {
            let q = open_lasting(queue).await?;
            let result = match one_shot {
                Command::Push(args) => push::run(&*q, args).await,
                Command::Pop(args) => pop::run(&*q, args).await,
                Command::Purge(args) => inspect::purge(&*q, args).await,
                Command::Dlq(cmd) => dlq::run(&*q, cmd).await,
                Command::Demo(_)
                | Command::Work(_)
                | Command::Migrate
                | Command::Dashboard(_)
                | Command::Queues(_)
                | Command::Queue(_)
                | Command::Schedule(_)
                | Command::Peek(_)
                | Command::Stats(_) => unreachable!("matched above"),
            };
            close(&*q).await;
            result
        }
    }
}

/// Closes the handle before the process exits, so the broker does not take
/// the exit for a crash (RabbitMQ would count prefetched messages as
/// delivered).
async fn close(queue: &dyn QueueProvider) {
    if let Err(e) = queue.close().await {
        tracing::warn!("closing the queue failed: {e}");
    }
}

/// The configuration from the environment, with `--queue` applied in place
/// of `QUEUE_NAME` (so a valid `--queue` wins over an invalid `QUEUE_NAME`).
pub(crate) fn config(queue: Option<String>) -> Result<Config, Error> {
    if let Some(name) = &queue {
        flextide_queue::validate_queue_name(name)?;
    }
    Ok(Config::from_lookup(|key| match (key, &queue) {
        ("QUEUE_NAME", Some(name)) => Some(name.clone()),
        _ => std::env::var(key).ok(),
    })?)
}

/// Like `flextide_queue::connect`, for a long-running worker: while the server cannot be
/// reached (a retryable error: refused, restarting, loading), waits and
/// tries again with a doubling pause up to 30 s, saying what it waits for.
/// Returns `None` when Ctrl-C ends the wait.
pub(crate) async fn open_waiting(
    queue: Option<String>,
) -> Result<Option<Arc<dyn QueueProvider>>, Error> {
    let config = config(queue)?;
    let mut pause = Duration::from_secs(1);
    loop {
        match flextide_queue::connect(&config).await {
            Ok(q) => return Ok(Some(q)),
            Err(e) if e.is_retryable() => {
                tracing::warn!(
                    "waiting for the queue ({}): {e}; trying again in {}s",
                    config.describe(),
                    pause.as_secs()
                );
                tokio::select! {
                    _ = tokio::time::sleep(pause) => {}
                    _ = tokio::signal::ctrl_c() => return Ok(None),
                }
                pause = (pause * 2).min(Duration::from_secs(30));
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Like `flextide_queue::connect`, for a command that ends as soon as it has acted: refuses
/// the in-process memory backend, whose messages would be gone when the
/// command exits.
pub(crate) async fn open_lasting(queue: Option<String>) -> Result<Arc<dyn QueueProvider>, Error> {
    let config = config(queue)?;
    if config.backend == "memory" {
        return Err("QUEUE_PROVIDER=memory keeps messages inside one process: what this command pushed or saw would be gone when it exits. Use it with `flextide demo` (or in your own program), or choose a backend that keeps messages (the default SQLite file needs no server)".into());
    }
    Ok(flextide_queue::connect(&config).await?)
}

/// Like [`open_lasting`], for a command that only looks: the queue is
/// opened without creating anything the backend lets it avoid (no tables
/// migrated, no database file created).
pub(crate) async fn open_existing(queue: Option<String>) -> Result<Arc<dyn QueueProvider>, Error> {
    let config = config(queue)?;
    if config.backend == "memory" {
        return open_lasting(Some(config.queue_name)).await;
    }
    let connector = flextide_queue::registry().by_name(&config.backend)?.clone();
    flextide_queue::validate_queue_name(&config.queue_name)?;
    Ok(connector
        .open_existing(&config.url, &config.queue_name, config.options.clone())
        .await?)
}

/// A message as one JSON object, for output: the payload as text when it
/// is UTF-8, as hex otherwise (the shape the dashboard's API serves too).
pub(crate) fn message_json(message: &Message) -> serde_json::Value {
    flextide_admin::message_json(message)
}
