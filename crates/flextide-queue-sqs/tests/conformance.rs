//! The conformance suite on SQS: once on standard queues (backend `sqs`),
//! once on FIFO queues (backend `sqs-fifo`).
//!
//! Needs an SQS-compatible server (moto or ministack locally):
//! `FLEXTIDE_TEST_SQS_URL=http://127.0.0.1:4566 AWS_ACCESS_KEY_ID=test
//! AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1 cargo test -p flextide-queue-sqs --test conformance`
//!
//! Every opened queue talks to the server through its own small TCP proxy,
//! so `disrupt` can cut that queue's connections (and only those) to check
//! that the SDK and our error mapping recover.

use std::{
    collections::HashMap,
    net::SocketAddr,
    process::ExitCode,
    sync::{Arc, Mutex},
    time::Duration,
};

use flextide_queue_conformance::{
    Connect, ForeignEntry, Harness, HarnessSettings, async_trait,
    core::{QueueError, QueueOptions, QueueProvider},
};
use flextide_queue_sqs::aws_sdk_sqs::types::MessageAttributeValue;
use flextide_queue_sqs::{QueueKind, SqsClient};
use tokio::{
    net::{TcpListener, TcpStream},
    task::AbortHandle,
};

const ENDPOINT_VAR: &str = "FLEXTIDE_TEST_SQS_URL";

/// A TCP proxy in front of the SQS server whose connections can be cut.
struct Proxy {
    addr: SocketAddr,
    accept: AbortHandle,
    connections: Arc<Mutex<Vec<AbortHandle>>>,
}

impl Proxy {
    async fn start(target: SocketAddr) -> std::io::Result<Proxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let connections: Arc<Mutex<Vec<AbortHandle>>> = Arc::default();
        let conns = connections.clone();
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let task = tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                let mut conns = conns.lock().unwrap();
                conns.retain(|c| !c.is_finished());
                conns.push(task.abort_handle());
            }
        })
        .abort_handle();
        Ok(Proxy {
            addr,
            accept,
            connections,
        })
    }

    /// Closes every connection through the proxy (new ones still work).
    fn cut(&self) {
        for c in self.connections.lock().unwrap().drain(..) {
            c.abort();
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.cut();
        self.accept.abort();
    }
}

struct SqsHarness {
    endpoint: String,
    target: SocketAddr,
    /// Direct client for creating probes and deleting queues.
    admin: SqsClient,
    kind: QueueKind,
    proxies: Mutex<HashMap<String, Vec<Proxy>>>,
}

#[async_trait]
impl Harness for SqsHarness {
    async fn open(
        &self,
        name: &str,
        options: QueueOptions,
    ) -> Result<Arc<dyn QueueProvider>, QueueError> {
        // Names are checked before any proxy is started.
        flextide_queue_conformance::core::validate_queue_name(name)?;
        let proxy = Proxy::start(self.target)
            .await
            .map_err(|e| QueueError::connection("sqs", e))?;
        let client = SqsClient::with_endpoint(&format!("http://{}", proxy.addr)).await;
        let queue = client.ensure_queue(name, self.kind, options).await?;
        self.proxies
            .lock()
            .unwrap()
            .entry(name.to_owned())
            .or_default()
            .push(proxy);
        Ok(Arc::new(queue))
    }

    async fn cleanup(&self, name: &str) -> Result<(), QueueError> {
        self.proxies.lock().unwrap().remove(name);
        self.admin.delete_queue(name, self.kind).await
    }

    /// Queues whose names start like this queue's (`ListQueues` with a
    /// prefix): the queue and its dead-letter queue. The prefix stops where
    /// a long name's dead-letter queue name may be cut.
    async fn leftovers(&self, name: &str) -> Result<Option<Vec<String>>, QueueError> {
        let prefix = &name[..name.len().min(45)];
        let out = self
            .admin
            .sdk()
            .list_queues()
            .queue_name_prefix(prefix)
            .send()
            .await
            .map_err(|e| QueueError::backend_error("sqs", false, chain(&e)))?;
        Ok(Some(out.queue_urls().to_vec()))
    }

    async fn disrupt(&self, queue: &Arc<dyn QueueProvider>) -> Result<bool, QueueError> {
        if let Some(proxies) = self.proxies.lock().unwrap().get(queue.queue_name()) {
            proxies.iter().for_each(Proxy::cut);
        }
        Ok(true)
    }

