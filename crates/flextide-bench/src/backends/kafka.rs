//! Kafka beside raw rdkafka on a topic of its own: produces with
//! `acks=all` and idempotence, all of a batch in flight at once; a consumer
//! group member that takes what is fetched and commits the highest offset
//! deleted per partition (asynchronously), as a plain rdkafka consumer does.
//!
//! Both sides keep one producer for the whole run (the library's client
//! holds one), warmed up before the first timed run: an idempotent
//! producer's start (its producer id, its broker connections) is paid once,
//! not inside a row.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use async_trait::async_trait;
use bytes::Bytes;
use flextide_queue_core::QueueProvider;
use flextide_queue_kafka::{Kafka, KafkaConfig};
use futures::{FutureExt, future::try_join_all};
use rdkafka::{
    ClientConfig, Message, Offset, TopicPartitionList,
    admin::{AdminClient, AdminOptions, NewTopic, TopicReplication},
    client::DefaultClientContext,
    consumer::{CommitMode, Consumer, StreamConsumer},
    producer::{FutureProducer, FutureRecord},
};

use super::{Backend, env_or, options};
use crate::driver::{Driver, Handle, Popped, Res, expect_handles};

const URL_VAR: &str = "FLEXTIDE_TEST_KAFKA_URL";
const DEFAULT_URL: &str = "127.0.0.1:9092";
/// Partitions of both the library's and the raw topic.
const PARTITIONS: i32 = 4;
/// How long either side's consumer may take to join its group before a run.
const JOIN_WAIT: Duration = Duration::from_secs(30);

/// The library's client, and the brokers and producer of the raw one.
pub(crate) struct Kf {
    kafka: Kafka,
    brokers: String,
    producer: FutureProducer,
    /// Queues and raw topics used, deleted by `close` after the last row:
    /// deleting a topic while the process's other clients live on crashed
    /// librdkafka on tansu (see the crate README) in most full runs.
    used: Arc<Mutex<Used>>,
}

/// What `close` deletes.
#[derive(Debug, Default)]
struct Used {
    queues: Vec<String>,
    topics: Vec<String>,
}

impl std::fmt::Debug for Kf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kf")
            .field("brokers", &self.brokers)
            .finish()
    }
}

fn config() -> KafkaConfig {
    KafkaConfig::default()
        .partitions(PARTITIONS)
        .session_timeout(Duration::from_secs(3))
}

impl Kf {
    pub(crate) async fn connect() -> Res<Self> {
        let brokers = env_or(URL_VAR, DEFAULT_URL);
        let kafka = Kafka::with_config(&brokers, config())?;
        kafka.queue_names().await?;
        let brokers = kafka.brokers().to_owned();
        let producer: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", &brokers)
            .set("acks", "all")
            .set("enable.idempotence", "true")
            .set("linger.ms", "1")
            .create()?;
        // Warm both producers up on a queue of their own.
        let warm = super::queue_name("kf-warm-up");
        let q = kafka.open(&warm, options()).await?;
        q.push(flextide_queue_core::Message::new("warm-up")).await?;
        producer
            .send(
                FutureRecord::<(), [u8]>::to(q.topic()).payload(b"warm-up"),
                Duration::from_secs(10),
            )
            .await
            .map_err(|(e, _)| e)?;
        drop(q);
        kafka.drop_queue(&warm).await?;
        Ok(Kf {
            kafka,
            brokers,
            producer,
            used: Arc::default(),
        })
    }
}

