//! One module per subcommand.

pub(crate) mod demo;
pub(crate) mod dlq;
pub(crate) mod pop;
pub(crate) mod push;
pub(crate) mod work;

use std::{process::ExitCode, sync::Arc, time::SystemTime};

use flextide_queue::{Config, Message, QueueProvider};

use crate::{Cli, Command};

/// Any failure of a command; printed with its causes.
pub(crate) type Error = Box<dyn std::error::Error + Send + Sync>;

pub(crate) async fn dispatch(cli: Cli) -> Result<ExitCode, Error> {
    match cli.command {
        Command::Demo(args) => demo::run(cli.queue, args).await,
        Command::Push(args) => push::run(&*open(cli.queue).await?, args).await,
        Command::Pop(args) => pop::run(&*open(cli.queue).await?, args).await,
        Command::Stats => stats(&*open(cli.queue).await?).await,
        Command::Dlq(cmd) => dlq::run(&*open(cli.queue).await?, cmd).await,
        Command::Work(args) => work::run(open(cli.queue).await?, args).await,
    }
}

/// The configuration from the environment, with `--queue` applied.
pub(crate) fn config(queue: Option<String>) -> Result<Config, Error> {
    let mut config = Config::from_env()?;
    if let Some(name) = queue {
        flextide_queue::validate_queue_name(&name)?;
        config.queue_name = name;
    }
    Ok(config)
}

/// Opens the queue the environment (and `--queue`) names.
pub(crate) async fn open(queue: Option<String>) -> Result<Arc<dyn QueueProvider>, Error> {
    Ok(flextide_queue::connect(&config(queue)?).await?)
}

async fn stats(queue: &dyn QueueProvider) -> Result<ExitCode, Error> {
    let s = queue.stats().await?;
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
    Ok(ExitCode::SUCCESS)
}

/// A message as one JSON object, for output: the payload as text when it
/// is UTF-8, as hex otherwise.
pub(crate) fn message_json(message: &Message) -> serde_json::Value {
    let mut v = serde_json::json!({
        "id": message.id.as_str(),
        "headers": message.headers,
        "priority": message.priority,
        "ordering_key": message.ordering_key,
        "enqueued_at": message.enqueued_at.and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok()).map(|d| d.as_millis() as u64),
    });
    match std::str::from_utf8(&message.payload) {
        Ok(text) => v["payload"] = text.into(),
        Err(_) => {
            let hex: String = message.payload.iter().map(|b| format!("{b:02x}")).collect();
            v["payload_hex"] = hex.into();
        }
    }
    v
}
