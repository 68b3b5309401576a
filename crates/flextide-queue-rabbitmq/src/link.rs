//! One connection of a queue handle and its channels. The queue's topology
//! (main and dead-letter queues) is declared on the first write or pop
//! ([`Link::declare_topology`]), not at connect: a handle that only reads
//! (stats, dead-letter listing) creates nothing on the broker. A handle replaces its link when the connection
//! or the consuming channel dies; each link has a generation number, and
//! deliveries received on one link can only be settled through it. The
//! publishing channel holds no deliveries, so when the broker closes only
//! it (a refused declaration, a message over the broker's size limit) it is
//! reopened on the same connection and the leases on the consuming channel
//! live on.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use flextide_queue_core::{QueueError, Result};
use lapin::{
    BasicProperties, Channel, Confirmation, Connection, ConnectionProperties, ExchangeKind,
    options::{
        BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions, QueueDeclareOptions,
    },
    types::{AMQPValue, FieldTable, LongString, ShortString},
};

use crate::{
    BACKEND, Settings,
    config::QueueType,
    error::{map, timed},
};

/// A live connection with a publishing channel (publisher confirms on) and
/// a consuming channel (manual acknowledgements).
pub(crate) struct Link {
    pub(crate) generation: u64,
    pub(crate) name: String,
    pub(crate) connection: Connection,
    /// Replaced by [`Link::publisher`] when the broker closed it.
    publish: Mutex<Channel>,
    reopening: tokio::sync::Mutex<()>,
    pub(crate) consume: Channel,
    pub(crate) timeout: Duration,
    /// The main and dead-letter queues were declared on this connection.
    declared: AtomicBool,
    /// The main queue was seen to exist (declared here, or found by a
    /// passive declare), so read-only calls may ask for its parts.
    seen: AtomicBool,
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link")
            .field("generation", &self.generation)
            .field("name", &self.name)
            .finish()
    }
}

impl Link {
    /// Connects and opens the channels; declares nothing.
    pub(crate) async fn open(settings: &Settings, generation: u64, name: String) -> Result<Link> {
        let t = settings.config.operation_timeout;
        let props =
            ConnectionProperties::default().with_connection_name(LongString::from(name.clone()));
        let connection = connect(settings, props).await?;
        let opened = async {
            let publish = publishing_channel(&connection, t).await?;
            let consume = timed("channel.open", t, connection.create_channel()).await?;
            Ok::<_, QueueError>((publish, consume))
        }
        .await;
        let (publish, consume) = match opened {
            Ok(channels) => channels,
            Err(e) => {
                // Not left open until the broker notices: a handle retrying
                // against a broker that refuses the declaration would
                // otherwise pile up connections.
                connection.close_within(t).await;
                return Err(e);
            }
        };
        Ok(Link {
            generation,
            name,
            connection,
            publish: Mutex::new(publish),
            reopening: tokio::sync::Mutex::new(()),
            consume,
            timeout: t,
            declared: AtomicBool::new(false),
            seen: AtomicBool::new(false),
        })
    }

    /// Declares the dead-letter queue, then the main queue (so a main queue
    /// that exists always has its dead-letter queue), once per connection.
    /// A refused declaration (other arguments) is a configuration error
    /// naming the queue.
    pub(crate) async fn declare_topology(
        &self,
        settings: &Settings,
        queue: &str,
        dlq: &str,
    ) -> Result<()> {
        if self.declared.load(Ordering::Acquire) {
            return Ok(());
        }
        let publish = self.publisher().await?;
        // While a cluster node holding the classic dead-letter queue is
        // down this fails (retryable), and so does every call that needs the
        // topology on a new connection. Skipping it was tried and cluster
        // chaos lost more messages with it (docs/reliability.md, Findings).
        declare(&publish, self.timeout, dlq, classic_arguments()).await?;
        declare(&publish, self.timeout, queue, main_arguments(settings, dlq)).await?;
        self.declared.store(true, Ordering::Release);
        self.seen.store(true, Ordering::Release);
        Ok(())
    }

