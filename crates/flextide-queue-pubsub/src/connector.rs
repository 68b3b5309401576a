//! Opening Pub/Sub queues by URL: the entry of the facade's registry.

use std::sync::Arc;

use async_trait::async_trait;
use flextide_queue_core::{Connector, QueueOptions, QueueProvider, Result};

use crate::{BACKEND, PubSub, SCHEMES};

/// Opens Google Cloud Pub/Sub queues from `pubsub:` URLs
/// (`QUEUE_PROVIDER=pubsub`; the project from the URL or
/// `GOOGLE_CLOUD_PROJECT`, an emulator from the URL or
/// `PUBSUB_EMULATOR_HOST`).
///
/// ```
/// use flextide_queue_core::Connector;
/// use flextide_queue_pubsub::PubSubConnector;
///
/// assert!(PubSubConnector.accepts("pubsub://my-project"));
/// assert!(!PubSubConnector.accepts("sqs:"));
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct PubSubConnector;

#[async_trait]
impl Connector for PubSubConnector {
    fn name(&self) -> &'static str {
        BACKEND
    }

    fn schemes(&self) -> &'static [&'static str] {
        SCHEMES
    }

    /// None: Google's clients have no URL variable. `pubsub:` (the
    /// default URL) reads the project and emulator variables they do read.
    fn url_vars(&self) -> &'static [&'static str] {
        &[]
    }

    fn default_url(&self) -> Option<&'static str> {
        Some("pubsub:")
    }

    fn example_url(&self) -> &'static str {
        "pubsub://my-project?emulator=127.0.0.1:8085"
    }

    async fn open(
        &self,
        url: &str,
        queue: &str,
        options: QueueOptions,
    ) -> Result<Arc<dyn QueueProvider>> {
        Ok(Arc::new(PubSub::new(url)?.open(queue, options).await?))
    }

    /// Creates the queue's topics and subscriptions (`ensure_queue`);
    /// idempotent.
    async fn create_queue(&self, url: &str, queue: &str, options: QueueOptions) -> Result<()> {
        PubSub::new(url)?.create_queue(queue, options).await
    }

    /// The queues' names: the subscriptions named with the prefix, sorted.
    async fn list_queues(&self, url: &str) -> Result<Vec<String>> {
        PubSub::new(url)?.queue_names().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_schemes_and_variables() {
        let c = PubSubConnector;
        assert_eq!(c.name(), "pubsub");
        assert_eq!(c.schemes(), ["pubsub"]);
        assert!(c.accepts("PUBSUB://p"));
        assert!(c.accepts(c.example_url()));
        assert_eq!(c.default_url(), Some("pubsub:"));
    }

    #[tokio::test]
    async fn a_refused_emulator_fails_at_open() {
        let opened = PubSubConnector
            .open(
                "pubsub://proj?emulator=127.0.0.1:1",
                "q",
                QueueOptions::default(),
            )
            .await;
        let Err(err) = opened else {
            panic!("opened a queue on a closed port");
        };
        assert!(err.is_retryable(), "{err}");
        assert!(err.to_string().contains("127.0.0.1:1"), "{err}");
    }
}
