//! Google Cloud Pub/Sub: not speed (an emulator's throughput means nothing
//! for Google Cloud) but what Pub/Sub bills by: requests per message at
//! steady state with batching on (push_batch of 100, pop_batch of 100, one
//! acknowledge per batch), for the library, the worker and a raw client
//! (gcloud-pubsub's own `Client`) doing the same in the same run.

use std::{
    collections::BTreeMap,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use async_trait::async_trait;
use bytes::Bytes;
use flextide_queue_core::QueueProvider;
use flextide_queue_pubsub::{PubSub, PubSubQueue};
use gcloud_gax::conn::Environment;
use gcloud_googleapis::pubsub::v1::PubsubMessage;
use gcloud_pubsub::{
    client::{Client, ClientConfig},
    subscription::{Subscription, SubscriptionConfig},
    topic::Topic,
};

use super::{Backend, env_or, options, queue_name};
use crate::{
    driver::{Driver, Handle, LibDriver, Popped, Res, expect_handles},
    plan::Plan,
    run::{Cell, Row},
    workloads::{self, Figure},
};

const URL_VAR: &str = "FLEXTIDE_TEST_PUBSUB_URL";
const DEFAULT_URL: &str = "pubsub://flextide-bench?emulator=127.0.0.1:8085";

/// The kinds of request counted, as the library names them.
const KINDS: [&str; 4] = ["publish", "pull", "acknowledge", "modify_ack_deadline"];

pub(crate) struct Ps {
    pubsub: PubSub,
    raw: Client,
    emulator: String,
}

impl std::fmt::Debug for Ps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ps")
            .field("emulator", &self.emulator)
            .finish_non_exhaustive()
    }
}

impl Ps {
    pub(crate) async fn connect() -> Res<Self> {
        let pubsub = PubSub::new(&env_or(URL_VAR, DEFAULT_URL))?;
        let emulator = pubsub
            .config()
            .emulator
            .clone()
            .ok_or("the Pub/Sub bench runs against an emulator only (emulator=HOST:PORT)")?;
        let raw = Client::new(ClientConfig {
            environment: Environment::Emulator(emulator.clone()),
            project_id: pubsub.config().project.clone(),
            ..ClientConfig::default()
        })
        .await?;
        raw.get_topics(None).await?;
        Ok(Ps {
            pubsub,
            raw,
            emulator,
        })
    }

    async fn open(&self, queue: &str) -> Res<Arc<PubSubQueue>> {
        Ok(Arc::new(self.pubsub.open(queue, options()).await?))
    }

    fn lib_driver(&self, q: Arc<PubSubQueue>) -> Arc<dyn Driver> {
        let (pubsub, name) = (self.pubsub.clone(), q.queue_name().to_owned());
        Arc::new(LibDriver {
            queue: q,
            dropper: Box::new(move || {
                let (p, n) = (pubsub.clone(), name.clone());
                Box::pin(async move { Ok(p.drop_queue(&n).await?) })
            }),
        })
    }

    async fn raw_driver(&self, queue: &str) -> Res<Arc<RawPs>> {
        let topic = self.raw.topic(queue);
        topic.create(None, None).await?;
        let sub = self.raw.subscription(queue);
        let config = SubscriptionConfig {
            ack_deadline_seconds: options().lease.as_secs() as i32,
            ..Default::default()
        };
        sub.create(topic.fully_qualified_name(), config, None)
            .await?;
        Ok(Arc::new(RawPs {
            topic,
            sub,
            counts: Default::default(),
        }))
    }
}

