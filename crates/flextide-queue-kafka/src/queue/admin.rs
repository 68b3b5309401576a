//! Topic management and the cluster's view of a queue: creating and
//! deleting its topics and group, listing topics, partitions, watermarks
//! and committed offsets.

use std::sync::Arc;

use flextide_queue_core::{QueueError, Result};
use rdkafka::{
    ClientConfig, Offset, TopicPartitionList,
    admin::{AdminClient, AdminOptions, NewTopic, TopicReplication},
    client::DefaultClientContext,
    consumer::{BaseConsumer, Consumer},
    types::RDKafkaErrorCode,
};

use crate::{BACKEND, Client, error, layout};

/// The admin client and a metadata consumer (no group) of one client.
pub(crate) struct Admin {
    admin: AdminClient<DefaultClientContext>,
    meta: Arc<BaseConsumer>,
}

impl std::fmt::Debug for Admin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Admin")
    }
}

fn admin(client: &Client) -> Result<&Admin> {
    if let Some(a) = client.admin.get() {
        return Ok(a);
    }
    let timeout = client.config.operation_timeout.as_millis().to_string();
    let admin = client
        .base_config()
        .create()
        .map_err(|e| error::map("create admin client", e))?;
    let meta: BaseConsumer = client
        .base_config()
        .set("enable.auto.commit", "false")
        .set("allow.auto.create.topics", "false")
        .set("socket.timeout.ms", &timeout)
        .create()
        .map_err(|e| error::map("create metadata client", e))?;
    Ok(client.admin.get_or_init(|| Admin {
        admin,
        meta: Arc::new(meta),
    }))
}

fn options(client: &Client) -> AdminOptions {
    AdminOptions::new().operation_timeout(Some(client.config.operation_timeout))
}

/// Creates the queue's topic and dead-letter topic, leaving existing ones.
pub(crate) async fn create_topics(client: &Client, queue: &str) -> Result<()> {
    let a = admin(client)?;
    let topic = layout::topic(queue);
    let dlq = layout::dlq_topic(queue);
    let replication = || TopicReplication::Fixed(client.config.replication);
    let new = [
        NewTopic::new(&topic, client.config.partitions, replication()),
        // One partition: dead letters are listed oldest first.
        NewTopic::new(&dlq, 1, replication()),
    ];
    let results = error::timed(
        "create topics",
        client.config.operation_timeout * 2,
        async {
            a.admin
                .create_topics(&new, &options(client))
                .await
                .map_err(|e| error::map("create topics", e))
        },
    )
    .await?;
    for r in results {
        match r {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => {
                return Err(QueueError::backend_error(
                    BACKEND,
                    true,
                    format!("create topic {name}: {code}"),
                ));
            }
        }
    }
    Ok(())
}

/// Every topic on the cluster.
pub(crate) async fn topic_names(client: &Client) -> Result<Vec<String>> {
    let meta = admin(client)?.meta.clone();
    let timeout = client.config.operation_timeout;
    error::blocking(move || {
        let md = meta
            .fetch_metadata(None, timeout)
            .map_err(|e| error::map("metadata", e))?;
        Ok(md.topics().iter().map(|t| t.name().to_owned()).collect())
    })
    .await
}

/// The partitions of `topic`, or `None` when it does not exist. Asks for
/// every topic's metadata, so asking creates nothing on brokers that
/// auto-create topics named in a metadata request.
pub(crate) async fn partitions(client: &Client, topic: &str) -> Result<Option<Vec<i32>>> {
    let meta = admin(client)?.meta.clone();
    let timeout = client.config.operation_timeout;
    let topic = topic.to_owned();
    error::blocking(move || {
        let md = meta
            .fetch_metadata(None, timeout)
            .map_err(|e| error::map("metadata", e))?;
        Ok(md
            .topics()
            .iter()
            .find(|t| t.name() == topic)
            .map(|t| t.partitions().iter().map(|p| p.id()).collect()))
    })
    .await
}

