//! Opening the configured backend.

use std::sync::Arc;

use flextide_queue_core::{QueueError, QueueProvider};

use crate::Config;

/// Opens the queue the environment describes: `QUEUE_URL`, or
/// `QUEUE_PROVIDER` plus the chosen backend's usual variables (see
/// [`Config::from_env`]).
pub async fn from_env() -> Result<Arc<dyn QueueProvider>, QueueError> {
    connect(&Config::from_env()?).await
}

/// Opens the queue `config` describes, with the process-wide
/// [`registry`](crate::registry).
pub async fn connect(config: &Config) -> Result<Arc<dyn QueueProvider>, QueueError> {
    tracing::debug!(?config, "opening queue");
    let registry = crate::registry();
    let connector = registry.by_name(&config.backend)?;
    flextide_queue_core::validate_queue_name(&config.queue_name)?;
    let queue = connector
        .open(&config.url, &config.queue_name, config.options.clone())
        .await?;
    compress(queue, config.compress_above)
}

/// Wraps the queue in zstd compression when the configuration asks for it.
#[cfg(feature = "zstd")]
fn compress(
    queue: Arc<dyn QueueProvider>,
    above: Option<usize>,
) -> Result<Arc<dyn QueueProvider>, QueueError> {
    use flextide_queue_compression::{Compressed, Compression};
    Ok(match above {
        Some(bytes) => Arc::new(Compressed::new(
            queue,
            Compression::default().threshold(bytes),
        )),
        None => queue,
    })
}

/// Without the `zstd` feature, asking for compression is an error that
/// says how to get it (never a silent uncompressed queue).
#[cfg(not(feature = "zstd"))]
fn compress(
    queue: Arc<dyn QueueProvider>,
    above: Option<usize>,
) -> Result<Arc<dyn QueueProvider>, QueueError> {
    match above {
        Some(_) => Err(QueueError::configuration(
            "config",
            "QUEUE_COMPRESSION=zstd needs the `zstd` feature of flextide-queue \
             (the flextide command: build with --features zstd, or full)",
        )),
        None => Ok(queue),
    }
}
