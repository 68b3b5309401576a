//! RabbitMQ beside raw lapin: publish with confirms (all of a batch sent,
//! then every confirm awaited), consume with manual acks, on a quorum queue
//! like the library's default.

use std::{sync::Arc, time::Duration};

use async_trait::async_trait;
use bytes::Bytes;
use flextide_queue_core::QueueProvider;
use flextide_queue_rabbitmq::{RabbitMq, RabbitMqConfig};
use futures::{FutureExt, StreamExt, future::join_all};
use lapin::{
    BasicProperties, Channel, Connection, ConnectionProperties, Consumer,
    options::{
        BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
        ConfirmSelectOptions, QueueDeclareOptions, QueueDeleteOptions,
    },
    types::{AMQPValue, FieldTable, LongString, ShortString},
};
use tokio::sync::Mutex;

use super::{Backend, env_or, options};
use crate::driver::{Driver, Handle, Popped, Res};

const URL_VAR: &str = "FLEXTIDE_TEST_RABBITMQ_URL";
const DEFAULT_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
/// The library's default largest prefetch.
const PREFETCH: u16 = 1000;

/// The library's client and the URL for raw connections.
pub(crate) struct Rmq {
    client: RabbitMq,
    url: String,
}

impl std::fmt::Debug for Rmq {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rmq")
            .field("client", &self.client)
            .finish_non_exhaustive()
    }
}

impl Rmq {
    pub(crate) async fn connect() -> Res<Self> {
        let url = env_or(URL_VAR, DEFAULT_URL);
        // Reachability: one raw connection, closed at once.
        let conn = Connection::connect(&url, ConnectionProperties::default()).await?;
        let _ = conn.close(200, "bye".into()).await;
        Ok(Rmq {
            // FLEXTIDE_BENCH_RABBITMQ_QUEUE_TYPE=classic measures classic
            // queues instead of the default quorum ones.
            client: match std::env::var("FLEXTIDE_BENCH_RABBITMQ_QUEUE_TYPE").as_deref() {
                Ok("classic") => RabbitMq::with_config(
                    &url,
                    RabbitMqConfig::default()
                        .queue_type(flextide_queue_rabbitmq::QueueType::Classic),
                )?,
                _ => RabbitMq::new(&url)?,
            },
            url,
        })
    }
}

#[async_trait]
impl Backend for Rmq {
    fn name(&self) -> &'static str {
        "rabbitmq"
    }

    /// From `rabbitmqctl` (`FLEXTIDE_BENCH_RABBITMQ_NODE` names the node
    /// when it is not the default one).
    async fn footprint(&self) -> Vec<(String, String)> {
        tokio::task::spawn_blocking(|| {
            let ctl = |args: &[&str]| -> Option<String> {
                let mut cmd = std::process::Command::new("rabbitmqctl");
                if let Ok(node) = std::env::var("FLEXTIDE_BENCH_RABBITMQ_NODE") {
                    cmd.args(["-n", &node]);
                }
                cmd.arg("-q")
                    .args(args)
                    .output()
                    .ok()
                    .filter(|o| o.status.success())
                    .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            };
            let memory = ctl(&["eval", "erlang:memory(total)."])
                .and_then(|m| m.trim().parse::<f64>().ok())
                .map_or("unknown (rabbitmqctl)".into(), |b| {
                    format!("{:.1} MiB", b / 1024.0 / 1024.0)
                });
            let queues = ctl(&["list_queues", "name"]);
            let (all, ours) = queues.as_deref().map_or((-1, -1), |q| {
                let names: Vec<&str> = q.lines().filter(|l| !l.trim().is_empty()).collect();
                (
                    names.len() as i64,
                    names.iter().filter(|n| n.starts_with("ftmq_")).count() as i64,
                )
            });
            let connections = ctl(&["list_connections", "pid"]).map_or(-1, |c| {
                c.lines().filter(|l| !l.trim().is_empty()).count() as i64
            });
            vec![
                ("broker memory".into(), memory),
                ("queues (all)".into(), all.to_string()),
                ("queues of ftmq_".into(), ours.to_string()),
                ("connections".into(), connections.to_string()),
            ]
        })
        .await
        .unwrap_or_default()
    }

    async fn info(&self) -> Vec<(String, String)> {
        let version = tokio::task::spawn_blocking(|| {
            std::process::Command::new("rabbitmqctl")
                .arg("version")
                .output()
                .ok()
                .filter(|o| o.status.success())
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        })
        .await
        .ok()
        .flatten()
        .unwrap_or_else(|| "unknown (rabbitmqctl not available)".into());
        let config = RabbitMqConfig::default();
        vec![
            ("version".into(), version),
            (
                "queue type".into(),
                format!(
                    "{:?} (library default; raw uses the same)",
                    config.queue_type
                )
                .to_lowercase(),
            ),
            (
                "publishing".into(),
                "publisher confirms, persistent messages".into(),
            ),
            (
                "consuming".into(),
                format!("manual acks, prefetch up to {}", config.max_prefetch),
            ),
        ]
    }

    async fn library(&self, queue: &str) -> Res<Arc<dyn QueueProvider>> {
        Ok(Arc::new(self.client.open(queue, options()).await?))
    }

    async fn drop_library(&self, queue: &str) -> Res<()> {
        self.client.drop_queue(queue).await?;
        Ok(())
    }

    async fn raw(&self, queue: &str) -> Res<Option<Arc<dyn Driver>>> {
        let conn = Connection::connect(&self.url, ConnectionProperties::default()).await?;
        let publish = conn.create_channel().await?;
        publish
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        let mut args = FieldTable::default();
        args.insert(
            "x-queue-type".into(),
            AMQPValue::LongString(LongString::from("quorum")),
        );
        publish
            .queue_declare(
                ShortString::from(queue),
                QueueDeclareOptions {
                    durable: true,
                    ..Default::default()
                },
                args,
            )
            .await?;
        let consume = conn.create_channel().await?;
        consume
            .basic_qos(PREFETCH, BasicQosOptions::default())
            .await?;
        Ok(Some(Arc::new(RawRmq {
            conn,
            publish,
            consume,
            consumer: Mutex::new(None),
            queue: queue.to_owned(),
        })))
    }

    fn max_payload(&self) -> Option<usize> {
        Some(RabbitMqConfig::default().max_payload_bytes)
    }
}

