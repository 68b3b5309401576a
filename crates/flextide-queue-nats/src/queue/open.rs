//! Connecting, and creating a queue's streams and consumer when they do not
//! exist yet.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
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
    // A cluster's servers, separated by commas: the client tries them all.
    let servers: Vec<&str> = settings.url.split(',').map(str::trim).collect();
    let connected = tokio::time::timeout(t, options.connect(servers)).await;
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
    /// Opens a handle on the queue `name`. Creates nothing: it only looks
    /// for the queue's stream, dead-letter stream and consumer, so that a
    /// queue that exists is used as it is (its lease, whether its stream
    /// takes schedules). What is missing is created by the first push or
    /// pop ([`NatsQueue::ensure`]).
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
        let stream_name = layout::stream(name);
        let server_schedules = schedule::supported(&server_version);
        let stream = handle(&js, name, &stream_name).await?;
        let dlq = handle(&js, name, &layout::dlq_stream(name)).await?;
        let dedup = handle(&js, name, &layout::dedup_stream(name)).await?;
        let found = error::timed(
            "open",
            settings.config.operation_timeout,
            existing(&js, name, &stream_name),
        )
        .await?;
        let mut lease = options.lease;
        let mut schedules = server_schedules;
        let mut created = false;
        let mut dedup_window = options.dedup_window;
        if let Some(found) = found {
            schedules = server_schedules && found.schedules;
            if let Some(ack_wait) = found.ack_wait {
                lease = ack_wait;
            }
            dedup_window = found.duplicate_window;
            created = found.complete;
        }
        let puller = super::pull::PullPool::new(client.clone(), &stream_name, layout::CONSUMER);
        Ok(NatsQueue {
            puller,
            name: name.to_owned(),
            client,
            js,
            stream,
            dlq,
            dedup,
            stream_name,
            subject: layout::subject(name),
            dlq_subject: layout::dlq_subject(name),
            created: AtomicBool::new(created),
            creating: tokio::sync::Mutex::new(()),
            lease: Mutex::new(lease),
            lease_warned: AtomicBool::new(false),
            dedup_window: Mutex::new(dedup_window),
            dedup_made: AtomicBool::new(false),
            options,
            server_version,
            server_schedules,
            schedules: AtomicBool::new(schedules),
            max_payload,
            keepalive: Mutex::new(HashMap::new()),
            extended: std::sync::atomic::AtomicUsize::new(0),
            attempts: super::attempts::Attempts::default(),
            settings,
        })
    }

    /// Creates the queue's stream, dead-letter stream and consumer where
    /// they do not exist yet (once per handle, and again after
    /// `drop_queue`): every push and pop calls it first.
    pub(crate) async fn ensure(&self) -> Result<()> {
        if self.created.load(Ordering::Acquire) {
            return Ok(());
        }
        let _one = self.creating.lock().await;
        if self.created.load(Ordering::Acquire) {
            return Ok(());
        }
        let made = create(
            &self.js,
            &self.settings.config,
            &self.name,
            self.server_schedules,
            self.options.lease,
            self.options.dedup_window,
        );
        let made = error::timed("create", self.timeout(), made).await?;
        self.schedules
            .store(self.server_schedules && made.schedules, Ordering::Release);
        if let Some(ack_wait) = made.ack_wait {
            *self.lease.lock().unwrap() = ack_wait;
        }
        if made.duplicate_window != self.options.dedup_window {
            tracing::warn!(
                queue = %self.name,
                window = ?made.duplicate_window,
                asked = ?self.options.dedup_window,
                "the queue's stream exists with another duplicate window; keeping the server's"
            );
        }
        *self.dedup_window.lock().unwrap() = made.duplicate_window;
        self.created.store(true, Ordering::Release);
        Ok(())
    }

    /// After a failed push or pull: when the queue's consumer is gone (the
    /// queue was dropped by another handle), creates the queue again and
    /// returns `true`; `false` when it is there (the failure was something
    /// else).
    pub(crate) async fn recreate_if_gone(&self) -> Result<bool> {
        let look = async {
            match self.stream.consumer_info(layout::CONSUMER).await {
                Ok(_) => Ok(true),
                Err(e) if error::class_of(&e) == Class::NotFound => Ok(false),
                Err(e) => Err(error::map("consumer info", &self.name, e)),
            }
        };
        if error::timed("consumer info", self.timeout(), look).await? {
            return Ok(false);
        }
        {
            let _one = self.creating.lock().await;
            self.forget();
        }
        self.ensure().await?;
        Ok(true)
    }

    /// Warns, once per handle, when the queue's consumer has another lease
    /// than this handle asked for (at its first pop: a handle that only
    /// looks at the queue or pushes to it does not care).
    pub(crate) fn warn_lease_once(&self) {
        let lease = self.lease();
        if lease != self.options.lease && !self.lease_warned.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                queue = %self.name,
                lease = ?lease,
                asked = ?self.options.lease,
                "the queue's consumer exists with another lease (ack_wait); keeping the server's"
            );
        }
    }

    /// Forgets that the queue's streams exist (after `drop_queue`): the
    /// next push or pop creates them again.
    pub(crate) fn forget(&self) {
        self.created.store(false, Ordering::Release);
        self.dedup_made.store(false, Ordering::Release);
    }

    /// Creates the stream of dedup records when this handle has not seen
    /// it yet: at the first push with a dedup id, so queues that never use
    /// one have no such stream. Records live for the window in effect.
    pub(crate) async fn ensure_dedup_stream(&self) -> Result<()> {
        if self.dedup_made.load(Ordering::Acquire) {
            return Ok(());
        }
        let window = self.dedup_window();
        let config = &self.settings.config;
        let made = ensure_stream(
            &self.js,
            &self.name,
            stream::Config {
                name: layout::dedup_stream(&self.name),
                subjects: vec![layout::dedup_subjects(&self.name)],
                retention: RetentionPolicy::Limits,
                storage: storage(config),
                num_replicas: config.replicas,
                max_age: window,
                max_messages_per_subject: 1,
                // The server wants it no longer than max_age.
                duplicate_window: window.min(config.duplicate_window),
                allow_direct: true,
                ..Default::default()
            },
        );
        error::timed("create", self.timeout(), made).await?;
        self.dedup_made.store(true, Ordering::Release);
        Ok(())
    }
}

