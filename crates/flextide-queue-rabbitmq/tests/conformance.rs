//! The whole conformance suite against RabbitMQ.
//!
//! Run with `FLEXTIDE_TEST_RABBITMQ_URL=amqp://guest:guest@127.0.0.1:5672/%2f
//! cargo test -p flextide-queue-rabbitmq --test conformance`. Connection
//! loss is caused from the broker's side with `rabbitmqctl close_connection`
//! when `rabbitmqctl` works on this machine (`FLEXTIDE_TEST_RABBITMQCTL`
//! names another binary, `off` disables it), else by closing the handle's
//! connection from our side.

use std::{process::Command, sync::Arc, time::Duration};

use flextide_queue_conformance::{
    Connect, ForeignEntry, HandleRegistry, Harness, HarnessSettings, async_trait,
    core::{QueueError, QueueOptions, QueueProvider},
};
use flextide_queue_rabbitmq::{QueueType, RabbitMq, RabbitMqConfig, RabbitMqQueue};
use lapin::{
    BasicProperties, Connection, ConnectionProperties,
    options::{BasicPublishOptions, ConfirmSelectOptions},
    types::{AMQPValue, FieldTable, ShortString},
};

const URL_VAR: &str = "FLEXTIDE_TEST_RABBITMQ_URL";
/// How long `write_foreign` waits for the broker at each step.
const FOREIGN_TIMEOUT: Duration = Duration::from_secs(30);

struct Rabbit {
    /// The server: from the environment, or a container kept alive here.
    _server: flextide_queue_conformance::Located,
    client: RabbitMq,
    /// For `write_foreign`: publishes with lapin as another client would.
    url: String,
    handles: HandleRegistry<RabbitMqQueue>,
    rabbitmqctl: Option<String>,
}

/// Closes connections from the server's side; `false` when it could not.
fn close_server_side(ctl: &str, names: &[String]) -> bool {
    let Ok(out) = Command::new(ctl)
        .args(["-q", "list_connections", "pid", "client_properties"])
        .output()
    else {
        return false;
    };
    if !out.status.success() {
        return false;
    }
    let listing = String::from_utf8_lossy(&out.stdout);
    let mut closed = false;
    for line in listing.lines() {
        if names.iter().any(|n| line.contains(&format!("\"{n}\""))) {
            let pid = line.split('\t').next().unwrap_or_default().trim();
            closed |= Command::new(ctl)
                .args([
                    "-q",
                    "close_connection",
                    pid,
                    "flextide conformance disrupt",
                ])
                .status()
                .is_ok_and(|s| s.success());
        }
    }
    closed
}

#[async_trait]
impl Harness for Rabbit {
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
        let live: Vec<Arc<RabbitMqQueue>> = self.handles.live(queue.queue_name());
        let names: Vec<String> = live.iter().filter_map(|q| q.connection_name()).collect();
        let server_side = match &self.rabbitmqctl {
            Some(ctl) if !names.is_empty() => {
                let ctl = ctl.clone();
                tokio::task::spawn_blocking(move || close_server_side(&ctl, &names))
                    .await
                    .unwrap_or(false)
            }
            _ => false,
        };
        if !server_side {
            for q in &live {
                q.disconnect().await;
            }
        }
        Ok(!live.is_empty())
    }

    async fn write_foreign(
        &self,
        queue: &Arc<dyn QueueProvider>,
        entry: ForeignEntry,
    ) -> Result<bool, QueueError> {
        let (body, props) = match entry {
            // What any AMQP client sends: a persistent body, no message-id.
            ForeignEntry::Plain(body) => (body.to_vec(), BasicProperties::default()),
            // Our own bookkeeping header, written by someone else with a
            // type the backend cannot read.
            ForeignEntry::Undecodable => {
                let mut headers = FieldTable::default();
                headers.insert(
                    "x-ft-attempts".into(),
                    AMQPValue::LongString("not a number".into()),
                );
                (
                    b"garbled".to_vec(),
                    BasicProperties::default().with_headers(headers),
                )
            }
            _ => return Ok(false),
        };
        // Another producer writes to a queue that exists: a handle declares
        // it on its first write or pop, which has not happened here yet.
        let live = self.handles.any(queue.queue_name());
        if let Some(handle) = live {
            handle.declare().await?;
        }
        let failed = |e: lapin::Error| QueueError::connection("rabbitmq", e);
        // Bounded like every call of the backend: an unanswered handshake or
        // confirm fails the case with a timeout instead of hanging it.
        let timeout = |operation| QueueError::Timeout {
            backend: "rabbitmq",
            operation,
            after: FOREIGN_TIMEOUT,
        };
        let connection = tokio::time::timeout(
            FOREIGN_TIMEOUT,
            Connection::connect(&self.url, ConnectionProperties::default()),
        )
        .await
        .map_err(|_| timeout("connect (write_foreign)"))?
        .map_err(failed)?;
        let published = tokio::time::timeout(FOREIGN_TIMEOUT, async {
            let channel = connection.create_channel().await?;
            channel
                .confirm_select(ConfirmSelectOptions::default())
                .await?;
            channel
                .basic_publish(
                    ShortString::from(""),
                    ShortString::from(queue.queue_name()),
                    BasicPublishOptions::default(),
                    &body,
                    props.with_delivery_mode(2),
                )
                .await?
                .await
        })
        .await;
        let _ = tokio::time::timeout(
            FOREIGN_TIMEOUT,
            connection.close(200, ShortString::from("bye")),
        )
        .await;
        published
            .map_err(|_| timeout("basic.publish (write_foreign)"))?
            .map_err(failed)?;
        Ok(true)
    }

    /// The queues named `name` or `name.…` in `rabbitmqctl list_queues`.
    async fn leftovers(&self, name: &str) -> Result<Option<Vec<String>>, QueueError> {
        let Some(ctl) = self.rabbitmqctl.clone() else {
            return Ok(None);
        };
        let name = name.to_owned();
        tokio::task::spawn_blocking(move || list_queues_of(&ctl, &name))
            .await
            .map_err(|e| QueueError::backend_error("rabbitmq", false, e.to_string()))?
            .map(Some)
    }

    fn settings(&self) -> HarnessSettings {
        HarnessSettings {
            lists_leftovers: self.rabbitmqctl.is_some(),
            can_disrupt: true,
            foreign_plain: true,
            foreign_undecodable: true,
            ..HarnessSettings::default()
        }
    }
}

