//! `flextide push`

use std::{io::Read, path::PathBuf, process::ExitCode, time::Duration};

use clap::Args;
use flextide_queue::{Message, QueueProvider};
use indicatif::{ProgressBar, ProgressStyle};

use super::Error;

#[derive(Debug, Args)]
pub(crate) struct PushArgs {
    /// The payload. Without it, --file or standard input is read.
    data: Option<String>,
    /// Read the payload from this file.
    #[arg(long, short, conflicts_with = "data")]
    file: Option<PathBuf>,
    /// Read standard input line by line, one message per line.
    #[arg(long, conflicts_with_all = ["data", "file"])]
    lines: bool,
    /// Check that the payload is JSON and mark it `application/json`.
    #[arg(long)]
    json: bool,
    /// Priority, higher first (backends with priority only).
    #[arg(long, default_value_t = 0)]
    priority: u8,
    /// Delay delivery by this many seconds.
    #[arg(long, value_name = "SECONDS")]
    delay: Option<f64>,
    /// Ordering key: messages with the same key are delivered in order, one at a time.
    #[arg(long)]
    key: Option<String>,
    /// Header `KEY=VALUE`; repeat for more.
    #[arg(long = "header", short = 'H', value_name = "KEY=VALUE")]
    headers: Vec<String>,
    /// Push the message this many times (batched, with a progress bar).
    #[arg(long, default_value_t = 1)]
    count: usize,
    /// Print the id of every message pushed, one per line (by default only
    /// up to 10 ids are printed, then a count).
    #[arg(long)]
    ids: bool,
}

pub(crate) async fn run(queue: &dyn QueueProvider, args: PushArgs) -> Result<ExitCode, Error> {
    let payloads: Vec<Vec<u8>> = if let Some(data) = &args.data {
        vec![data.clone().into_bytes()]
    } else if let Some(path) = &args.file {
        vec![std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?]
    } else {
        let mut input = Vec::new();
        std::io::stdin().read_to_end(&mut input)?;
        if input.is_empty() {
            return Err(
                "nothing on standard input: give the payload as an argument (`push DATA`, `push ''` for an empty message), with --file, or on standard input"
                    .into(),
            );
        }
        if args.lines {
            input
                .split(|b| *b == b'\n')
                // Windows line ends: the `\r` belongs to the line break.
                .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
                .filter(|l| !l.is_empty())
                .map(<[u8]>::to_vec)
                .collect()
        } else {
            vec![input]
        }
    };
    let mut messages = Vec::with_capacity(payloads.len() * args.count);
    for payload in &payloads {
        if args.json {
            serde_json::from_slice::<serde_json::Value>(payload)
                .map_err(|e| format!("payload is not valid JSON: {e}"))?;
        }
        for _ in 0..args.count {
            messages.push(build(&args, payload.clone())?);
        }
    }
    let total = messages.len();
    let bar = if total > 1000 {
        ProgressBar::new(total as u64)
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template("pushing {bar:40} {pos}/{len} {per_sec}")
            .expect("valid template"),
    );
    let chunk = queue.capabilities().max_batch.unwrap_or(500).min(500);
    let mut pushed = 0;
    let mut rest = messages;
    while !rest.is_empty() {
        let tail = rest.split_off(rest.len().min(chunk));
        let batch = std::mem::replace(&mut rest, tail);
        let n = batch.len();
        let ids = if n == 1 {
            vec![queue.push(batch.into_iter().next().expect("one")).await?]
        } else {
            queue.push_batch(batch).await?
        };
        if total <= 10 || args.ids {
            for id in &ids {
                println!("{id}");
            }
        }
        pushed += n;
        bar.set_position(pushed as u64);
    }
    bar.finish_and_clear();
    if total > 10 && !args.ids {
        println!("pushed {pushed} messages to {}", queue.queue_name());
    }
    Ok(ExitCode::SUCCESS)
}

fn build(args: &PushArgs, payload: Vec<u8>) -> Result<Message, Error> {
    let mut m = Message::new(payload).with_priority(args.priority);
    if args.json {
        m = m.with_header(flextide_queue::CONTENT_TYPE, "application/json");
    }
    if let Some(secs) = args.delay {
        if !(secs.is_finite() && secs >= 0.0) {
            return Err(format!("--delay {secs} is not a number of seconds").into());
        }
        m = m.with_delay(Duration::from_secs_f64(secs));
    }
    if let Some(key) = &args.key {
        m = m.with_ordering_key(key.clone());
    }
    for h in &args.headers {
        let (k, v) = h
            .split_once('=')
            .ok_or_else(|| format!("--header {h:?} is not KEY=VALUE"))?;
        m = m.with_header(k, v);
    }
    Ok(m)
}
