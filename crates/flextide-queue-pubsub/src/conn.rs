//! The gRPC connections of one handle and the Pub/Sub calls the backend
//! makes, each with a deadline and, where a retry cannot do harm, a few
//! retries of transient failures.
//!
//! The calls go through the generated stubs (`gcloud-googleapis`) over the
//! connections `gcloud-gax` opens (TLS and Google credentials, or plain
//! HTTP/2 to an emulator), because a pull needs a deadline of its own
//! (`grpc-timeout`: the server then stops waiting for messages when the
//! caller does, instead of leasing messages to a pull nobody reads).

use std::{future::Future, time::Duration};

use flextide_queue_core::{QueueError, Result};
use gcloud_gax::{
    conn::{Channel, ConnectionManager, ConnectionOptions, Environment},
    create_request,
    grpc::{Code, Status},
};
use gcloud_googleapis::pubsub::v1::{
    AcknowledgeRequest, DeleteSubscriptionRequest, DeleteTopicRequest, GetSubscriptionRequest,
    ListSubscriptionsRequest, ModifyAckDeadlineRequest, PublishRequest, PubsubMessage, PullRequest,
    ReceivedMessage, SeekRequest, Subscription, Topic, publisher_client, seek_request,
    subscriber_client,
};

use crate::{BACKEND, config::PubSubConfig, error};

/// Largest gRPC message either way: a publish of 1000 messages, a pull of
/// as many.
const GRPC_LIMIT: usize = 20 * 1024 * 1024;

/// How long opening a connection may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Google's endpoint, and the audience of its tokens.
const DOMAIN: &str = "pubsub.googleapis.com";
const AUDIENCE: &str = "https://pubsub.googleapis.com/";

/// The kinds of request a handle counts.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Op {
    Publish = 0,
    Pull = 1,
    Acknowledge = 2,
    ModifyAckDeadline = 3,
    /// Creating, reading, deleting, seeking, listing.
    Admin = 4,
}

/// The names of [`Op`]s, in order.
pub(crate) const OPS: [&str; 5] = [
    "publish",
    "pull",
    "acknowledge",
    "modify_ack_deadline",
    "admin",
];

/// One handle's connections.
pub(crate) struct Conn {
    channels: ConnectionManager,
    /// Requests sent (every try), by [`Op`].
    counts: [std::sync::atomic::AtomicU64; 5],
    timeout: Duration,
    /// The project of the credentials, when the configuration names none.
    pub(crate) project: Option<String>,
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn")
            .field("channels", &self.channels.num())
            .finish()
    }
}

type Sub = subscriber_client::SubscriberClient<Channel>;
type Pub = publisher_client::PublisherClient<Channel>;

impl Conn {
    /// Connects to the emulator or to Google Cloud (with the standard
    /// credential chain). A refused connection fails here, at once.
    pub(crate) async fn open(config: &PubSubConfig) -> Result<Self> {
        let options = ConnectionOptions {
            timeout: None,
            connect_timeout: Some(CONNECT_TIMEOUT),
            http2_keep_alive_interval: Some(Duration::from_secs(30)),
            keep_alive_timeout: Some(Duration::from_secs(20)),
            keep_alive_while_idle: Some(false),
        };
        let (environment, project, pool) = match &config.emulator {
            Some(host) => (Environment::Emulator(host.clone()), None, 1),
            None => {
                let (env, project) = google_cloud().await?;
                (env, project, 4)
            }
        };
        let shown = config.emulator.as_deref().unwrap_or(DOMAIN).to_owned();
        let channels = ConnectionManager::new(pool, DOMAIN, AUDIENCE, &environment, &options)
            .await
            .map_err(|e| {
                QueueError::connection(
                    BACKEND,
                    format!("cannot connect to Pub/Sub at {shown}: {e}"),
                )
            })?;
        Ok(Conn {
            counts: Default::default(),
            channels,
            timeout: config.operation_timeout,
            project,
        })
    }

    fn sub(&self) -> Sub {
        Sub::new(self.channels.conn())
            .max_decoding_message_size(GRPC_LIMIT)
            .max_encoding_message_size(GRPC_LIMIT)
    }

