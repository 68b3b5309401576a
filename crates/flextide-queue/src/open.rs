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
    connector
        .open(&config.url, &config.queue_name, config.options.clone())
        .await
}