#[async_trait]
impl Backend for Kf {
    fn name(&self) -> &'static str {
        "kafka"
    }

    async fn info(&self) -> Vec<(String, String)> {
        vec![
            ("brokers".into(), self.brokers.clone()),
            ("partitions".into(), PARTITIONS.to_string()),
            ("acks".into(), "all, idempotent producer".into()),
        ]
    }

    fn max_payload(&self) -> Option<usize> {
        Some(flextide_queue_kafka::MAX_PAYLOAD_BYTES)
    }

    /// Opens the queue and waits until its consumer joined the group, as
    /// `raw` does for the raw consumer: a join takes about half the session
    /// timeout (more on tansu), which a short timed run must not contain on
    /// either side. A 20,000-job worker burn-down filled in under a second
    /// and then waited out the join: 10,083/s, where the same worker on
    /// 100,000 jobs (a fill long enough to cover the join) ran at
    /// 124,555/s.
    async fn library(&self, queue: &str) -> Res<Arc<dyn QueueProvider>> {
        let q = self.kafka.open(queue, options()).await?;
        if !q.wait_for_assignment(JOIN_WAIT).await? {
            return Err(format!(
                "the library's consumer of {queue} joined no group within {JOIN_WAIT:?}"
            )
            .into());
        }
        Ok(Arc::new(q))
    }

    /// Deleted by `close`; the handle is gone already, so its consumer
    /// leaves the group now.
    async fn drop_library(&self, queue: &str) -> Res<()> {
        self.used
            .lock()
            .expect("used lock")
            .queues
            .push(queue.to_owned());
        Ok(())
    }

    async fn close(&self) {
        let used = std::mem::take(&mut *self.used.lock().expect("used lock"));
        for queue in used.queues {
            if let Err(e) = self.kafka.drop_queue(&queue).await {
                eprintln!("  warning: cleanup of {queue} failed: {e}");
            }
        }
        if used.topics.is_empty() {
            return;
        }
        let admin: Result<AdminClient<DefaultClientContext>, _> = ClientConfig::new()
            .set("bootstrap.servers", &self.brokers)
            .create();
        let topics: Vec<&str> = used.topics.iter().map(String::as_str).collect();
        let deleted = match admin {
            Ok(admin) => admin
                .delete_topics(&topics, &AdminOptions::new())
                .await
                .map(drop)
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        if let Err(e) = deleted {
            eprintln!("  warning: cleanup of the raw topics failed: {e}");
        }
    }

    async fn raw(&self, queue: &str) -> Res<Option<Arc<dyn Driver>>> {
        let topic = format!("benchraw.{queue}");
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", &self.brokers)
            .create()?;
        admin
            .create_topics(
                &[NewTopic::new(
                    &topic,
                    PARTITIONS,
                    TopicReplication::Fixed(1),
                )],
                &AdminOptions::new(),
            )
            .await?;
        let consumer: StreamConsumer = ClientConfig::new()
            .set("bootstrap.servers", &self.brokers)
            .set("group.id", &topic)
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .set("session.timeout.ms", "3000")
            .set("heartbeat.interval.ms", "750")
            .set("fetch.wait.max.ms", "100")
            .create()?;
        consumer.subscribe(&[&topic])?;
        // Join before the timed run (see `library`): polling drives the
        // join; the new topic has no records yet, so nothing is taken.
        let until = Instant::now() + JOIN_WAIT;
        while consumer.assignment()?.count() == 0 {
            if Instant::now() >= until {
                return Err(format!(
                    "the raw consumer of {topic} was assigned nothing within {JOIN_WAIT:?}"
                )
                .into());
            }
            if let Ok(Ok(m)) =
                tokio::time::timeout(Duration::from_millis(100), consumer.recv()).await
            {
                return Err(format!(
                    "the raw consumer of the new topic {topic} got a record at offset {}",
                    m.offset()
                )
                .into());
            }
        }
        Ok(Some(Arc::new(RawKafka {
            used: self.used.clone(),
            producer: self.producer.clone(),
            consumer: Mutex::new(Some(Arc::new(consumer))),
            topic,
        })))
    }
}

struct RawKafka {
    used: Arc<Mutex<Used>>,
    producer: FutureProducer,
    /// Taken and closed by `cleanup`, before the run's end deletes the
    /// topic (a consumer of a deleted topic can crash librdkafka on tansu).
    consumer: Mutex<Option<Arc<StreamConsumer>>>,
    topic: String,
}

impl RawKafka {
    fn consumer(&self) -> Res<Arc<StreamConsumer>> {
        Ok(self
            .consumer
            .lock()
            .expect("consumer lock")
            .clone()
            .ok_or("the raw consumer was closed")?)
    }
}

#[async_trait]
impl Driver for RawKafka {
    async fn push(&self, batch: Vec<Bytes>) -> Res<()> {
        try_join_all(batch.iter().map(|payload| {
            // A key as the library sends (its message id).
            let key = uuid::Uuid::now_v7().to_string();
            async move {
                let record: FutureRecord<'_, str, [u8]> = FutureRecord::to(&self.topic)
                    .payload(payload.as_ref())
                    .key(&key);
                self.producer
                    .send(record, Duration::from_secs(10))
                    .await
                    .map_err(|(e, _)| e)
            }
        }))
        .await?;
        Ok(())
    }

    async fn pop(&self, max: usize, wait: Duration) -> Res<Vec<Popped>> {
        let mut out = Vec::new();
        let consumer = self.consumer()?;
        let first = match tokio::time::timeout(wait, consumer.recv()).await {
            Ok(m) => m?,
            Err(_) => return Ok(out),
        };
        let popped = |m: &rdkafka::message::BorrowedMessage<'_>| Popped {
            payload: Bytes::copy_from_slice(m.payload().unwrap_or_default()),
            handle: Handle::Row(i64::from(m.partition()), m.offset().to_string().into()),
        };
        out.push(popped(&first));
        drop(first);
        while out.len() < max {
            match consumer.recv().now_or_never() {
                Some(Ok(m)) => out.push(popped(&m)),
                _ => break,
            }
        }
        Ok(out)
    }

    async fn delete(&self, handles: Vec<Handle>) -> Res<()> {
        let rows = expect_handles(handles, |h| {
            if let Handle::Row(p, o) = h {
                Some((p, o))
            } else {
                None
            }
        })?;
        let mut highest: HashMap<i32, i64> = HashMap::new();
        for (p, o) in rows {
            let o: i64 = o.parse()?;
            let e = highest.entry(p as i32).or_insert(o);
            *e = (*e).max(o);
        }
        let mut tpl = TopicPartitionList::new();
        for (p, o) in highest {
            tpl.add_partition_offset(&self.topic, p, Offset::Offset(o + 1))?;
        }
        self.consumer()?.commit(&tpl, CommitMode::Async)?;
        Ok(())
    }

    async fn cleanup(&self) -> Res<()> {
        let consumer = self.consumer.lock().expect("consumer lock").take();
        if let Some(c) = consumer {
            // Leaving the group blocks.
            tokio::task::spawn_blocking(move || {
                c.unsubscribe();
                drop(c);
            })
            .await?;
        }
        // The topic itself goes when the run ends (see `Kf::used`).
        self.used
            .lock()
            .expect("used lock")
            .topics
            .push(self.topic.clone());
        Ok(())
    }
}