    fn publisher(&self) -> Pub {
        Pub::new(self.channels.conn())
            .max_decoding_message_size(GRPC_LIMIT)
            .max_encoding_message_size(GRPC_LIMIT)
    }

    /// Requests sent so far (every try), by kind, in [`OPS`] order.
    pub(crate) fn counts(&self) -> [u64; 5] {
        std::array::from_fn(|i| self.counts[i].load(std::sync::atomic::Ordering::Relaxed))
    }

    fn count(&self, op: Op) {
        self.counts[op as usize].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// Runs `call` with the operation deadline, retrying transient
    /// failures twice (after 100 ms, then 400 ms) when `retry` allows.
    async fn run<T, F, Fut>(&self, op: Op, retry: bool, mut call: F) -> Result<T, Status>
    where
        F: FnMut(Duration) -> Fut,
        Fut: Future<Output = Result<T, Status>>,
    {
        let mut pause = Duration::from_millis(100);
        let mut tries = 0;
        loop {
            tries += 1;
            self.count(op);
            let outcome = match tokio::time::timeout(
                self.timeout + Duration::from_secs(1),
                call(self.timeout),
            )
            .await
            {
                Ok(outcome) => outcome,
                Err(_) => Err(Status::deadline_exceeded(
                    "no answer within the operation timeout",
                )),
            };
            match outcome {
                Err(s) if retry && tries < 3 && error::transient(&s) => {
                    tracing::debug!(code = ?s.code(), "a Pub/Sub call failed; trying again");
                    tokio::time::sleep(pause).await;
                    pause *= 4;
                }
                other => return other,
            }
        }
    }

    /// Creates a topic; `false` when it existed.
    pub(crate) async fn create_topic(&self, name: &str) -> Result<bool, Status> {
        let out = self
            .run(Op::Admin, true, |t| {
                let mut req = create_request(
                    format!("name={name}"),
                    Topic {
                        name: name.to_owned(),
                        ..Default::default()
                    },
                );
                req.set_timeout(t);
                let mut c = self.publisher();
                async move { c.create_topic(req).await }
            })
            .await;
        created(out)
    }

    /// Creates a subscription; `false` when it existed.
    pub(crate) async fn create_subscription(&self, sub: Subscription) -> Result<bool, Status> {
        let out = self
            .run(Op::Admin, true, |t| {
                let mut req = create_request(format!("name={}", sub.name), sub.clone());
                req.set_timeout(t);
                let mut c = self.sub();
                async move { c.create_subscription(req).await }
            })
            .await;
        created(out)
    }

    /// A subscription's settings; `None` when it does not exist.
    pub(crate) async fn get_subscription(
        &self,
        name: &str,
    ) -> Result<Option<Subscription>, Status> {
        let out = self
            .run(Op::Admin, true, |t| {
                let mut req = create_request(
                    format!("subscription={name}"),
                    GetSubscriptionRequest {
                        subscription: name.to_owned(),
                    },
                );
                req.set_timeout(t);
                let mut c = self.sub();
                async move { c.get_subscription(req).await }
            })
            .await;
        match out {
            Ok(r) => Ok(Some(r.into_inner())),
            Err(s) if s.code() == Code::NotFound => Ok(None),
            Err(s) => Err(s),
        }
    }

    /// Deletes a subscription; one that does not exist is fine.
    pub(crate) async fn delete_subscription(&self, name: &str) -> Result<(), Status> {
        let out = self
            .run(Op::Admin, true, |t| {
                let mut req = create_request(
                    format!("subscription={name}"),
                    DeleteSubscriptionRequest {
                        subscription: name.to_owned(),
                    },
                );
                req.set_timeout(t);
                let mut c = self.sub();
                async move { c.delete_subscription(req).await }
            })
            .await;
        gone(out)
    }

    /// Deletes a topic; one that does not exist is fine.
    pub(crate) async fn delete_topic(&self, name: &str) -> Result<(), Status> {
        let out = self
            .run(Op::Admin, true, |t| {
                let mut req = create_request(
                    format!("topic={name}"),
                    DeleteTopicRequest {
                        topic: name.to_owned(),
                    },
                );
                req.set_timeout(t);
                let mut c = self.publisher();
                async move { c.delete_topic(req).await }
            })
            .await;
        gone(out)
    }

    /// Publishes in one request; returns the server's message ids. A
    /// publish whose answer was lost is sent again, which may store the
    /// messages twice (Pub/Sub is at-least-once on publish too; the copies
    /// carry the same Flextide id).
    pub(crate) async fn publish(
        &self,
        topic: &str,
        messages: Vec<PubsubMessage>,
    ) -> Result<Vec<String>, Status> {
        self.run(Op::Publish, true, |t| {
            let mut req = create_request(
                format!("topic={topic}"),
                PublishRequest {
                    topic: topic.to_owned(),
                    messages: messages.clone(),
                },
            );
            req.set_timeout(t);
            let mut c = self.publisher();
            async move { c.publish(req).await.map(|r| r.into_inner().message_ids) }
        })
        .await
    }

    /// One unary pull of up to `max` messages. `wait: None` asks the
    /// server to answer at once (`return_immediately`, for listing);
    /// otherwise the pull's deadline is `wait`, and a pull that ends empty
    /// (or with `DEADLINE_EXCEEDED`) returns an empty vector. Never retried:
    /// a retried pull could lease messages a lost answer already carried.
    pub(crate) async fn pull(
        &self,
        subscription: &str,
        max: usize,
        wait: Option<Duration>,
    ) -> Result<Vec<ReceivedMessage>, Status> {
        #[allow(
            deprecated,
            reason = "return_immediately is what listing needs; the emulator honours it"
        )]
        let request = PullRequest {
            subscription: subscription.to_owned(),
            return_immediately: wait.is_none(),
            max_messages: max.clamp(1, crate::PUBSUB_MAX_BATCH) as i32,
        };
        let deadline = wait.unwrap_or(self.timeout);
        let mut req = create_request(format!("subscription={subscription}"), request);
        req.set_timeout(deadline);
        let mut c = self.sub();
        self.count(Op::Pull);
        let answer = tokio::time::timeout(deadline + Duration::from_secs(5), c.pull(req)).await;
        match answer {
            Ok(Ok(r)) => Ok(r.into_inner().received_messages),
            Ok(Err(s)) if s.code() == Code::DeadlineExceeded && wait.is_some() => Ok(Vec::new()),
            Ok(Err(s)) => Err(s),
            Err(_) => Err(Status::deadline_exceeded("the pull got no answer")),
        }
    }

    /// Acknowledges `ack_ids` in one request.
    pub(crate) async fn ack(&self, subscription: &str, ack_ids: &[String]) -> Result<(), Status> {
        self.run(Op::Acknowledge, true, |t| {
            let mut req = create_request(
                format!("subscription={subscription}"),
                AcknowledgeRequest {
                    subscription: subscription.to_owned(),
                    ack_ids: ack_ids.to_vec(),
                },
            );
            req.set_timeout(t);
            let mut c = self.sub();
            async move { c.acknowledge(req).await.map(|_| ()) }
        })
        .await
    }

    /// Sets the ack deadline of `ack_ids` to `seconds` from now (0: give
    /// them back at once).
    pub(crate) async fn modack(
        &self,
        subscription: &str,
        ack_ids: &[String],
        seconds: i32,
    ) -> Result<(), Status> {
        self.run(Op::ModifyAckDeadline, true, |t| {
            let mut req = create_request(
                format!("subscription={subscription}"),
                ModifyAckDeadlineRequest {
                    subscription: subscription.to_owned(),
                    ack_ids: ack_ids.to_vec(),
                    ack_deadline_seconds: seconds,
                },
            );
            req.set_timeout(t);
            let mut c = self.sub();
            async move { c.modify_ack_deadline(req).await.map(|_| ()) }
        })
        .await
    }

    /// Seeks a subscription to now: every message published before is
    /// acknowledged, leased ones included.
    pub(crate) async fn seek_now(&self, subscription: &str) -> Result<(), Status> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let time = prost_types::Timestamp {
            seconds: now.as_secs() as i64,
            nanos: now.subsec_nanos() as i32,
        };
        let out = self
            .run(Op::Admin, true, |t| {
                let mut req = create_request(
                    format!("subscription={subscription}"),
                    SeekRequest {
                        subscription: subscription.to_owned(),
                        target: Some(seek_request::Target::Time(time)),
                    },
                );
                req.set_timeout(t);
                let mut c = self.sub();
                async move { c.seek(req).await.map(|_| ()) }
            })
            .await;
        gone(out)
    }

    /// The queue names of `project`'s subscriptions named `<prefix><queue>`.
    pub(crate) async fn list_subscription_names(
        &self,
        config: &PubSubConfig,
        project: &str,
    ) -> Result<Vec<String>> {
        let lead = format!("{project}/subscriptions/{}", config.prefix);
        let mut names = Vec::new();
        let mut page = String::new();
        loop {
            let out = self
                .run(Op::Admin, true, |t| {
                    let mut req = create_request(
                        format!("project={project}"),
                        ListSubscriptionsRequest {
                            project: project.to_owned(),
                            page_size: 1000,
                            page_token: page.clone(),
                        },
                    );
                    req.set_timeout(t);
                    let mut c = self.sub();
                    async move { c.list_subscriptions(req).await.map(|r| r.into_inner()) }
                })
                .await
                .map_err(|s| error::map("list subscriptions", s))?;
            for s in out.subscriptions {
                if let Some(q) = s.name.strip_prefix(&lead)
                    && flextide_queue_core::validate_queue_name(q).is_ok()
                {
                    names.push(q.to_owned());
                }
            }
            if out.next_page_token.is_empty() {
                break;
            }
            page = out.next_page_token;
        }
        names.sort();
        Ok(names)
    }
}