struct RawRmq {
    conn: Connection,
    publish: Channel,
    consume: Channel,
    /// Subscribed at the first pop, as the library does, so nothing is
    /// prefetched while a backlog is being filled.
    consumer: Mutex<Option<Consumer>>,
    queue: String,
}

#[async_trait]
impl Driver for RawRmq {
    async fn push(&self, batch: Vec<Bytes>) -> Res<()> {
        let mut confirms = Vec::with_capacity(batch.len());
        for p in &batch {
            let props = BasicProperties::default()
                .with_delivery_mode(2)
                .with_message_id(ShortString::from(uuid::Uuid::now_v7().to_string()));
            confirms.push(
                self.publish
                    .basic_publish(
                        ShortString::from(""),
                        ShortString::from(self.queue.as_str()),
                        BasicPublishOptions {
                            mandatory: true,
                            immediate: false,
                        },
                        p,
                        props,
                    )
                    .await?,
            );
        }
        for c in join_all(confirms).await {
            let c = c?;
            if !c.is_ack() {
                return Err("publish not confirmed".into());
            }
        }
        Ok(())
    }

    async fn pop(&self, max: usize, wait: Duration) -> Res<Vec<Popped>> {
        let mut slot = self.consumer.lock().await;
        if slot.is_none() {
            *slot = Some(
                self.consume
                    .basic_consume(
                        ShortString::from(self.queue.as_str()),
                        ShortString::from("bench"),
                        BasicConsumeOptions::default(),
                        FieldTable::default(),
                    )
                    .await?,
            );
        }
        let consumer = slot.as_mut().expect("subscribed");
        let mut out = Vec::new();
        let first = match tokio::time::timeout(wait, consumer.next()).await {
            Ok(Some(d)) => d?,
            _ => return Ok(out),
        };
        out.push(Popped {
            payload: Bytes::from(first.data),
            handle: Handle::Tag(first.delivery_tag),
        });
        while out.len() < max {
            match consumer.next().now_or_never() {
                Some(Some(d)) => {
                    let d = d?;
                    out.push(Popped {
                        payload: Bytes::from(d.data),
                        handle: Handle::Tag(d.delivery_tag),
                    });
                }
                _ => break,
            }
        }
        Ok(out)
    }

    async fn delete(&self, handles: Vec<Handle>) -> Res<()> {
        let tags = crate::workloads::tags(handles)?;
        for r in join_all(tags.into_iter().map(|t| {
            self.consume
                .basic_ack(t, BasicAckOptions { multiple: false })
        }))
        .await
        {
            r?;
        }
        Ok(())
    }

    async fn cleanup(&self) -> Res<()> {
        self.publish
            .queue_delete(
                ShortString::from(self.queue.as_str()),
                QueueDeleteOptions::default(),
            )
            .await?;
        let _ = self.conn.close(200, "bye".into()).await;
        Ok(())
    }
}
