//! The conformance harness, shared by the suite on a plain subscription
//! (`conformance.rs`) and on exactly-once subscriptions
//! (`conformance_exactly_once.rs`).
//!
//! `write_foreign` and `leftovers` use the `gcloud-pubsub` client's own
//! API (its `Client`, `Topic`, `Publisher`), not the backend's code, so
//! they are a second opinion.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, Weak},
    time::Duration,
};

use flextide_queue_conformance::{
    Connect, ForeignEntry, Harness, HarnessSettings, async_trait,
    core::{QueueError, QueueOptions, QueueProvider},
};
use flextide_queue_pubsub::{PubSub, PubSubConfig, PubSubQueue};
use gcloud_gax::conn::Environment;
use gcloud_googleapis::pubsub::v1::PubsubMessage;
use gcloud_pubsub::client::{Client, ClientConfig};

/// The variable naming the emulator (or project) the suite runs against.
pub(crate) const URL_VAR: &str = "FLEXTIDE_TEST_PUBSUB_URL";

#[derive(Debug)]
pub(crate) struct PubSubHarness {
    client: PubSub,
    raw: Client,
    handles: Mutex<HashMap<String, Vec<Weak<PubSubQueue>>>>,
}

fn failed(what: &str, e: impl std::fmt::Display) -> QueueError {
    QueueError::connection("pubsub", format!("{what}: {e}"))
}

impl PubSubHarness {
    fn live(&self, name: &str) -> Option<Arc<PubSubQueue>> {
        self.handles
            .lock()
            .unwrap()
            .get(name)
            .and_then(|l| l.iter().find_map(Weak::upgrade))
    }
}

#[async_trait]
impl Harness for PubSubHarness {
    async fn open(
        &self,
        name: &str,
        options: QueueOptions,
    ) -> Result<Arc<dyn QueueProvider>, QueueError> {
        let queue = Arc::new(self.client.open(name, options).await?);
        let mut handles = self.handles.lock().unwrap();
        let list = handles.entry(name.to_owned()).or_default();
        list.retain(|w| w.strong_count() > 0);
        list.push(Arc::downgrade(&queue));
        Ok(queue)
    }

    async fn cleanup(&self, name: &str) -> Result<(), QueueError> {
        self.handles.lock().unwrap().remove(name);
        self.client.drop_queue(name).await
    }

    async fn write_foreign(
        &self,
        queue: &Arc<dyn QueueProvider>,
        entry: ForeignEntry,
    ) -> Result<bool, QueueError> {
        let mut message = PubsubMessage::default();
        match entry {
            // What any Pub/Sub client sends: data, no attributes.
            ForeignEntry::Plain(body) => message.data = body.to_vec(),
            // Our own headers attribute, written by someone else.
            ForeignEntry::Undecodable => {
                message.data = b"garbled".to_vec();
                message
                    .attributes
                    .insert("ft-h".into(), "not a JSON object".into());
            }
            _ => return Ok(false),
        }
        // Another producer publishes to a queue that exists (a topic
        // without a subscription drops what is published to it).
        let Some(q) = self.live(queue.queue_name()) else {
            return Ok(false);
        };
        q.create().await?;
        let topic_id = q.topic().rsplit('/').next().unwrap_or_default().to_owned();
        let publisher = self.raw.topic(&topic_id).new_publisher(None);
        let published = tokio::time::timeout(
            Duration::from_secs(30),
            publisher.publish_immediately(vec![message], None),
        )
        .await;
        match published {
            Ok(Ok(_)) => Ok(true),
            Ok(Err(e)) => Err(failed("publish (write_foreign)", e)),
            Err(_) => Err(failed("publish (write_foreign)", "timed out")),
        }
    }

    /// The topics and subscriptions whose name holds the queue's, listed
    /// with the client's own calls.
    async fn leftovers(&self, name: &str) -> Result<Option<Vec<String>>, QueueError> {
        let mut out = Vec::new();
        let topics = self
            .raw
            .get_topics(None)
            .await
            .map_err(|e| failed("list topics", e))?;
        out.extend(
            topics
                .into_iter()
                .filter(|t| t.rsplit('/').next().is_some_and(|id| id.contains(name)))
                .map(|t| format!("topic {t}")),
        );
        let subs = self
            .raw
            .get_subscriptions(None)
            .await
            .map_err(|e| failed("list subscriptions", e))?;
        out.extend(
            subs.into_iter()
                .filter(|s| s.id().contains(name))
                .map(|s| format!("subscription {}", s.fully_qualified_name())),
        );
        Ok(Some(out))
    }

    fn settings(&self) -> HarnessSettings {
        HarnessSettings {
            // Pub/Sub's shortest ack deadline.
            short_lease: Duration::from_secs(10),
            timing_slack: Duration::from_millis(1500),
            lists_leftovers: true,
            foreign_plain: true,
            foreign_undecodable: true,
            ..HarnessSettings::default()
        }
    }
}

/// Connects the harness to what `FLEXTIDE_TEST_PUBSUB_URL` names, with
/// exactly-once delivery on the subscriptions it creates or not.
pub(crate) async fn connect(exactly_once: bool) -> Connect<PubSubHarness> {
    let url = match std::env::var(URL_VAR) {
        Ok(url) if !url.is_empty() => url,
        _ => {
            return Connect::NotConfigured(format!(
                "set {URL_VAR}=pubsub://PROJECT?emulator=127.0.0.1:PORT (a Pub/Sub emulator)"
            ));
        }
    };
    let mut config = match PubSubConfig::from_url(&url) {
        Ok(c) => c,
        Err(e) => return Connect::Failed(e.to_string()),
    };
    config.exactly_once = exactly_once;
    let Some(emulator) = config.emulator.clone() else {
        return Connect::Failed(format!(
            "{URL_VAR} must name an emulator (emulator=HOST:PORT): the suite creates and deletes topics"
        ));
    };
    let project = config.project.clone();
    let client = match PubSub::with_config(config) {
        Ok(c) => c,
        Err(e) => return Connect::Failed(e.to_string()),
    };
    let raw = Client::new(ClientConfig {
        environment: Environment::Emulator(emulator.clone()),
        project_id: project,
        ..ClientConfig::default()
    })
    .await;
    let raw = match raw {
        Ok(r) => r,
        Err(e) => return Connect::Failed(format!("{emulator}: {e}")),
    };
    // Reach the emulator once, so an unreachable one fails before the cases.
    let probe = flextide_queue_conformance::unique_queue_name("probe");
    match client.open(&probe, QueueOptions::default()).await {
        Ok(q) => {
            if let Err(e) = q.create().await {
                return Connect::Failed(format!("{emulator}: {e}"));
            }
            eprintln!(
                "flextide-conformance: pubsub emulator at {emulator} (exactly once: {})",
                q.exactly_once()
            );
            if q.exactly_once() != exactly_once {
                return Connect::Failed(
                    "the subscription's exactly-once setting is not the one asked for".into(),
                );
            }
            let _ = client.drop_queue(&probe).await;
        }
        Err(e) => return Connect::Failed(format!("{emulator}: {e}")),
    }
    Connect::Ready(PubSubHarness {
        client,
        raw,
        handles: Mutex::new(HashMap::new()),
    })
}