fn created<T>(out: Result<T, Status>) -> Result<bool, Status> {
    match out {
        Ok(_) => Ok(true),
        Err(s) if s.code() == Code::AlreadyExists => Ok(false),
        Err(s) => Err(s),
    }
}

fn gone<T>(out: Result<T, Status>) -> Result<(), Status> {
    match out {
        Ok(_) => Ok(()),
        Err(s) if s.code() == Code::NotFound => Ok(()),
        Err(s) => Err(s),
    }
}

/// Google Cloud's credential chain (`GOOGLE_APPLICATION_CREDENTIALS`, the
/// metadata server, gcloud's application-default credentials), and the
/// project of those credentials.
#[cfg(feature = "google-cloud")]
async fn google_cloud() -> Result<(Environment, Option<String>)> {
    use gcloud_pubsub::client::google_cloud_auth::{
        project::Config, token::DefaultTokenSourceProvider,
    };
    // tonic's TLS takes the process's rustls provider; install one if the
    // program has not (aws-lc-rs, which the JWT signing uses already).
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let scopes = [
        "https://www.googleapis.com/auth/cloud-platform",
        "https://www.googleapis.com/auth/pubsub",
    ];
    let ts = DefaultTokenSourceProvider::new(Config::default().with_audience(AUDIENCE).with_scopes(&scopes))
        .await
        .map_err(|e| {
            QueueError::configuration(
                BACKEND,
                format!("no Google Cloud credentials ({e}); set GOOGLE_APPLICATION_CREDENTIALS, run `gcloud auth application-default login`, or set PUBSUB_EMULATOR_HOST for an emulator"),
            )
        })?;
    let project = ts.project_id.clone();
    Ok((Environment::GoogleCloud(Box::new(ts)), project))
}

#[cfg(not(feature = "google-cloud"))]
async fn google_cloud() -> Result<(Environment, Option<String>)> {
    Err(QueueError::configuration(
        BACKEND,
        "this build talks only to an emulator (the google-cloud feature is off); set PUBSUB_EMULATOR_HOST or pubsub://PROJECT?emulator=HOST:PORT",
    ))
}
