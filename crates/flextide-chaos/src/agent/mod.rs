//! The agents the orchestrator spawns as separate processes, so it can
//! SIGKILL them: producers push ids, consumers handle them. Each writes
//! the evidence the checker reads into its own log file.

pub(crate) mod consume;
pub(crate) mod produce;

use std::{sync::Arc, time::Duration};

use clap::Args;
use flextide_queue::{QueueOptions, QueueProvider};
use tokio::time::Instant;

/// Where the queue is, shared by both agents.
#[derive(Debug, Clone, Args)]
pub(crate) struct Target {
    /// The backend URL (a private server's).
    #[arg(long)]
    pub url: String,
    /// The queue name.
    #[arg(long)]
    pub queue: String,
    /// The lease (visibility timeout), in milliseconds.
    #[arg(long, default_value_t = 5000)]
    pub lease_ms: u64,
    /// How long to keep trying to open the queue, in seconds (the server
    /// may be down when the agent starts).
    #[arg(long, default_value_t = 180)]
    pub open_secs: u64,
}

impl Target {
    /// Opens the queue, retrying while the server is unreachable.
    pub(crate) async fn open(&self) -> Result<Arc<dyn QueueProvider>, String> {
        // No attempt limit in the queue: redeliveries caused by killed
        // workers must not turn into dead letters.
        let options = QueueOptions::default()
            .lease(Duration::from_millis(self.lease_ms))
            .max_attempts(None);
        let deadline = Instant::now() + Duration::from_secs(self.open_secs);
        let mut failures = 0u32;
        loop {
            let attempt = tokio::time::timeout(
                Duration::from_secs(15),
                flextide_queue::open(&self.url, &self.queue, options.clone()),
            )
            .await;
            let error = match attempt {
                Ok(Ok(queue)) => {
                    if failures > 0 {
                        eprintln!("opened the queue after {failures} failed attempts");
                    }
                    return Ok(queue);
                }
                Ok(Err(e)) => e.to_string(),
                Err(_) => "timed out after 15 s".to_owned(),
            };
            failures += 1;
            if Instant::now() > deadline {
                return Err(format!(
                    "could not open the queue within {} s: {error}",
                    self.open_secs
                ));
            }
            if failures == 1 {
                eprintln!("opening the queue failed, retrying: {error}");
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}