    async fn write_foreign(
        &self,
        queue: &Arc<dyn QueueProvider>,
        entry: ForeignEntry,
    ) -> Result<bool, QueueError> {
        let url = self
            .admin
            .open(queue.queue_name(), self.kind, QueueOptions::default())
            .await?
            .url()
            .to_owned();
        let mut send = self.admin.sdk().send_message().queue_url(url);
        send = match entry {
            // Another producer's body, with none of our attributes.
            ForeignEntry::Plain(body) => send.message_body(String::from_utf8_lossy(&body)),
            // Claims our envelope, but the envelope is cut short.
            ForeignEntry::Undecodable => send.message_body("not base64!").message_attributes(
                "flextide",
                MessageAttributeValue::builder()
                    .data_type("String")
                    .string_value("{\"id\":")
                    .build()
                    .expect("data type is set"),
            ),
            _ => return Ok(false),
        };
        if self.kind == QueueKind::Fifo {
            let token = format!("foreign-{}", std::process::id())
                + &std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_nanos()
                    .to_string();
            send = send
                .message_group_id(token.clone())
                .message_deduplication_id(token);
        }
        send.send()
            .await
            .map_err(|e| QueueError::backend_error("sqs", false, chain(&e)))?;
        Ok(true)
    }

    fn settings(&self) -> HarnessSettings {
        HarnessSettings {
            lists_leftovers: true,
            // `ensure_queue`: an SQS handle needs the queue's URL.
            open_creates: true,
            // SQS counts visibility in whole seconds; the emulator is slow.
            short_lease: Duration::from_secs(2),
            timing_slack: Duration::from_secs(2),
            volume: 20,
            can_disrupt: true,
            foreign_plain: true,
            foreign_undecodable: true,
            // Standard queues deliver a copy twice now and then, by design;
            // FIFO queues never do while a lease holds, but an emulator may
            // (moto's threaded server checks visibility and leases a message
            // without a lock, so two concurrent receives can both take it).
            rare_duplicates: self.kind == QueueKind::Standard || !self.on_aws(),
            // FIFO queues remember a deduplication id for 5 minutes, fixed,
            // and answer a duplicate send as they answer a new one.
            dedup_window_settable: false,
            dedup_silent: true,
            // moto looks for a duplicate only among the messages still in
            // the queue; AWS keeps a deduplication id after its message was
            // deleted.
            dedup_outlives_message: self.on_aws(),
            ..HarnessSettings::default()
        }
    }
}

async fn connect(kind: QueueKind) -> Connect<SqsHarness> {
    let Ok(endpoint) = std::env::var(ENDPOINT_VAR) else {
        return Connect::NotConfigured(format!(
            "set {ENDPOINT_VAR}=http://127.0.0.1:4566 (with AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION)"
        ));
    };
    let host_port = endpoint
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap_or_default()
        .to_owned();
    let target = match tokio::net::lookup_host(host_port.as_str())
        .await
        .map(|mut a| a.next())
    {
        Ok(Some(addr)) => addr,
        _ => {
            return Connect::Failed(format!(
                "{ENDPOINT_VAR}: cannot resolve {host_port:?} (use http://host:port)"
            ));
        }
    };
    let admin = SqsClient::with_endpoint(&endpoint).await;
    // Any answer from the server shows it is there.
    if let Err(e) = admin.sdk().list_queues().max_results(1).send().await {
        return Connect::Failed(format!(
            "{ENDPOINT_VAR} is set but the server does not answer: {}",
            chain(&e)
        ));
    }
    Connect::Ready(SqsHarness {
        endpoint,
        target,
        admin,
        kind,
        proxies: Mutex::default(),
    })
}

fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(&format!(": {s}"));
        source = s.source();
    }
    text
}

impl SqsHarness {
    /// Whether the endpoint is AWS itself rather than an emulator.
    fn on_aws(&self) -> bool {
        self.endpoint
            .split("//")
            .nth(1)
            .and_then(|rest| rest.split(['/', ':']).next())
            .is_some_and(|host| host.ends_with(".amazonaws.com"))
    }
}

impl std::fmt::Debug for SqsHarness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqsHarness")
            .field("endpoint", &self.endpoint)
            .field("kind", &self.kind)
            .finish()
    }
}

fn main() -> ExitCode {
    let standard = flextide_queue_conformance::run("sqs", || connect(QueueKind::Standard));
    let fifo = flextide_queue_conformance::run("sqs-fifo", || connect(QueueKind::Fifo));
    if standard == ExitCode::SUCCESS {
        fifo
    } else {
        standard
    }
}
