//! Opening Service Bus queues from a connection string: the entry of the
//! facade's registry.

use std::sync::Arc;

use async_trait::async_trait;
use flextide_queue_core::{Connector, QueueOptions, QueueProvider, Result};

use crate::{
    BACKEND, CONNECTION_STRING_ENV, DUPLICATE_DETECTION_ENV, NAMESPACE_ENV, SCHEMES,
    ServiceBusConfig, ServiceBusQueue,
};

/// Opens Azure Service Bus queues (`QUEUE_PROVIDER=servicebus`) from the
/// connection string in `SERVICEBUS_CONNECTION_STRING`
/// (`Endpoint=sb://NAMESPACE.servicebus.windows.net/;SharedAccessKeyName=…;SharedAccessKey=…`),
/// or, with the `identity` feature, from the namespace alone in
/// `SERVICEBUS_FULLY_QUALIFIED_NAMESPACE` (Microsoft Entra ID from the
/// environment).
///
/// ```
/// use flextide_queue_core::Connector;
/// use flextide_queue_servicebus::ServiceBusConnector;
///
/// assert!(ServiceBusConnector.accepts("Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=k;SharedAccessKey=x"));
/// assert!(!ServiceBusConnector.accepts("redis://127.0.0.1"));
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct ServiceBusConnector;

#[async_trait]
impl Connector for ServiceBusConnector {
    fn name(&self) -> &'static str {
        BACKEND
    }

    fn schemes(&self) -> &'static [&'static str] {
        SCHEMES
    }

    /// A connection string has no scheme: it is recognised by its
    /// `Endpoint=sb://` part; a namespace by its `.servicebus.` host.
    fn accepts(&self, url: &str) -> bool {
        let lower = url.trim().to_ascii_lowercase();
        lower.starts_with("endpoint=sb://")
            || lower.contains(";endpoint=sb://")
            || crate::config::is_namespace(&lower)
    }

    fn url_vars(&self) -> &'static [&'static str] {
        &[CONNECTION_STRING_ENV, NAMESPACE_ENV]
    }

    fn example_url(&self) -> &'static str {
        "Endpoint=sb://NAMESPACE.servicebus.windows.net/;SharedAccessKeyName=RootManageSharedAccessKey;SharedAccessKey=KEY"
    }

    async fn open(
        &self,
        url: &str,
        queue: &str,
        options: QueueOptions,
    ) -> Result<Arc<dyn QueueProvider>> {
        // The queue's duplicate detection, when the user says it is on.
        let window = ServiceBusConfig::duplicate_detection_from(
            std::env::var(DUPLICATE_DETECTION_ENV).ok().as_deref(),
        )?;
        let config = Arc::new(ServiceBusConfig::parse(url)?.with_duplicate_detection(window)?);
        Ok(Arc::new(
            ServiceBusQueue::open(config, queue, options).await?,
        ))
    }

    /// Service Bus queues are created in the portal, the Azure CLI or ARM
    /// (where lock duration, duplicate detection and max delivery count
    /// are chosen): the AMQP connection cannot create them.
    async fn create_queue(&self, _url: &str, _queue: &str, _options: QueueOptions) -> Result<()> {
        Err(flextide_queue_core::QueueError::unsupported_because(
            BACKEND,
            "create_queue",
            "create the queue with `az servicebus queue create` or in the portal",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_recognition() {
        let c = ServiceBusConnector;
        assert_eq!(c.name(), "servicebus");
        assert_eq!(
            c.url_vars(),
            [
                "SERVICEBUS_CONNECTION_STRING",
                "SERVICEBUS_FULLY_QUALIFIED_NAMESPACE"
            ]
        );
        assert!(c.accepts(c.example_url()));
        assert!(c.accepts("ns1.servicebus.windows.net"));
        assert!(c.accepts("sb://ns1.servicebus.chinacloudapi.cn/"));
        assert!(!c.accepts("ns1.example.com"));
        assert!(!c.accepts("https://ns1.servicebus.windows.net/q?x=1"));
        assert!(c.accepts("SharedAccessKeyName=k;Endpoint=sb://ns/;SharedAccessKey=x"));
        assert!(!c.accepts("amqp://guest:guest@127.0.0.1"));
    }

    #[tokio::test]
    async fn a_refused_connection_fails_at_open_without_the_key() {
        let opened = ServiceBusConnector
            .open(
                "Endpoint=sb://127.0.0.1:1/;SharedAccessKeyName=k;SharedAccessKey=TOPSECRETKEY;UseDevelopmentEmulator=true",
                "q",
                QueueOptions::default(),
            )
            .await;
        let Err(err) = opened else {
            panic!("opened a queue on a closed port");
        };
        let text = format!("{err} {err:?}");
        assert!(err.is_retryable(), "{err}");
        assert!(text.contains("127.0.0.1:1"), "{text}");
        assert!(!text.contains("TOPSECRETKEY"), "{text}");
    }
}
