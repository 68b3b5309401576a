//! NATS JetStream beside raw async-nats on a work-queue stream of its own:
//! pipelined publishes (each with a `Nats-Msg-Id`) then every PubAck, one `no_wait` + expiry pull
//! request per pop, and acks confirmed by the server (double acks, sent
//! concurrently), as the library does.

use std::{sync::Arc, time::Duration};

use async_nats::jetstream::{
    self,
    consumer::{AckPolicy, PullConsumer, pull},
    message::PublishMessage,
    stream::{self, RetentionPolicy},
};
use async_trait::async_trait;
use bytes::Bytes;
use flextide_queue_core::QueueProvider;
use flextide_queue_nats::Nats;
use futures::{StreamExt, TryStreamExt, future::try_join_all};

use super::{Backend, env_or, options};
use crate::driver::{Driver, Handle, Popped, Res, expect_handles};

const URL_VAR: &str = "FLEXTIDE_TEST_NATS_URL";
const DEFAULT_URL: &str = "nats://127.0.0.1:4222";

/// The library's client and a raw one.
#[derive(Debug)]
pub(crate) struct Nt {
    nats: Nats,
    client: async_nats::Client,
}

impl Nt {
    pub(crate) async fn connect() -> Res<Self> {
        let url = env_or(URL_VAR, DEFAULT_URL);
        let nats = Nats::new(&url)?;
        let client = async_nats::connect(url.as_str()).await?;
        Ok(Nt { nats, client })
    }
}

#[async_trait]
impl Backend for Nt {
    fn name(&self) -> &'static str {
        "nats"
    }

    async fn info(&self) -> Vec<(String, String)> {
        let info = self.client.server_info();
        vec![
            ("version".into(), info.version.clone()),
            ("jetstream".into(), info.jetstream.to_string()),
            // Streams are created with file storage; the server syncs them
            // to disk on its own schedule (sync_interval, default 2 min).
            ("storage".into(), "file".into()),
        ]
    }

    /// The account's streams, consumers and stored bytes, and the streams
    /// of this scenario's queues (`FTQ_ftmq_…`, `FTDLQ_ftmq_…`).
    async fn footprint(&self) -> Vec<(String, String)> {
        let js = jetstream::new(self.client.clone());
        let mut out = Vec::new();
        match js.query_account().await {
            Ok(a) => {
                out.push(("streams (all)".into(), a.streams.to_string()));
                out.push(("consumers (all)".into(), a.consumers.to_string()));
                out.push(("file storage".into(), format!("{} B", a.storage)));
            }
            Err(e) => out.push(("account".into(), format!("unknown: {e}"))),
        }
        let names: Result<Vec<String>, _> = js.stream_names().try_collect().await;
        let ours = match names {
            Ok(n) => n
                .iter()
                .filter(|s| s.starts_with("FTQ_ftmq_") || s.starts_with("FTDLQ_ftmq_"))
                .count()
                .to_string(),
            Err(e) => format!("unknown: {e}"),
        };
        out.push(("streams of ftmq_ queues".into(), ours));
        out
    }

    async fn library(&self, queue: &str) -> Res<Arc<dyn QueueProvider>> {
        Ok(Arc::new(self.nats.open(queue, options()).await?))
    }

    async fn drop_library(&self, queue: &str) -> Res<()> {
        self.nats.drop_queue(queue).await?;
        Ok(())
    }

    async fn raw(&self, queue: &str) -> Res<Option<Arc<dyn Driver>>> {
        let js = jetstream::new(self.client.clone());
        let name = format!("BENCHRAW_{queue}");
        let subject = format!("benchraw.{queue}");
        let stream = js
            .create_stream(stream::Config {
                name: name.clone(),
                subjects: vec![subject.clone()],
                retention: RetentionPolicy::WorkQueue,
                ..Default::default()
            })
            .await?;
        let consumer: PullConsumer = stream
            .create_consumer(pull::Config {
                durable_name: Some("raw".into()),
                ack_policy: AckPolicy::Explicit,
                ack_wait: options().lease,
                max_ack_pending: -1,
                ..Default::default()
            })
            .await?;
        Ok(Some(Arc::new(RawNats {
            client: self.client.clone(),
            js,
            name,
            subject,
            consumer,
        })))
    }
}

struct RawNats {
    client: async_nats::Client,
    js: jetstream::Context,
    name: String,
    subject: String,
    consumer: PullConsumer,
}

#[async_trait]
impl Driver for RawNats {
    async fn push(&self, batch: Vec<Bytes>) -> Res<()> {
        let mut acks = Vec::with_capacity(batch.len());
        for payload in batch {
            // A message id for deduplication, as the library sends (and as
            // the raw Redis baseline stores an id with each entry).
            let publish = PublishMessage::build()
                .payload(payload)
                .message_id(uuid::Uuid::now_v7().to_string());
            acks.push(self.js.send_publish(self.subject.clone(), publish).await?);
        }
        try_join_all(acks.into_iter().map(std::future::IntoFuture::into_future)).await?;
        Ok(())
    }

    async fn pop(&self, max: usize, wait: Duration) -> Res<Vec<Popped>> {
        let mut fetch = self.consumer.fetch().max_messages(max);
        if wait >= Duration::from_millis(1) {
            fetch = fetch.expires(wait);
        }
        let mut batch = fetch.messages().await?;
        let mut out = Vec::new();
        while let Some(m) = batch.next().await {
            let m = m?;
            let reply = m.reply.as_ref().map(|r| r.to_string()).unwrap_or_default();
            out.push(Popped {
                payload: m.payload.clone(),
                handle: Handle::Text(reply),
            });
        }
        Ok(out)
    }

    async fn delete(&self, handles: Vec<Handle>) -> Res<()> {
        let subjects = expect_handles(handles, |h| {
            if let Handle::Text(t) = h {
                Some(t)
            } else {
                None
            }
        })?;
        try_join_all(
            subjects
                .into_iter()
                .map(|s| self.client.request(s, Bytes::from_static(b"+ACK"))),
        )
        .await?;
        Ok(())
    }

    async fn cleanup(&self) -> Res<()> {
        self.js.delete_stream(&self.name).await?;
        Ok(())
    }
}
