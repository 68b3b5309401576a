//! The conformance harness, shared by the suite against the local server
//! (`conformance.rs`) and against a server with message schedules
//! (`conformance_schedules.rs`).

use std::{sync::Arc, time::Duration};

use async_nats::jetstream::{ErrorCode, context::GetStreamErrorKind};
use flextide_queue_conformance::{
    Connect, ForeignEntry, HandleRegistry, Harness, HarnessSettings, async_trait,
    core::{QueueError, QueueOptions, QueueProvider},
};
use flextide_queue_nats::{Nats, NatsQueue};
use futures::TryStreamExt;

/// How long `write_foreign` waits for the server.
const FOREIGN_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug)]
pub(crate) struct NatsHarness {
    /// A container started for this run (`locate`), kept alive here.
    _server: Option<flextide_queue_conformance::Located>,
    client: Nats,
    /// For `write_foreign`: publishes with async-nats as another client would.
    url: String,
    handles: HandleRegistry<NatsQueue>,
    /// Whether the server takes message schedules (delayed pushes).
    schedules: bool,
}

impl NatsHarness {
    /// Whether the server takes message schedules (delayed pushes).
    #[allow(dead_code)]
    pub(crate) fn schedules(&self) -> bool {
        self.schedules
    }
}

#[async_trait]
impl Harness for NatsHarness {
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

    async fn disrupt(&self, queue: &Arc<dyn QueueProvider>) -> Result<bool, QueueError> {
        let live: Vec<Arc<NatsQueue>> = self.handles.live(queue.queue_name());
        for q in &live {
            q.reconnect().await?;
        }
        Ok(!live.is_empty())
    }

    async fn write_foreign(
        &self,
        queue: &Arc<dyn QueueProvider>,
        entry: ForeignEntry,
    ) -> Result<bool, QueueError> {
        let mut headers = async_nats::HeaderMap::new();
        let body = match entry {
            // What any NATS client sends: a body, no headers.
            ForeignEntry::Plain(body) => body,
            // Our own bookkeeping header, written by someone else.
            ForeignEntry::Undecodable => {
                headers.insert("Ft-Headers", "not a JSON object");
                bytes::Bytes::from_static(b"garbled")
            }
            _ => return Ok(false),
        };
        // Another client publishes to a queue that exists: create it as
        // the handle's first push would (the harness keeps every handle).
        let live: Option<Arc<NatsQueue>> = self.handles.any(queue.queue_name());
        match live {
            Some(q) => q.create().await?,
            None => return Ok(false),
        }
        let failed = |e: String| QueueError::connection("nats", e);
        let subject = format!("ftq.{}", queue.queue_name());
        let published = tokio::time::timeout(FOREIGN_TIMEOUT, async {
            let client = async_nats::connect(self.url.as_str())
                .await
                .map_err(|e| failed(e.to_string()))?;
            let js = async_nats::jetstream::new(client.clone());
            js.publish_with_headers(subject, headers, body)
                .await
                .map_err(|e| failed(e.to_string()))?
                .await
                .map_err(|e| failed(e.to_string()))?;
            let _ = client.drain().await;
            Ok::<_, QueueError>(())
        })
        .await;
        published.map_err(|_| QueueError::Timeout {
            backend: "nats",
            operation: "publish (write_foreign)",
            after: FOREIGN_TIMEOUT,
        })??;
        Ok(true)
    }

    /// The streams whose name holds the queue's (`FTQ_<name>`,
    /// `FTDLQ_<name>`, and anything else a change might add), with their
    /// message counts and consumers, listed with plain async-nats.
    async fn leftovers(&self, name: &str) -> Result<Option<Vec<String>>, QueueError> {
        let failed = |e: String| QueueError::connection("nats", format!("leftovers: {e}"));
        let listed = tokio::time::timeout(FOREIGN_TIMEOUT, async {
            let client = async_nats::connect(self.url.as_str())
                .await
                .map_err(|e| failed(e.to_string()))?;
            let js = async_nats::jetstream::new(client.clone());
            let names: Vec<String> = js
                .stream_names()
                .try_collect()
                .await
                .map_err(|e| failed(e.to_string()))?;
            let mut out = Vec::new();
            for stream in names.into_iter().filter(|n| n.contains(name)) {
                let s = match js.get_stream(&stream).await {
                    Ok(s) => s,
                    // Deleted since it was listed.
                    Err(e)
                        if matches!(e.kind(), GetStreamErrorKind::JetStream(j)
                        if j.error_code() == ErrorCode::STREAM_NOT_FOUND) =>
                    {
                        continue;
                    }
                    Err(e) => return Err(failed(e.to_string())),
                };
                out.push(format!(
                    "stream {stream}: {} messages",
                    s.cached_info().state.messages
                ));
                let consumers: Vec<String> = s
                    .consumer_names()
                    .try_collect()
                    .await
                    .map_err(|e| failed(e.to_string()))?;
                out.extend(
                    consumers
                        .into_iter()
                        .map(|c| format!("consumer {stream}/{c}")),
                );
            }
            let _ = client.drain().await;
            Ok::<_, QueueError>(out)
        })
        .await;
        let out = listed.map_err(|_| QueueError::Timeout {
            backend: "nats",
            operation: "list streams (leftovers)",
            after: FOREIGN_TIMEOUT,
        })??;
        Ok(Some(out))
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

/// Connects the harness to the server named by `var`; with `start`, to a
/// NATS container started for the run when `var` is unset (the
/// `testcontainers` feature; see `flextide_queue_conformance::locate`).
pub(crate) async fn connect(var: &str, start: bool) -> Connect<NatsHarness> {
    let (url, server) = if start {
        match flextide_queue_conformance::locate(var, flextide_queue_conformance::Server::Nats)
            .await
        {
            Ok(located) => (located.url.clone(), Some(located)),
            Err(why) => return Connect::NotConfigured(why),
        }
    } else {
        match std::env::var(var) {
            Ok(url) if !url.is_empty() => (url, None),
            _ => return Connect::NotConfigured(format!("set {var}=nats://127.0.0.1:4222")),
        }
    };
    let client = match Nats::new(&url) {
        Ok(c) => c,
        Err(e) => return Connect::Failed(e.to_string()),
    };
    // Reach the server once, so an unreachable one fails before the cases.
    let probe = flextide_queue_conformance::unique_queue_name("probe");
    let schedules = match client.open(&probe, QueueOptions::default()).await {
        Ok(q) => {
            eprintln!(
                "flextide-conformance: nats at {} (server {})",
                client.address(),
                q.server_version()
            );
            let _ = client.drop_queue(&probe).await;
            q.capabilities().delay
        }
        Err(e) => return Connect::Failed(format!("{}: {e}", client.address())),
    };
    Connect::Ready(NatsHarness {
        _server: server,
        client,
        url,
        handles: HandleRegistry::default(),
        schedules,
    })
}