#[async_trait]
impl Backend for Ps {
    fn name(&self) -> &'static str {
        "pubsub"
    }

    async fn info(&self) -> Vec<(String, String)> {
        vec![
            (
                "server".into(),
                format!(
                    "Pub/Sub emulator at {} (not representative of Google Cloud: request counts, no speed figures)",
                    self.emulator
                ),
            ),
            (
                "subscription".into(),
                "pull, dead-letter policy, no exactly-once".into(),
            ),
        ]
    }

    async fn library(&self, queue: &str) -> Res<Arc<dyn QueueProvider>> {
        Ok(self.open(queue).await?)
    }

    async fn drop_library(&self, queue: &str) -> Res<()> {
        Ok(self.pubsub.drop_queue(queue).await?)
    }

    async fn raw(&self, queue: &str) -> Res<Option<Arc<dyn Driver>>> {
        Ok(Some(self.raw_driver(queue).await?))
    }

    async fn special(&self, plan: &Plan) -> Option<Vec<Row>> {
        let n = plan.sqs_messages;
        let lib = self.lib_requests(n, plan).await;
        let raw = self.raw_requests(n, plan).await;
        let worker = self.worker_requests(n, plan).await;
        let mut rows = Vec::new();
        for (key, label) in [
            ("publish", "publish (push_batch of 100)"),
            ("pull", "pull (pop_batch 100)"),
            ("acknowledge", "acknowledge (delete_batch)"),
            ("modify_ack_deadline", "modify ack deadline"),
            ("total", "total"),
        ] {
            let cell = |r: &Result<BTreeMap<String, f64>, String>| match r {
                Ok(m) => Cell::Figure(per_message(m.get(key).copied().unwrap_or(0.0), n)),
                Err(e) => Cell::Error(e.clone()),
            };
            let row = Row::unit(
                format!("pubsub-requests-{key}"),
                format!("Pub/Sub requests per message: {label}"),
                cell(&lib),
                cell(&raw),
                "req/msg",
            );
            crate::run::print_row(&row);
            rows.push(row);
        }
        let row = Row::unit(
            "pubsub-requests-worker".into(),
            "Pub/Sub requests per message: worker (fetch + ack batching), all kinds".into(),
            match &worker {
                Ok(v) => Cell::Figure(per_message(*v, n)),
                Err(e) => Cell::Error(e.clone()),
            },
            Cell::NotApplicable("worker only".into()),
            "req/msg",
        );
        crate::run::print_row(&row);
        rows.push(row);
        Some(rows)
    }
}

fn per_message(requests: f64, n: u64) -> Figure {
    Figure {
        messages: n,
        secs: 0.0,
        rate: requests,
        latency: None,
        fill_rate: None,
        note: None,
    }
}

/// Requests per message by kind (and `total`) between two snapshots.
fn per_kind(
    before: &BTreeMap<String, u64>,
    after: &BTreeMap<String, u64>,
    n: u64,
) -> BTreeMap<String, f64> {
    let n = n.max(1) as f64;
    let mut out = BTreeMap::new();
    let mut total = 0;
    for (k, v) in after {
        let d = v - before.get(k).copied().unwrap_or(0);
        total += d;
        out.insert(k.clone(), d as f64 / n);
    }
    out.insert("total".into(), total as f64 / n);
    out
}

fn lib_counts(q: &PubSubQueue) -> BTreeMap<String, u64> {
    q.request_counts()
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
}

impl Ps {
    /// Pushes `n` messages in batches of 100, then pops and deletes them all
    /// (one consumer, batches of up to 100), counting from after the queue
    /// was created: steady state.
    async fn lib_requests(&self, n: u64, plan: &Plan) -> Result<BTreeMap<String, f64>, String> {
        let q = self
            .open(&queue_name("ps-lib"))
            .await
            .map_err(|e| e.to_string())?;
        q.create().await.map_err(|e| e.to_string())?;
        let d = self.lib_driver(q.clone());
        let run = async {
            let before = lib_counts(&q);
            workloads::fill(d.clone(), n, plan.payload, 100, 1).await?;
            // One consumer: it stops when the last message is deleted, so no
            // empty pull of the drained queue is counted.
            workloads::burn_down(d.clone(), n, 1, 100, plan.burn_cap).await?;
            Res::Ok(per_kind(&before, &lib_counts(&q), n))
        }
        .await;
        let _ = d.cleanup().await;
        run.map_err(|e| e.to_string())
    }