/// A handle on the stream `name` (no request: it may not exist).
async fn handle(js: &jetstream::Context, queue: &str, name: &str) -> Result<Stream<()>> {
    js.get_stream_no_info(name)
        .await
        .map_err(|e| error::map("stream handle", queue, e))
}

/// What a queue has on the server.
pub(crate) struct Found {
    /// Whether its work-queue stream takes message schedules.
    pub(crate) schedules: bool,
    /// The consumer's `ack_wait`, when the consumer exists.
    pub(crate) ack_wait: Option<Duration>,
    /// Whether the stream, the dead-letter stream and the consumer all exist.
    pub(crate) complete: bool,
    /// The work-queue stream's duplicate window: the dedup window in effect.
    pub(crate) duplicate_window: Duration,
}

/// Looks for a queue's streams and consumer without creating anything:
/// `None` when its work-queue stream does not exist.
pub(crate) async fn existing(
    js: &jetstream::Context,
    queue: &str,
    stream_name: &str,
) -> Result<Option<Found>> {
    let stream = match js.get_stream(stream_name).await {
        Ok(s) => s,
        Err(e) if error::class_of(&e) == Class::NotFound => return Ok(None),
        Err(e) => return Err(error::map("stream info", queue, e)),
    };
    let schedules = stream.cached_info().config.allow_message_schedules;
    let duplicate_window = stream.cached_info().config.duplicate_window;
    let ack_wait = match stream.consumer_info(layout::CONSUMER).await {
        Ok(c) => Some(c.config.ack_wait),
        Err(e) if error::class_of(&e) == Class::NotFound => None,
        Err(e) => return Err(error::map("consumer info", queue, e)),
    };
    let dlq = match js.get_stream(layout::dlq_stream(queue)).await {
        Ok(_) => true,
        Err(e) if error::class_of(&e) == Class::NotFound => false,
        Err(e) => return Err(error::map("stream info", queue, e)),
    };
    Ok(Some(Found {
        schedules,
        ack_wait,
        complete: ack_wait.is_some() && dlq,
        duplicate_window,
    }))
}