/// The low and high watermarks of each partition of `topic`.
pub(crate) async fn watermarks(
    client: &Client,
    topic: &str,
    partitions: &[i32],
) -> Result<Vec<(i32, i64, i64)>> {
    let meta = admin(client)?.meta.clone();
    let timeout = client.config.operation_timeout;
    let topic = topic.to_owned();
    let partitions = partitions.to_vec();
    error::blocking(move || {
        partitions
            .iter()
            .map(|&p| {
                let (lo, hi) = meta
                    .fetch_watermarks(&topic, p, timeout)
                    .map_err(|e| error::map("watermarks", e))?;
                Ok((p, lo, hi))
            })
            .collect()
    })
    .await
}

/// The queue group's committed offset of each partition (`None`: nothing
/// committed).
pub(crate) async fn committed(
    client: &Client,
    queue: &str,
    partitions: &[i32],
) -> Result<Vec<(i32, Option<i64>)>> {
    let consumer: BaseConsumer = client
        .base_config()
        .set("group.id", layout::group(queue))
        .set("enable.auto.commit", "false")
        .create()
        .map_err(|e| error::map("create offsets client", e))?;
    let timeout = client.config.operation_timeout;
    let topic = layout::topic(queue);
    let partitions = partitions.to_vec();
    error::blocking(move || {
        let mut tpl = TopicPartitionList::new();
        for &p in &partitions {
            tpl.add_partition(&topic, p);
        }
        let got = consumer
            .committed_offsets(tpl, timeout)
            .map_err(|e| error::map("committed offsets", e))?;
        Ok(got
            .elements()
            .iter()
            .map(|e| {
                let at = match e.offset() {
                    Offset::Offset(o) => Some(o),
                    _ => None,
                };
                (e.partition(), at)
            })
            .collect())
    })
    .await
}

/// Deletes the queue's topics and consumer group; what does not exist is
/// skipped.
pub(crate) async fn drop_all(client: &Client, queue: &str) -> Result<()> {
    let a = admin(client)?;
    let existing = topic_names(client).await?;
    let wanted = [layout::topic(queue), layout::dlq_topic(queue)];
    let doomed: Vec<&str> = wanted
        .iter()
        .filter(|t| existing.contains(t))
        .map(String::as_str)
        .collect();
    if !doomed.is_empty() {
        let results = error::timed(
            "delete topics",
            client.config.operation_timeout * 2,
            async {
                a.admin
                    .delete_topics(&doomed, &options(client))
                    .await
                    .map_err(|e| error::map("delete topics", e))
            },
        )
        .await?;
        for r in results {
            match r {
                Ok(_) | Err((_, RDKafkaErrorCode::UnknownTopicOrPartition)) => {}
                Err((name, code)) => {
                    return Err(QueueError::backend_error(
                        BACKEND,
                        true,
                        format!("delete topic {name}: {code}"),
                    ));
                }
            }
        }
    }
    // The group's committed offsets would apply to a new topic of the same
    // name; a broker that cannot delete groups keeps them (see the README).
    let group = layout::group(queue);
    let deleted = tokio::time::timeout(
        client.config.operation_timeout,
        a.admin.delete_groups(&[group.as_str()], &options(client)),
    )
    .await;
    if let Ok(Ok(results)) = deleted {
        for r in results {
            if let Err((_, code)) = r {
                tracing::debug!(%code, queue, "kafka: delete consumer group");
            }
        }
    }
    Ok(())
}

/// A consumer configuration for a queue's group member.
pub(crate) fn consumer_config(client: &Client, queue: &str) -> ClientConfig {
    let session = client.config.session_timeout.as_millis();
    let heartbeat = (session / 4).max(100);
    let mut c = client.base_config();
    c.set("group.id", layout::group(queue))
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("allow.auto.create.topics", "false")
        .set("session.timeout.ms", session.to_string())
        .set("heartbeat.interval.ms", heartbeat.to_string())
        // The rebalance timeout: how long a rebalance waits for members
        // that were in the group to join again (one that left mid-join is
        // waited for this long). The consumer task polls continuously, so
        // three session timeouts is plenty.
        .set("max.poll.interval.ms", (session * 3).max(3000).to_string())
        .set("fetch.wait.max.ms", "100")
        .set("enable.partition.eof", "false");
    c
}
