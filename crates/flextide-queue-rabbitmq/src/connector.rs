//! Opening RabbitMQ queues by URL: the entry of the facade's registry.

use std::sync::Arc;

use async_trait::async_trait;
use flextide_queue_core::{Connector, QueueError, QueueOptions, QueueProvider, Result};

use crate::{BACKEND, RabbitMq, SCHEMES, URL_ENV};

/// Opens RabbitMQ queues from `amqp://` and `amqps://` URLs
/// (`QUEUE_PROVIDER=rabbitmq` or `amqp`; the URL from `AMQP_URL`).
///
/// ```
/// use flextide_queue_core::Connector;
/// use flextide_queue_rabbitmq::RabbitMqConnector;
///
/// assert!(RabbitMqConnector.accepts("amqp://guest:guest@127.0.0.1:5672/%2f"));
/// assert!(!RabbitMqConnector.accepts("redis://127.0.0.1:6379"));
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct RabbitMqConnector;

#[async_trait]
impl Connector for RabbitMqConnector {
    fn name(&self) -> &'static str {
        BACKEND
    }

    fn aliases(&self) -> &'static [&'static str] {
        &["amqp"]
    }

    fn schemes(&self) -> &'static [&'static str] {
        SCHEMES
    }

    fn url_vars(&self) -> &'static [&'static str] {
        &[URL_ENV]
    }

    fn example_url(&self) -> &'static str {
        "amqp://guest:guest@127.0.0.1:5672/%2f"
    }

    /// Opens `queue` with a client of its own and the default
    /// configuration. The URL's password never appears in an error.
    async fn open(
        &self,
        url: &str,
        queue: &str,
        options: QueueOptions,
    ) -> Result<Arc<dyn QueueProvider>> {
        let client = RabbitMq::new(url)?;
        Ok(Arc::new(client.open(queue, options).await?))
    }

    async fn open_existing(
        &self,
        url: &str,
        queue: &str,
        options: QueueOptions,
    ) -> Result<Arc<dyn QueueProvider>> {
        let client = RabbitMq::new(url)?;
        Ok(Arc::new(client.open_existing(queue, options).await?))
    }

    /// Declares the queue and its dead-letter queue now (opening alone
    /// declares nothing: clause 15 of the contract).
    async fn create_queue(&self, url: &str, queue: &str, options: QueueOptions) -> Result<()> {
        let client = RabbitMq::new(url)?;
        let handle = client.open(queue, options).await?;
        let declared = handle.declare().await;
        let closed = QueueProvider::close(&handle).await;
        declared.and(closed)
    }

    /// AMQP 0-9-1 has no way to enumerate queues: only the management
    /// plugin (HTTP API, `rabbitmqctl`) can.
    async fn list_queues(&self, url: &str) -> Result<Vec<String>> {
        let _ = url;
        Err(QueueError::unsupported_because(
            BACKEND,
            "list_queues",
            "AMQP cannot enumerate queues; run `rabbitmqctl list_queues name messages` on the broker, or open the management UI",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_schemes_and_variables() {
        let c = RabbitMqConnector;
        assert_eq!(c.name(), "rabbitmq");
        assert_eq!(c.aliases(), ["amqp"]);
        assert_eq!(c.schemes(), ["amqp", "amqps"]);
        assert_eq!(c.url_vars(), ["AMQP_URL"]);
        assert!(c.accepts("AMQPS://h/%2f"));
        assert!(c.accepts(c.example_url()));
    }

    #[tokio::test]
    async fn a_bad_url_does_not_show_its_password() {
        let opened = RabbitMqConnector
            .open(
                "amqp://user:s3cret@host:notaport/%2f",
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
