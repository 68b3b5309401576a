//! The conformance harness against a Kafka-compatible broker.
#![allow(dead_code, reason = "each test binary uses part of the harness")]

use std::{sync::Arc, time::Duration};

use flextide_queue_conformance::{
    Connect, ForeignEntry, HandleRegistry, Harness, HarnessSettings, async_trait,
    core::{QueueError, QueueOptions, QueueProvider},
};
use flextide_queue_kafka::{Kafka, KafkaConfig, KafkaQueue};
use rdkafka::{
    ClientConfig,
    consumer::{BaseConsumer, Consumer},
    message::{Header, OwnedHeaders},
    producer::{FutureProducer, FutureRecord},
};

/// How long a raw client call of the harness may take.
const RAW_TIMEOUT: Duration = Duration::from_secs(15);

/// The configuration the tests use: short sessions, so that joins and
/// rebalances take a few seconds rather than tens.
#[allow(dead_code)]
pub(crate) fn test_config() -> KafkaConfig {
    KafkaConfig::default()
        .session_timeout(Duration::from_millis(
            std::env::var("FLEXTIDE_TEST_KAFKA_SESSION_MS")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(1500),
        ))
        .partitions(2)
}

/// The brokers from `var`, or why the tests cannot run.
#[allow(dead_code)]
pub(crate) fn brokers(var: &str) -> Result<String, String> {
    match std::env::var(var) {
        Ok(url) if !url.is_empty() => Ok(url),
        _ => Err(format!("set {var}=127.0.0.1:9092")),
    }
}

fn failed(what: &str, e: impl std::fmt::Display) -> QueueError {
    QueueError::connection("kafka", format!("{what}: {e}"))
}

#[derive(Debug)]
pub(crate) struct KafkaHarness {
    client: Kafka,
    brokers: String,
    handles: HandleRegistry<KafkaQueue>,
}

impl KafkaHarness {
    fn live(&self, name: &str) -> Vec<Arc<KafkaQueue>> {
        self.handles.live(name)
    }
}

#[async_trait]
impl Harness for KafkaHarness {
    async fn open(
        &self,
        name: &str,
        options: QueueOptions,
    ) -> Result<Arc<dyn QueueProvider>, QueueError> {
        let queue = Arc::new(self.client.open(name, options).await?);
        self.handles.add(name, &queue);
        Ok(queue)
    }

    async fn cleanup(&self, name: &str) -> Result<(), QueueError> {
        self.handles.forget(name);
        self.client.drop_queue(name).await
    }

    /// Restarts the queue's consumer: it leaves the group and joins again,
    /// as after a lost connection, losing its in-process leases.
    async fn disrupt(&self, queue: &Arc<dyn QueueProvider>) -> Result<bool, QueueError> {
        let live = self.live(queue.queue_name());
        if let Some(q) = live.first() {
            q.rejoin().await?;
        }
        Ok(!live.is_empty())
    }

    async fn write_foreign(
        &self,
        queue: &Arc<dyn QueueProvider>,
        entry: ForeignEntry,
    ) -> Result<bool, QueueError> {
        let (body, headers) = match entry {
            // What any Kafka producer sends: a value, no headers, no key.
            ForeignEntry::Plain(body) => (body, OwnedHeaders::new()),
            // The library's attempt header, garbled by someone else.
            ForeignEntry::Undecodable => (
                bytes::Bytes::from_static(b"garbled"),
                OwnedHeaders::new().insert(Header {
                    key: "flextide-attempts",
                    value: Some("many"),
                }),
            ),
            _ => return Ok(false),
        };
        let Some(q) = self.live(queue.queue_name()).into_iter().next() else {
            return Ok(false);
        };
        q.create().await?;
        let producer: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", &self.brokers)
            .create()
            .map_err(|e| failed("producer", e))?;
        let record: FutureRecord<'_, (), [u8]> = FutureRecord::to(q.topic())
            .payload(body.as_ref())
            .headers(headers);
        producer
            .send(record, RAW_TIMEOUT)
            .await
            .map_err(|(e, _)| failed("produce (write_foreign)", e))?;
        Ok(true)
    }

    /// The topics whose name holds the queue's, with their record counts
    /// (high minus low watermark), listed with a plain rdkafka client.
    async fn leftovers(&self, name: &str) -> Result<Option<Vec<String>>, QueueError> {
        let brokers = self.brokers.clone();
        let name = name.to_owned();
        tokio::task::spawn_blocking(move || {
            let c: BaseConsumer = ClientConfig::new()
                .set("bootstrap.servers", &brokers)
                .set("allow.auto.create.topics", "false")
                .create()
                .map_err(|e| failed("consumer", e))?;
            let md = c
                .fetch_metadata(None, RAW_TIMEOUT)
                .map_err(|e| failed("metadata", e))?;
            let mut out = Vec::new();
            for t in md.topics().iter().filter(|t| t.name().contains(&name)) {
                let mut records = 0;
                for p in t.partitions() {
                    let (lo, hi) = c
                        .fetch_watermarks(t.name(), p.id(), RAW_TIMEOUT)
                        .map_err(|e| failed("watermarks", e))?;
                    records += hi - lo;
                }
                out.push(format!("topic {}: {records} records", t.name()));
            }
            Ok(Some(out))
        })
        .await
        .map_err(|e| failed("leftovers", e))?
    }

    fn settings(&self) -> HarnessSettings {
        HarnessSettings {
            lists_leftovers: true,
            can_disrupt: true,
            foreign_plain: true,
            foreign_undecodable: true,
            ..HarnessSettings::default()
        }
    }
}

/// Connects the harness to the brokers named by `var`.
pub(crate) async fn connect(var: &str) -> Connect<KafkaHarness> {
    let brokers = match brokers(var) {
        Ok(b) => b,
        Err(why) => return Connect::NotConfigured(why),
    };
    let client = match Kafka::with_config(&brokers, test_config()) {
        Ok(c) => c,
        Err(e) => return Connect::Failed(e.to_string()),
    };
    // Reach the broker once, so an unreachable one fails before the cases.
    match tokio::time::timeout(RAW_TIMEOUT, client.queue_names()).await {
        Ok(Ok(_)) => eprintln!("flextide-conformance: kafka at {}", client.brokers()),
        Ok(Err(e)) => return Connect::Failed(format!("{}: {e}", client.brokers())),
        Err(_) => {
            return Connect::Failed(format!(
                "{}: no answer in {RAW_TIMEOUT:?}",
                client.brokers()
            ));
        }
    }
    Connect::Ready(KafkaHarness {
        client,
        brokers,
        handles: HandleRegistry::default(),
    })
}
