//! Connecting, and creating a queue's streams and consumer when they do not
//! exist yet.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use async_nats::jetstream::{
    self,
    consumer::{AckPolicy, DeliverPolicy, PullConsumer, pull},
    stream::{self, RetentionPolicy, StorageType, Stream},
};
use flextide_queue_core::{QueueError, QueueOptions, Result};

use super::NatsQueue;
use crate::{
    BACKEND, NatsConfig, Settings,
    config::Storage,
    error::{self, Class},
    layout, schedule,
};

/// Room left in the server's `max_payload` for our headers.
const HEADER_ROOM: usize = 4 * 1024;

/// Connects to the server of `settings`; async-nats reconnects by itself
/// afterwards, for as long as the client lives.
pub(crate) async fn connect(settings: &Settings, purpose: &str) -> Result<async_nats::Client> {
    let t = settings.config.operation_timeout;
    let shown = settings.shown.clone();
    let options = async_nats::ConnectOptions::new()
        .name(format!("flextide-queue-nats/{purpose}"))
        .connection_timeout(t)
        .request_timeout(Some(t))
        .max_reconnects(None)
        .event_callback(move |event| {
            let shown = shown.clone();
            async move { tracing::info!(server = %shown, %event, "nats connection event") }
        });
    let connected = tokio::time::timeout(t, options.connect(settings.url.as_str())).await;
    match connected {
        Ok(Ok(client)) => Ok(client),
        // The error names what went wrong without the URL (it may hold a password).
        Ok(Err(e)) => {
            let class = error::class_of(&e);
            let what = format!("could not connect to {}: {}", settings.shown, e.kind());
            Err(match class {
                Class::Refused => QueueError::configuration(BACKEND, what),
                _ => QueueError::connection(BACKEND, what),
            })
        }
        Err(_) => Err(QueueError::Timeout {
            backend: BACKEND,
            operation: "connect",
            after: t,
        }),
    }
}

/// The JetStream context of a client: every management request and
/// publish acknowledgement is bounded by the operation timeout.
pub(crate) fn jetstream(client: &async_nats::Client, config: &NatsConfig) -> jetstream::Context {
    jetstream::ContextBuilder::new()
        .timeout(config.operation_timeout)
        .build(client.clone())
}

fn storage(config: &NatsConfig) -> StorageType {
    match config.storage {
        Storage::File => StorageType::File,
        Storage::Memory => StorageType::Memory,
    }
}

/// Gets the stream `config.name`, creating it when it does not exist.
async fn ensure_stream(
    js: &jetstream::Context,
    queue: &str,
    config: stream::Config,
) -> Result<Stream> {
    match js.get_stream(&config.name).await {
        Ok(s) => return Ok(s),
        Err(e) if error::class_of(&e) == Class::NotFound => {}
        Err(e) => return Err(error::map("stream info", queue, e)),
    }
    match js.create_stream(config.clone()).await {
        Ok(s) => Ok(s),
        // Another process created it in between.
        Err(first) => js
            .get_stream(&config.name)
            .await
            .map_err(|_| error::map("stream create", queue, first)),
    }
}

impl NatsQueue {
    pub(crate) async fn open(
        settings: Arc<Settings>,
        name: &str,
        options: QueueOptions,
    ) -> Result<NatsQueue> {
        if options.lease < Duration::from_millis(1) {
            return Err(QueueError::configuration(
                BACKEND,
                "the lease must be at least 1 ms",
            ));
        }
        let client = connect(&settings, name).await?;
        let info = client.server_info();
        let server_version = info.version.clone();
        let max_payload = info.max_payload.saturating_sub(HEADER_ROOM).max(1);
        let js = jetstream(&client, &settings.config);
        let config = &settings.config;
        let stream_name = layout::stream(name);
        let subject = layout::subject(name);
        let server_schedules = schedule::supported(&server_version);
        let mut subjects = vec![subject.clone()];
        if server_schedules {
            subjects.push(layout::schedule_subjects(name));
        }
        let stream = ensure_stream(
            &js,
            name,
            stream::Config {
                name: stream_name.clone(),
                subjects,
                retention: RetentionPolicy::WorkQueue,
                storage: storage(config),
                num_replicas: config.replicas,
                duplicate_window: config.duplicate_window,
                allow_direct: true,
                allow_message_schedules: server_schedules,
                ..Default::default()
            },
        )
        .await?;
        // A stream created before the server was upgraded has no schedules.
        let schedules = server_schedules && stream.cached_info().config.allow_message_schedules;
        let dlq_subject = layout::dlq_subject(name);
        let dlq = ensure_stream(
            &js,
            name,
            stream::Config {
                name: layout::dlq_stream(name),
                subjects: vec![dlq_subject.clone()],
                retention: RetentionPolicy::Limits,
                storage: storage(config),
                num_replicas: config.replicas,
                duplicate_window: config.duplicate_window,
                allow_direct: true,
                ..Default::default()
            },
        )
        .await?;
        let consumer: PullConsumer = stream
            .get_or_create_consumer(
                layout::CONSUMER,
                pull::Config {
                    durable_name: Some(layout::CONSUMER.to_owned()),
                    deliver_policy: DeliverPolicy::All,
                    ack_policy: AckPolicy::Explicit,
                    ack_wait: options.lease,
                    // The poison guard is ours: the server's limit would
                    // leave the message in the work-queue stream forever.
                    max_deliver: -1,
                    // Leases are not capped by count, as on every backend.
                    max_ack_pending: -1,
                    filter_subject: subject.clone(),
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| error::map("consumer create", name, e))?;
        let lease = consumer.cached_info().config.ack_wait;
        if lease != options.lease {
            tracing::warn!(
                queue = name,
                lease = ?lease,
                asked = ?options.lease,
                "the queue's consumer exists with another lease (ack_wait); keeping the server's"
            );
        }
        let puller = super::pull::PullPool::new(client.clone(), &stream_name, layout::CONSUMER);
        Ok(NatsQueue {
            puller,
            name: name.to_owned(),
            client,
            js,
            stream,
            dlq,
            stream_name,
            subject,
            dlq_subject,
            consumer,
            lease,
            options,
            server_version,
            schedules,
            max_payload,
            keepalive: Mutex::new(HashMap::new()),
            extended: std::sync::atomic::AtomicUsize::new(0),
            settings,
        })
    }
}

/// Deletes a queue's stream (its consumer and delayed messages with it) and
/// its dead-letter stream; a missing one is skipped.
pub(crate) async fn drop_streams(
    js: &jetstream::Context,
    config: &NatsConfig,
    queue: &str,
) -> Result<()> {
    for name in [layout::stream(queue), layout::dlq_stream(queue)] {
        let deleted = error::timed("stream delete", config.operation_timeout, async {
            match js.delete_stream(&name).await {
                Ok(_) => Ok(()),
                Err(e) if error::class_of(&e) == Class::NotFound => Ok(()),
                Err(e) => Err(error::map("stream delete", queue, e)),
            }
        })
        .await;
        deleted?;
    }
    Ok(())
}
