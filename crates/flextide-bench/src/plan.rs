//! Sizes of a run: `--quick` for a smoke run, the default for the full one.

use std::time::Duration;

use serde::Serialize;

/// How big each workload is.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Plan {
    pub(crate) quick: bool,
    /// W2's pre-filled backlog.
    pub(crate) backlog: u64,
    /// Producers in the multi-producer W1 runs and in W3.
    pub(crate) producers: usize,
    /// Consumers in W2 and W3.
    pub(crate) consumers: usize,
    /// Seconds of each W1 run.
    pub(crate) push_secs: f64,
    /// Seconds of each W3 level.
    pub(crate) e2e_secs: f64,
    /// W4's serial samples.
    pub(crate) idle_samples: usize,
    /// Default payload size in bytes.
    pub(crate) payload: usize,
    /// Payload sizes of the sweep.
    pub(crate) sweep_sizes: Vec<usize>,
    /// Largest backlog of one sweep step, in bytes.
    pub(crate) sweep_bytes: usize,
    /// Messages of the worker's run over the memory backend.
    pub(crate) worker_memory_backlog: u64,
    /// Handlers of the worker runs.
    pub(crate) worker_concurrency: usize,
    /// Jobs of the worker-at-defaults burn-down (issues #19, #24).
    pub(crate) worker_defaults_backlog: u64,
    /// Its concurrency (everything else at the worker's defaults).
    pub(crate) worker_defaults_concurrency: usize,
    /// Messages of the SQS request-count run.
    pub(crate) sqs_messages: u64,
    /// Longest a burn-down may take before it is cut (and marked so).
    #[serde(skip)]
    pub(crate) burn_cap: Duration,
}

impl Plan {
    pub(crate) fn new(quick: bool) -> Self {
        if quick {
            Plan {
                quick,
                backlog: 5_000,
                producers: 4,
                consumers: 4,
                push_secs: 0.3,
                e2e_secs: 0.5,
                idle_samples: 100,
                payload: 100,
                sweep_sizes: vec![100, 1024, 16 * 1024, 256 * 1024],
                sweep_bytes: 4 << 20,
                worker_memory_backlog: 100_000,
                worker_concurrency: 64,
                worker_defaults_backlog: 5_000,
                worker_defaults_concurrency: 16,
                sqs_messages: 200,
                burn_cap: Duration::from_secs(30),
            }
        } else {
            Plan {
                quick,
                backlog: 100_000,
                producers: 4,
                consumers: 4,
                push_secs: 2.0,
                e2e_secs: 4.0,
                idle_samples: 1_000,
                payload: 100,
                sweep_sizes: vec![100, 1024, 16 * 1024, 256 * 1024],
                sweep_bytes: 32 << 20,
                worker_memory_backlog: 1_000_000,
                worker_concurrency: 64,
                worker_defaults_backlog: 20_000,
                worker_defaults_concurrency: 16,
                sqs_messages: 1_000,
                burn_cap: Duration::from_secs(120),
            }
        }
    }
}
