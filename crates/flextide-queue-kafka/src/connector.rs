//! Opening Kafka queues by URL: the entry of the facade's registry.

use std::sync::Arc;

use async_trait::async_trait;
use flextide_queue_core::{Connector, QueueOptions, QueueProvider, Result};

use crate::{BACKEND, Kafka, SCHEMES, URL_ENV};

/// Opens Kafka queues from `kafka://` and `kafkas://` URLs or a bare broker
/// list (`QUEUE_PROVIDER=kafka`; the brokers from `KAFKA_BROKERS`).
///
/// ```
/// use flextide_queue_core::Connector;
/// use flextide_queue_kafka::KafkaConnector;
///
/// assert!(KafkaConnector.accepts("kafka://127.0.0.1:9092"));
/// assert!(!KafkaConnector.accepts("redis://127.0.0.1:6379"));
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct KafkaConnector;

#[async_trait]
impl Connector for KafkaConnector {
    fn name(&self) -> &'static str {
        BACKEND
    }

    fn schemes(&self) -> &'static [&'static str] {
        SCHEMES
    }

    fn url_vars(&self) -> &'static [&'static str] {
        URL_ENV
    }

    fn example_url(&self) -> &'static str {
        "kafka://127.0.0.1:9092"
    }

    /// Opens `queue` with a client of its own, the default configuration
    /// and the librdkafka properties of the environment
    /// ([`KafkaConfig::from_env`](crate::KafkaConfig::from_env)). The URL's
    /// credentials never appear in an error.
    async fn open(
        &self,
        url: &str,
        queue: &str,
        options: QueueOptions,
    ) -> Result<Arc<dyn QueueProvider>> {
        Ok(Arc::new(Kafka::with_env(url)?.open(queue, options).await?))
    }

    /// Creates the queue's topic and dead-letter topic; idempotent.
    async fn create_queue(&self, url: &str, queue: &str, _options: QueueOptions) -> Result<()> {
        Kafka::with_env(url)?.create_queue(queue).await
    }

    /// The queues' names: the `ftq.<name>` topics, sorted.
    async fn list_queues(&self, url: &str) -> Result<Vec<String>> {
        Kafka::with_env(url)?.queue_names().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_schemes_and_variables() {
        let c = KafkaConnector;
        assert_eq!(c.name(), "kafka");
        assert_eq!(c.schemes(), ["kafka", "kafkas"]);
        assert_eq!(c.url_vars(), ["KAFKA_BROKERS", "KAFKA_URL"]);
        assert!(c.accepts("KAFKA://h:9092"));
        assert!(c.accepts(c.example_url()));
    }

    #[tokio::test]
    async fn a_bad_url_does_not_show_its_password() {
        let opened = KafkaConnector
            .open("kafka://user:s3cret@", "q", QueueOptions::default())
            .await;
        let Err(err) = opened else {
            panic!("an invalid URL opened");
        };
        assert!(!err.to_string().contains("s3cret"), "{err}");
    }
}
