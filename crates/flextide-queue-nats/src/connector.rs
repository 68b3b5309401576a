//! Opening NATS queues by URL: the entry of the facade's registry.

use std::sync::Arc;

use async_trait::async_trait;
use flextide_queue_core::{Connector, QueueOptions, QueueProvider, Result};

use crate::{BACKEND, Nats, SCHEMES, URL_ENV};

/// Opens NATS JetStream queues from `nats://` and `tls://` URLs
/// (`QUEUE_PROVIDER=nats`; the URL from `NATS_URL`).
///
/// ```
/// use flextide_queue_core::Connector;
/// use flextide_queue_nats::NatsConnector;
///
/// assert!(NatsConnector.accepts("nats://127.0.0.1:4222"));
/// assert!(!NatsConnector.accepts("redis://127.0.0.1:6379"));
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct NatsConnector;

#[async_trait]
impl Connector for NatsConnector {
    fn name(&self) -> &'static str {
        BACKEND
    }

    fn schemes(&self) -> &'static [&'static str] {
        SCHEMES
    }

    fn url_vars(&self) -> &'static [&'static str] {
        &[URL_ENV]
    }

    fn example_url(&self) -> &'static str {
        "nats://127.0.0.1:4222"
    }

    /// Opens `queue` with a client of its own and the default
    /// configuration. The URL's credentials never appear in an error.
    async fn open(
        &self,
        url: &str,
        queue: &str,
        options: QueueOptions,
    ) -> Result<Arc<dyn QueueProvider>> {
        let client = Nats::new(url)?;
        Ok(Arc::new(client.open(queue, options).await?))
    }

    /// Creates the queue's stream, consumer and dead-letter stream;
    /// idempotent.
    async fn create_queue(&self, url: &str, queue: &str, options: QueueOptions) -> Result<()> {
        Nats::new(url)?.create_queue(queue, options).await
    }

    /// The queues' names: the `FTQ_` streams, sorted.
    async fn list_queues(&self, url: &str) -> Result<Vec<String>> {
        Nats::new(url)?.queue_names().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_schemes_and_variables() {
        let c = NatsConnector;
        assert_eq!(c.name(), "nats");
        assert_eq!(c.schemes(), ["nats", "tls"]);
        assert_eq!(c.url_vars(), ["NATS_URL"]);
        assert!(c.accepts("NATS://h:4222"));
        assert!(c.accepts(c.example_url()));
    }

    #[tokio::test]
    async fn migrate_has_nothing_to_do() {
        let migrated = NatsConnector.migrate("nats://127.0.0.1:1").await.unwrap();
        assert_eq!(migrated, None);
    }

    #[tokio::test]
    async fn a_bad_url_does_not_show_its_password() {
        let opened = NatsConnector
            .open(
                "nats://user:s3cret@host:notaport",
                "q",
                QueueOptions::default(),
            )
            .await;
        let Err(err) = opened else {
            panic!("an invalid URL opened");
        };
        assert!(!err.to_string().contains("s3cret"), "{err}");
    }
}