    /// A round trip on the consuming channel, after acknowledgements sent on
    /// it: AMQP 0-9-1 answers no `basic.ack`, but the broker handles a
    /// channel's frames in order, so once this is answered every ack sent
    /// before it was processed. Without it `delete` would return `Ok` for
    /// an ack written to a connection the broker was already closing (which
    /// puts the message back). A passive declare of `amq.direct`, which
    /// every vhost has and nobody can delete: no side effect.
    pub(crate) async fn settle_barrier(&self) -> Result<()> {
        timed(
            "exchange.declare (passive, after acks)",
            self.timeout,
            self.consume.exchange_declare(
                ShortString::from("amq.direct"),
                ExchangeKind::Direct,
                ExchangeDeclareOptions {
                    passive: true,
                    ..ExchangeDeclareOptions::default()
                },
                FieldTable::default(),
            ),
        )
        .await
    }

    /// Whether the main queue is known to exist on this connection.
    pub(crate) fn seen(&self) -> bool {
        self.seen.load(Ordering::Acquire)
    }

    /// The main queue was found by a passive declare.
    pub(crate) fn mark_seen(&self) {
        self.seen.store(true, Ordering::Release);
    }

    /// The queue was dropped: the next write declares it again.
    pub(crate) fn forget_topology(&self) {
        self.declared.store(false, Ordering::Release);
        self.seen.store(false, Ordering::Release);
    }

    /// Whether the connection and the consuming channel are still open (a
    /// closed publishing channel is reopened by [`Link::publisher`]).
    pub(crate) fn healthy(&self) -> bool {
        self.connection.status().connected() && self.consume.status().connected()
    }

    /// The publishing channel, reopened first when the broker closed it
    /// while the connection lives.
    pub(crate) async fn publisher(&self) -> Result<Channel> {
        let current = || {
            self.publish
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone()
        };
        let channel = current();
        if channel.status().connected() {
            return Ok(channel);
        }
        let _one = self.reopening.lock().await;
        let channel = current();
        if channel.status().connected() {
            return Ok(channel);
        }
        if !self.connection.status().connected() {
            return Err(QueueError::connection(
                BACKEND,
                "the connection to the broker was lost; the next call reconnects",
            ));
        }
        let channel = publishing_channel(&self.connection, self.timeout).await?;
        tracing::debug!(link = %self.name, "rabbitmq: reopened the publishing channel");
        *self.publish.lock().unwrap_or_else(|e| e.into_inner()) = channel.clone();
        Ok(channel)
    }

    /// A fresh channel for operations that may fail at channel level (a
    /// passive declare of a queue that is missing closes its channel).
    pub(crate) async fn scratch_channel(&self) -> Result<Channel> {
        timed(
            "channel.open",
            self.timeout,
            self.connection.create_channel(),
        )
        .await
    }

    /// Publishes through the default exchange and returns once the broker
    /// confirmed it: an ack, and not returned as unroutable.
    pub(crate) async fn publish_confirmed(
        &self,
        routing_key: &str,
        payload: &[u8],
        props: BasicProperties,
    ) -> Result<()> {
        let confirm = self.publish_start(routing_key, payload, props).await?;
        check_confirmation(
            routing_key,
            timed("publisher confirm", self.timeout, confirm).await?,
        )
    }

    /// Sends one publish and returns its pending confirmation, so a batch
    /// can send all its messages before waiting.
    pub(crate) async fn publish_start(
        &self,
        routing_key: &str,
        payload: &[u8],
        props: BasicProperties,
    ) -> Result<lapin::PublisherConfirm> {
        let key = ShortString::try_new(routing_key).map_err(|_| {
            QueueError::invalid_message(BACKEND, "routing key longer than 255 bytes")
        })?;
        let publish = self.publisher().await?;
        timed(
            "basic.publish",
            self.timeout,
            publish.basic_publish(
                ShortString::from(""),
                key,
                BasicPublishOptions {
                    mandatory: true,
                    immediate: false,
                },
                payload,
                props,
            ),
        )
        .await
    }

    /// Closes the connection in the background (used when it is replaced).
    pub(crate) fn close_in_background(self: Arc<Self>) {
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move { self.connection.close_within(Duration::from_secs(5)).await });
        }
    }
}

/// Closing a connection or channel this backend is done with: best effort,
/// bounded by `t`, never an error (the broker frees both when the socket
/// goes anyway).
pub(crate) trait CloseWithin {
    async fn close_within(&self, t: Duration);
}

impl CloseWithin for Connection {
    async fn close_within(&self, t: Duration) {
        let _ = tokio::time::timeout(t, self.close(200, ShortString::from("bye"))).await;
    }
}