/// The queues `rabbitmqctl list_queues` shows for the queue `name`.
fn list_queues_of(ctl: &str, name: &str) -> Result<Vec<String>, QueueError> {
    let out = Command::new(ctl)
        .args(["-q", "list_queues", "name", "messages"])
        .output()
        .map_err(|e| QueueError::backend_error("rabbitmq", false, e.to_string()))?;
    if !out.status.success() {
        return Err(QueueError::backend_error(
            "rabbitmq",
            false,
            format!(
                "rabbitmqctl list_queues failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ),
        ));
    }
    let prefix = format!("{name}.");
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|line| {
            let queue = line.split('\t').next().unwrap_or_default();
            queue == name || queue.starts_with(&prefix)
        })
        .map(|line| line.replace('\t', " (").to_string() + " messages)")
        .collect())
}

fn find_rabbitmqctl() -> Option<String> {
    let ctl =
        std::env::var("FLEXTIDE_TEST_RABBITMQCTL").unwrap_or_else(|_| "rabbitmqctl".to_owned());
    if ctl.eq_ignore_ascii_case("off") {
        return None;
    }
    let works = Command::new(&ctl)
        .args(["-q", "list_connections", "pid"])
        .output()
        .is_ok_and(|o| o.status.success());
    works.then_some(ctl)
}

fn main() -> std::process::ExitCode {
    flextide_queue_conformance::run("rabbitmq", || async {
        let located = match flextide_queue_conformance::locate(
            URL_VAR,
            flextide_queue_conformance::Server::RabbitMq,
        )
        .await
        {
            Ok(located) => located,
            Err(why) => return Connect::NotConfigured(why),
        };
        let url = located.url.clone();
        let client_url = url.clone();
        // FLEXTIDE_TEST_RABBITMQ_QUEUE_TYPE=classic runs the suite on classic queues.
        let queue_type = match std::env::var("FLEXTIDE_TEST_RABBITMQ_QUEUE_TYPE").as_deref() {
            Ok("classic") => QueueType::Classic,
            _ => QueueType::Quorum,
        };
        let client = match RabbitMq::with_config(
            &client_url,
            RabbitMqConfig::default().queue_type(queue_type),
        ) {
            Ok(c) => c,
            Err(e) => return Connect::Failed(e.to_string()),
        };
        // This machine's rabbitmqctl talks to this machine's broker, not to
        // one in a container: there, leftovers go unlisted (those cases are
        // ignored) and connections are closed from the client's side.
        let rabbitmqctl = if located.started_container {
            None
        } else {
            tokio::task::spawn_blocking(find_rabbitmqctl)
                .await
                .unwrap_or(None)
        };
        eprintln!(
            "flextide-conformance: rabbitmq at {} ({queue_type:?} queues); disrupt via {}",
            client.address(),
            rabbitmqctl
                .as_deref()
                .map_or("client-side close", |_| "rabbitmqctl close_connection")
        );
        Connect::Ready(Rabbit {
            _server: located,
            client,
            url,
            handles: HandleRegistry::default(),
            rabbitmqctl,
        })
    })
}
