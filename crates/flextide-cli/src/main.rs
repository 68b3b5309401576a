//! The `flextide` command: run the demo, push and pop tasks, inspect a
//! queue, list and replay dead letters, run a command per message, and set
//! up queues (migrate, list, create, delete).
//!
//! Run with: `cargo run -p flextide-cli -- demo`

mod commands;

use std::{process::ExitCode, time::Duration};

use clap::{Parser, Subcommand};

/// Flextide Queue from the command line. The queue comes from the
/// environment: QUEUE_URL (its scheme picks the backend), or QUEUE_PROVIDER
/// (database, sqlite, postgres, mysql, redis, rabbitmq, sqs, memory; default
/// database) with DATABASE_URL (default: a SQLite file flextide.db here),
/// REDIS_URL, AMQP_URL, SQS_QUEUE_URL, AWS_*; and QUEUE_NAME. See .env.example.
#[derive(Debug, Parser)]
#[command(name = "flextide", version, about)]
struct Cli {
    /// Queue name (overrides QUEUE_NAME).
    #[arg(long, short = 'q', global = true, env = "QUEUE_NAME")]
    queue: Option<String>,
    /// Log filter, e.g. `info` or `flextide_worker=debug` (also RUST_LOG).
    /// Default: warnings, except the demo's expected retries and dead letters.
    #[arg(long, global = true, env = "RUST_LOG")]
    log: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// The main job: enqueue a realistic batch of sample workflow tasks (fast,
    /// slow, flaky and poison ones), run a worker pool over them with a live
    /// progress bar, and print throughput, latency, retries and dead letters.
    Demo(commands::demo::DemoArgs),
    /// Enqueue messages: the DATA argument, a file, or standard input.
    Push(commands::push::PushArgs),
    /// Lease messages and print them as JSON lines; deletes them unless --keep.
    /// Exits with 3 when no message arrived within --wait.
    Pop(commands::pop::PopArgs),
    /// List waiting messages without leasing them (no attempt is spent).
    Peek(commands::inspect::PeekArgs),
    /// Show the queue's depth, in-flight, delayed and dead-letter counts.
    Stats(commands::inspect::StatsArgs),
    /// Delete every message of the queue (dead letters are kept; asks for --yes).
    Purge(commands::inspect::PurgeArgs),
    /// List, replay or purge dead letters.
    #[command(subcommand)]
    Dlq(commands::dlq::DlqCommand),
    /// Run a command per message with the payload on standard input; its exit
    /// code decides: 0 acknowledges, 65 (EX_DATAERR) dead-letters at once,
    /// anything else retries with backoff until the attempts run out.
    Work(commands::work::WorkArgs),
    /// Create or upgrade the SQL tables, saying which steps it applied
    /// (other backends have no schema: it says so).
    Migrate,
    /// List the queues with their counts (SQL, Redis, SQS; not RabbitMQ).
    Queues(commands::admin::QueuesArgs),
    /// Create a queue and its helpers, or delete one.
    #[command(subcommand)]
    Queue(commands::admin::QueueCommand),
    /// Periodic schedules from a TOML file (--file or FLEXTIDE_SCHEDULES):
    /// list them with their next runs, or run them (one task per slot, on
    /// any number of hosts, where the backend deduplicates).
    #[command(subcommand)]
    Schedule(commands::schedule::ScheduleCommand),
    /// Serve the web dashboard of the queues (QUEUE_NAMES, else every queue
    /// the backend lists) on 127.0.0.1:9494 until Ctrl-C: counts, rates,
    /// waiting messages, dead letters, replay and purge (feature `dashboard`).
    Dashboard(commands::dashboard::DashboardArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // lapin logs at ERROR every channel the broker closes, also the one
    // closed by an expected miss (a passive declare of a queue that does not
    // exist, which is how `stats` on RabbitMQ learns a queue is absent), and
    // returns the same error to the library, which handles or reports it.
    let filter = cli.log.clone().unwrap_or_else(|| match cli.command {
        // The demo's failures are staged; its summary reports them.
        Command::Demo(_) => "warn,flextide_worker=off,lapin::channel=off".into(),
        _ => "warn,lapin::channel=off".into(),
    });
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_new(&filter).unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        // Colours only for a person at a terminal, never into a log file.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(commands::dispatch(cli));
    runtime.shutdown_timeout(Duration::from_secs(2));
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