impl CloseWithin for Channel {
    async fn close_within(&self, t: Duration) {
        let _ = tokio::time::timeout(t, self.close(200, ShortString::from("bye"))).await;
    }
}

/// Connects to the broker: to its one node, or to the first of a
/// cluster's nodes that answers, starting with the node after the one the
/// previous connection started with (connections spread over the nodes,
/// and a reconnect after a node's death reaches a live one). Fails with
/// the last node's error when none answers.
pub(crate) async fn connect(
    settings: &Settings,
    props: ConnectionProperties,
) -> Result<Connection> {
    let t = settings.config.operation_timeout;
    let nodes = settings.uris.len();
    let first = settings.next_node.fetch_add(1, Ordering::Relaxed);
    let mut failed = None;
    for i in 0..nodes {
        let uri = settings.uris[(first + i) % nodes].clone();
        match timed("connect", t, Connection::connect_uri(uri, props.clone())).await {
            Ok(connection) => return Ok(connection),
            Err(e) => failed = Some(e),
        }
    }
    Err(failed.unwrap_or_else(|| QueueError::configuration(BACKEND, "the AMQP URL names no node")))
}

/// A channel with publisher confirms on.
async fn publishing_channel(connection: &Connection, t: Duration) -> Result<Channel> {
    let channel = timed("channel.open", t, connection.create_channel()).await?;
    timed(
        "confirm.select",
        t,
        channel.confirm_select(ConfirmSelectOptions::default()),
    )
    .await?;
    Ok(channel)
}

/// An ack without a returned message is success; a nack or a return (the
/// queue is gone) is not.
pub(crate) fn check_confirmation(routing_key: &str, confirmation: Confirmation) -> Result<()> {
    match confirmation {
        Confirmation::Ack(None) => Ok(()),
        Confirmation::Ack(Some(_)) | Confirmation::Nack(Some(_)) => {
            Err(QueueError::QueueNotFound {
                backend: BACKEND,
                queue: routing_key.to_owned(),
            })
        }
        Confirmation::Nack(None) => Err(QueueError::backend_error(
            BACKEND,
            true,
            "the broker refused the message (publisher confirm nack); nothing was enqueued",
        )),
        Confirmation::NotRequested => Err(QueueError::backend_error(
            BACKEND,
            false,
            "publisher confirms are not enabled",
        )),
    }
}

fn str_value(s: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(s))
}

/// Arguments of the main queue: its type, dead letters to `<queue>.dlq`,
/// and on quorum queues the delivery limit.
pub(crate) fn main_arguments(settings: &Settings, dlq: &str) -> FieldTable {
    let mut args = FieldTable::default();
    args.insert(
        "x-queue-type".into(),
        str_value(settings.config.queue_type.as_str()),
    );
    args.insert("x-dead-letter-exchange".into(), str_value(""));
    args.insert("x-dead-letter-routing-key".into(), str_value(dlq));
    if settings.config.queue_type == QueueType::Quorum
        && let Some(limit) = settings.config.delivery_limit
    {
        args.insert(
            "x-delivery-limit".into(),
            AMQPValue::LongLongInt(i64::from(limit)),
        );
    }
    args
}

/// Arguments of the dead-letter queue.
pub(crate) fn classic_arguments() -> FieldTable {
    let mut args = FieldTable::default();
    args.insert("x-queue-type".into(), str_value("classic"));
    args
}

/// Arguments of a delay bucket's holding queue: expire after the bucket's
/// TTL into the main queue through the default exchange; the queue itself
/// goes when unused for `delay::expires_ms`. Beside a quorum queue it is a
/// quorum queue dead-lettering at least once (see [`crate::delay`]).
pub(crate) fn holding_arguments(queue: &str, queue_type: QueueType, bucket_ms: u64) -> FieldTable {
    let mut args = FieldTable::default();
    args.insert("x-queue-type".into(), str_value(queue_type.as_str()));
    args.insert(
        "x-expires".into(),
        AMQPValue::LongLongInt(
            i64::try_from(crate::delay::expires_ms(bucket_ms)).unwrap_or(i64::MAX),
        ),
    );
    args.insert(
        "x-message-ttl".into(),
        AMQPValue::LongLongInt(i64::try_from(bucket_ms).unwrap_or(i64::MAX)),
    );
    args.insert("x-dead-letter-exchange".into(), str_value(""));
    args.insert("x-dead-letter-routing-key".into(), str_value(queue));
    if queue_type == QueueType::Quorum {
        // A message leaves only once the main queue confirmed it.
        args.insert("x-dead-letter-strategy".into(), str_value("at-least-once"));
        args.insert("x-overflow".into(), str_value("reject-publish"));
    }
    args
}