/// Creates what is missing of a queue: its work-queue stream (with
/// `dedup_window` as its duplicate window), its dead-letter stream and its
/// durable pull consumer (with `lease` as `ack_wait`). What exists is left
/// as it is. Returns what the queue then has.
pub(crate) async fn create(
    js: &jetstream::Context,
    config: &NatsConfig,
    name: &str,
    server_schedules: bool,
    lease: Duration,
    dedup_window: Duration,
) -> Result<Found> {
    let subject = layout::subject(name);
    let mut subjects = vec![subject.clone()];
    if server_schedules {
        subjects.push(layout::schedule_subjects(name));
    }
    let stream = ensure_stream(
        js,
        name,
        stream::Config {
            name: layout::stream(name),
            subjects,
            retention: RetentionPolicy::WorkQueue,
            storage: storage(config),
            num_replicas: config.replicas,
            // Every push's Nats-Msg-Id (its dedup id, else its message id)
            // is remembered this long. No max_age, which it may not exceed;
            // zero would mean the server's default (2 minutes).
            duplicate_window: dedup_window.max(Duration::from_millis(1)),
            allow_direct: true,
            allow_message_schedules: server_schedules,
            ..Default::default()
        },
    )
    .await?;
    // A stream created before the server was upgraded has no schedules.
    let schedules = stream.cached_info().config.allow_message_schedules;
    let duplicate_window = stream.cached_info().config.duplicate_window;
    ensure_stream(
        js,
        name,
        stream::Config {
            name: layout::dlq_stream(name),
            subjects: vec![layout::dlq_subject(name)],
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
                ack_wait: lease,
                // The poison guard is ours: the server's limit would
                // leave the message in the work-queue stream forever.
                max_deliver: -1,
                // Leases are not capped by count, as on every backend.
                max_ack_pending: -1,
                filter_subject: subject,
                ..Default::default()
            },
        )
        .await
        .map_err(|e| error::map("consumer create", name, e))?;
    Ok(Found {
        schedules,
        ack_wait: Some(consumer.cached_info().config.ack_wait),
        complete: true,
        duplicate_window,
    })
}

/// The names of the queues on the server: its `FTQ_` streams, sorted
/// (dead-letter streams are `FTDLQ_`, and left out).
pub(crate) async fn queue_names(js: &jetstream::Context) -> Result<Vec<String>> {
    use futures::TryStreamExt;
    let names: Vec<String> = js
        .stream_names()
        .try_collect()
        .await
        .map_err(|e| error::map("stream names", "*", e))?;
    let mut queues: Vec<String> = names
        .iter()
        .filter_map(|n| layout::queue_of_stream(n))
        .map(str::to_owned)
        .collect();
    queues.sort();
    queues.dedup();
    Ok(queues)
}

/// Deletes a queue's stream (its consumer and delayed messages with it),
/// its dead-letter stream and its dedup records; a missing one is skipped.
pub(crate) async fn drop_streams(
    js: &jetstream::Context,
    config: &NatsConfig,
    queue: &str,
) -> Result<()> {
    for name in [
        layout::stream(queue),
        layout::dlq_stream(queue),
        layout::dedup_stream(queue),
    ] {
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
