//! The conformance harness. With a Service Bus connection string it
//! creates each case's queue through the REST management endpoint
//! (`admin.rs`) with the case's lease as the queue's lock duration and
//! duplicate detection on (the case's dedup window, at least Service Bus's
//! 20 s), and opens it with that window stated; with
//! an `amqp://…?address_prefix=/queue/` URL (a RabbitMQ node with the
//! AMQP 1.0 plugin) queues are declared by attaching to them.

mod admin;

use std::{sync::Arc, time::Duration};

use flextide_queue_conformance::{
    Connect, Harness, HarnessSettings, async_trait,
    core::{QueueError, QueueOptions, QueueProvider},
};
use flextide_queue_servicebus::{
    MAX_DUPLICATE_WINDOW, MIN_DUPLICATE_WINDOW, ServiceBusConfig, ServiceBusQueue,
};

/// The variable holding the connection string the suite runs against.
pub(crate) const URL_VAR: &str = "FLEXTIDE_TEST_SERVICEBUS_URL";

#[derive(Debug)]
pub(crate) struct ServiceBusHarness {
    config: Arc<ServiceBusConfig>,
}

#[async_trait]
impl Harness for ServiceBusHarness {
    async fn open(
        &self,
        name: &str,
        options: QueueOptions,
    ) -> Result<Arc<dyn QueueProvider>, QueueError> {
        let mut config = self.config.clone();
        if self.config.service_bus {
            let window = options
                .dedup_window
                .clamp(MIN_DUPLICATE_WINDOW, MAX_DUPLICATE_WINDOW);
            admin::create(&self.config, name, options.lease, window).await?;
            config = Arc::new(
                (*self.config)
                    .clone()
                    .with_duplicate_detection(Some(window))?,
            );
        }
        Ok(Arc::new(
            ServiceBusQueue::open(config, name, options).await?,
        ))
    }

    async fn cleanup(&self, name: &str) -> Result<(), QueueError> {
        if self.config.service_bus {
            admin::delete(&self.config, name).await?;
        }
        Ok(())
    }

    fn settings(&self) -> HarnessSettings {
        HarnessSettings {
            // Service Bus's shortest lock duration.
            short_lease: Duration::from_secs(5),
            timing_slack: Duration::from_secs(2),
            open_creates: true,
            volume: 50,
            // Duplicate detection drops a duplicate without a word, and
            // its window is at least 20 s (the case that waits a window
            // out asks for a short one).
            dedup_silent: true,
            dedup_window_settable: false,
            ..HarnessSettings::default()
        }
    }
}

pub(crate) async fn connect_to(url: &str) -> Connect<ServiceBusHarness> {
    match ServiceBusConfig::parse(url) {
        Ok(config) => Connect::Ready(ServiceBusHarness {
            config: Arc::new(config),
        }),
        Err(e) => Connect::Failed(format!("{URL_VAR}: {e}")),
    }
}

#[allow(dead_code)] // not every test binary uses it
pub(crate) async fn connect() -> Connect<ServiceBusHarness> {
    match std::env::var(URL_VAR) {
        Ok(url) if !url.trim().is_empty() => connect_to(&url).await,
        _ => Connect::NotConfigured(format!(
            "set {URL_VAR} to a Service Bus connection string (with the Manage right) to run the suite against a real namespace"
        )),
    }
}