/// Arguments of the index of holding queues: classic, and gone when unused
/// for as long as the longest-lived holding queue could last.
pub(crate) fn index_arguments() -> FieldTable {
    let mut args = classic_arguments();
    let longest = crate::delay::LADDER_MS.last().copied().unwrap_or(0);
    args.insert(
        "x-expires".into(),
        AMQPValue::LongLongInt(
            i64::try_from(crate::delay::expires_ms(longest)).unwrap_or(i64::MAX),
        ),
    );
    args
}

/// Declares a durable queue; a mismatch with an existing queue's arguments
/// is a configuration error that says which queue.
pub(crate) async fn declare(
    channel: &Channel,
    t: Duration,
    queue: &str,
    args: FieldTable,
) -> Result<()> {
    let options = QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    };
    let args_text = describe(&args);
    match tokio::time::timeout(
        t,
        channel.queue_declare(ShortString::from(queue), options, args),
    )
    .await
    {
        Err(_) => Err(QueueError::Timeout {
            backend: BACKEND,
            operation: "queue.declare",
            after: t,
        }),
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(match map(e) {
            QueueError::Configuration { message, .. } if message.contains("inequivalent arg") => {
                QueueError::configuration(BACKEND, inequivalent(queue, &args_text, &message))
            }
            other => other,
        }),
    }
}

/// The error for a queue that exists with other arguments than ours: which
/// one, why that happens, and what to do about it.
fn inequivalent(queue: &str, ours: &str, broker: &str) -> String {
    let arg = broker
        .split("inequivalent arg '")
        .nth(1)
        .and_then(|rest| rest.split('\'').next())
        .unwrap_or("?");
    let why = if arg.starts_with("x-dead-letter-") || arg == "x-message-ttl" {
        "it was declared by another client (or by hand) without the dead-lettering this \
         backend relies on"
    } else {
        "its queue type or delivery limit differ from this client's configuration \
         (RabbitMqConfig::queue_type, delivery_limit)"
    };
    format!(
        "queue {queue:?} already exists with a different {arg}: {why}. This backend declares it \
         durable with {ours}. Use another queue name, or open it with a matching configuration, \
         or move its messages away and delete it (RabbitMq::drop_queue, or `rabbitmqctl \
         delete_queue {queue}`) so it can be declared again. The broker said: {broker}"
    )
}

/// Arguments as `key=value` text, for error messages.
fn describe(args: &FieldTable) -> String {
    args.inner()
        .iter()
        .map(|(k, v)| match v {
            AMQPValue::LongString(s) => format!("{k}={:?}", String::from_utf8_lossy(s.as_bytes())),
            AMQPValue::LongLongInt(n) => format!("{k}={n}"),
            other => format!("{k}={other:?}"),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arg<'a>(args: &'a FieldTable, key: &str) -> Option<&'a AMQPValue> {
        args.inner().get(key)
    }

    #[test]
    fn holding_queues_follow_the_main_queue_type() {
        let quorum = holding_arguments("q", QueueType::Quorum, 500);
        assert_eq!(arg(&quorum, "x-queue-type"), Some(&str_value("quorum")));
        // At-least-once dead-lettering back into `q`, which the broker only
        // accepts with reject-publish overflow.
        assert_eq!(
            arg(&quorum, "x-dead-letter-strategy"),
            Some(&str_value("at-least-once"))
        );
        assert_eq!(
            arg(&quorum, "x-overflow"),
            Some(&str_value("reject-publish"))
        );
        assert_eq!(
            arg(&quorum, "x-dead-letter-routing-key"),
            Some(&str_value("q"))
        );
        assert_eq!(
            arg(&quorum, "x-message-ttl"),
            Some(&AMQPValue::LongLongInt(500))
        );

        let classic = holding_arguments("q", QueueType::Classic, 500);
        assert_eq!(arg(&classic, "x-queue-type"), Some(&str_value("classic")));
        assert_eq!(arg(&classic, "x-dead-letter-strategy"), None);
        assert_eq!(arg(&classic, "x-overflow"), None);
        assert_eq!(
            arg(&classic, "x-dead-letter-routing-key"),
            Some(&str_value("q"))
        );
    }
}