    async fn raw_requests(&self, n: u64, plan: &Plan) -> Result<BTreeMap<String, f64>, String> {
        let raw = self
            .raw_driver(&queue_name("ps-raw"))
            .await
            .map_err(|e| e.to_string())?;
        let d: Arc<dyn Driver> = raw.clone();
        let run = async {
            let before = raw.snapshot();
            workloads::fill(d.clone(), n, plan.payload, 100, 1).await?;
            workloads::burn_down(d.clone(), n, 1, 100, plan.burn_cap).await?;
            Res::Ok(per_kind(&before, &raw.snapshot(), n))
        }
        .await;
        let _ = d.cleanup().await;
        run.map_err(|e| e.to_string())
    }

    /// The worker (default fetch and ack batching) consuming `n` messages.
    async fn worker_requests(&self, n: u64, plan: &Plan) -> Result<f64, String> {
        let name = queue_name("ps-worker");
        let q = self.open(&name).await.map_err(|e| e.to_string())?;
        let run = async {
            workloads::prefill(q.clone(), n, plan.payload).await?;
            let before: u64 = lib_counts(&q).values().sum();
            let f =
                workloads::worker_run(q.clone(), n, plan.worker_concurrency, plan.burn_cap).await?;
            let after: u64 = lib_counts(&q).values().sum();
            Res::Ok((f, after - before))
        }
        .await;
        let _ = self.pubsub.drop_queue(&name).await;
        let (f, requests) = run.map_err(|e| e.to_string())?;
        Ok(requests as f64 / f.messages.max(1) as f64)
    }
}

/// gcloud-pubsub's own client on a topic and subscription of its own,
/// counting every request it makes.
struct RawPs {
    topic: Topic,
    sub: Subscription,
    counts: [AtomicU64; 4],
}

impl RawPs {
    fn count(&self, kind: usize) {
        self.counts[kind].fetch_add(1, Ordering::Relaxed);
    }

    fn snapshot(&self) -> BTreeMap<String, u64> {
        KINDS
            .iter()
            .zip(&self.counts)
            .map(|(k, c)| ((*k).to_owned(), c.load(Ordering::Relaxed)))
            .collect()
    }
}

#[async_trait]
impl Driver for RawPs {
    async fn push(&self, batch: Vec<Bytes>) -> Res<()> {
        let publisher = self.topic.new_publisher(None);
        for chunk in batch.chunks(1000) {
            let messages = chunk
                .iter()
                .map(|p| PubsubMessage {
                    data: p.to_vec(),
                    ..Default::default()
                })
                .collect();
            self.count(0);
            publisher.publish_immediately(messages, None).await?;
        }
        Ok(())
    }

    async fn pop(&self, max: usize, wait: Duration) -> Res<Vec<Popped>> {
        self.count(1);
        let pulled = match tokio::time::timeout(
            wait.max(Duration::from_secs(1)),
            self.sub.pull(max.clamp(1, 1000) as i32, None),
        )
        .await
        {
            Ok(pulled) => pulled?,
            Err(_) => Vec::new(),
        };
        Ok(pulled
            .into_iter()
            .map(|m| Popped {
                payload: Bytes::from(m.message.data.clone()),
                handle: Handle::Text(m.ack_id().to_owned()),
            })
            .collect())
    }

    async fn delete(&self, handles: Vec<Handle>) -> Res<()> {
        let ids = expect_handles(handles, |h| {
            if let Handle::Text(t) = h {
                Some(t)
            } else {
                None
            }
        })?;
        for chunk in ids.chunks(1000) {
            self.count(2);
            self.sub.ack(chunk.to_vec()).await?;
        }
        Ok(())
    }

    async fn cleanup(&self) -> Res<()> {
        self.sub.delete(None).await?;
        self.topic.delete(None).await?;
        Ok(())
    }
}
