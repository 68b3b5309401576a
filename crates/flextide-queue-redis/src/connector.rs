//! Opening a Redis queue by URL, for the facade's registry.

use std::sync::Arc;

use async_trait::async_trait;
use flextide_queue_core::{Connector, QueueOptions, QueueProvider, Result};

use crate::{BACKEND, PREFIX_VAR, RedisBackend, RedisConfig, SCHEMES, URL_VAR};

/// Opens queues of the Redis backend from a `redis://` URL (read from
/// `REDIS_URL` by the facade). The key prefix is `REDIS_KEY_PREFIX` when set.
///
/// ```
/// use flextide_queue_redis::{Connector, RedisConnector};
/// assert!(RedisConnector.accepts("redis://127.0.0.1:6379/"));
/// assert_eq!(RedisConnector.url_vars(), ["REDIS_URL"]);
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct RedisConnector;

#[async_trait]
impl Connector for RedisConnector {
    fn name(&self) -> &'static str {
        BACKEND
    }

    fn schemes(&self) -> &'static [&'static str] {
        SCHEMES
    }

    fn url_vars(&self) -> &'static [&'static str] {
        &[URL_VAR]
    }

    fn example_url(&self) -> &'static str {
        "redis://127.0.0.1:6379/"
    }

    async fn open(
        &self,
        url: &str,
        queue: &str,
        options: QueueOptions,
    ) -> Result<Arc<dyn QueueProvider>> {
        let backend = connect(url).await?;
        Ok(Arc::new(backend.open(queue, options).await?))
    }

    async fn open_existing(
        &self,
        url: &str,
        queue: &str,
        options: QueueOptions,
    ) -> Result<Arc<dyn QueueProvider>> {
        Ok(Arc::new(connect(url).await?.open_existing(queue, options)?))
    }

    /// Creates the queue's stream and consumer group now (opening alone
    /// writes nothing: clause 15 of the contract), so `flextide queues`
    /// lists it.
    async fn create_queue(&self, url: &str, queue: &str, options: QueueOptions) -> Result<()> {
        let _ = options;
        connect(url).await?.create_queue(queue).await
    }

    async fn list_queues(&self, url: &str) -> Result<Vec<String>> {
        connect(url).await?.queue_names().await
    }
}

/// A backend on `url`, with the key prefix of `REDIS_KEY_PREFIX` when set.
async fn connect(url: &str) -> Result<RedisBackend> {
    let mut config = RedisConfig::new(url);
    if let Ok(prefix) = std::env::var(PREFIX_VAR) {
        config = config.key_prefix(prefix);
    }
    RedisBackend::connect(config).await
}
