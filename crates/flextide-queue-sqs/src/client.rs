//! The SQS connection: opening, creating and deleting queues.

use std::fmt;

use aws_config::BehaviorVersion;
use aws_sdk_sqs::{
    Client, config::Region, error::ProvideErrorMetadata as _, types::QueueAttributeName,
};
use flextide_queue_core::{QueueError, QueueOptions, Result, validate_queue_name};

use crate::{BACKEND, SqsQueue, error::Fault};

/// Region used with a custom endpoint when the environment names none
/// (local SQS emulators accept any).
const LOCAL_REGION: &str = "us-east-1";
/// Longest SQS queue name, suffixes included.
const MAX_SQS_NAME: usize = 80;
/// Suffix SQS requires on FIFO queue names.
const FIFO_SUFFIX: &str = ".fifo";
/// Suffix of the dead-letter queue's name (before its hash and `.fifo`).
const DLQ_SUFFIX: &str = "-dlq";
/// Dead letters are kept as long as SQS allows: 14 days.
const DLQ_RETENTION_SECONDS: &str = "1209600";
/// SQS's largest `maxReceiveCount`.
const MAX_RECEIVE_COUNT: u32 = 1000;

/// Which kind of SQS queue a name refers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum QueueKind {
    /// A standard queue: at-least-once, best-effort order, per-message delays.
    #[default]
    Standard,
    /// A FIFO queue (SQS name ends in `.fifo`): ordering keys become message
    /// groups, dedup ids are honoured, no per-message delay.
    Fifo,
}

/// The names of one Flextide queue on SQS.
///
/// The queue's SQS name is its Flextide name (plus `.fifo`), so existing
/// queues open by their plain name. Its dead-letter queue is
/// `<name>-dlq-<hash>`: a plain `<name>-dlq` would be the queue of the
/// Flextide queue named `<name>-dlq`, and names must stay isolated. Names
/// that would pass SQS's 80 characters with a suffix are cut and end in a
/// hash of the full name instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Names {
    /// The Flextide name (validated, no suffix).
    pub(crate) stem: String,
    /// Whether the queue is FIFO.
    pub(crate) fifo: bool,
}

impl Names {
    /// Validates `name` (`validate_queue_name`: no dots, so no `.fifo`).
    pub(crate) fn parse(name: &str, kind: QueueKind) -> Result<Names> {
        validate_queue_name(name)?;
        Ok(Names {
            stem: name.to_owned(),
            fifo: kind == QueueKind::Fifo,
        })
    }

    /// Reads the SQS name at the end of a queue URL.
    pub(crate) fn from_sqs_name(sqs_name: &str) -> Result<Names> {
        match sqs_name.strip_suffix(FIFO_SUFFIX) {
            Some(stem) => Names::parse(stem, QueueKind::Fifo),
            None => Names::parse(sqs_name, QueueKind::Standard),
        }
    }

    /// The SQS name of the queue.
    pub(crate) fn sqs_name(&self) -> String {
        self.fit("")
    }

    /// The SQS name of its dead-letter queue.
    pub(crate) fn dlq_name(&self) -> String {
        self.fit(&format!("{DLQ_SUFFIX}-{:08x}", fnv1a(&self.stem) as u32))
    }

    fn fit(&self, suffix: &str) -> String {
        let tail = format!("{suffix}{}", if self.fifo { FIFO_SUFFIX } else { "" });
        if self.stem.len() + tail.len() <= MAX_SQS_NAME {
            return format!("{}{tail}", self.stem);
        }
        // `-` and 16 hex digits of the full name's hash replace the cut end.
        let keep = MAX_SQS_NAME - tail.len() - 17;
        format!("{}-{:016x}{tail}", &self.stem[..keep], fnv1a(&self.stem))
    }
}

/// FNV-1a, 64 bits: a hash that never changes between releases, for names.
fn fnv1a(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// A connection to SQS (or a compatible server), from which queues are
/// opened. Cheap to clone; clones share the HTTP connections.
///
/// Credentials come from the standard AWS chain (environment, profile, SSO,
/// container or instance role). `AWS_ENDPOINT_URL` (or
/// `AWS_ENDPOINT_URL_SQS`) points it at a local server.
#[derive(Clone)]
pub struct SqsClient {
    sdk: Client,
}

impl fmt::Debug for SqsClient {
    // The SDK config holds credentials providers: show nothing of it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqsClient").finish_non_exhaustive()
    }
}

impl SqsClient {
    /// Loads the AWS configuration from the environment (region, credentials,
    /// `AWS_ENDPOINT_URL`). With a custom endpoint and no region, the region
    /// defaults to `us-east-1`.
    pub async fn from_env() -> Self {
        let config = aws_config::defaults(BehaviorVersion::latest()).load().await;
        Self::from_sdk_config(&config)
    }

    /// Like [`SqsClient::from_env`], but talking to `endpoint_url` (a local
    /// emulator such as `http://127.0.0.1:4566`).
    pub async fn with_endpoint(endpoint_url: &str) -> Self {
        let config = aws_config::defaults(BehaviorVersion::latest())
            .endpoint_url(endpoint_url)
            .load()
            .await;
        Self::from_sdk_config(&config)
    }

    /// Builds the client from an SDK configuration you loaded yourself.
    pub fn from_sdk_config(config: &aws_config::SdkConfig) -> Self {
        let mut builder = aws_sdk_sqs::config::Builder::from(config);
        if config.region().is_none() && config.endpoint_url().is_some() {
            builder = builder.region(Region::new(LOCAL_REGION));
        }
        SqsClient {
            sdk: Client::from_conf(builder.build()),
        }
    }

    /// Wraps an SDK client you built yourself.
    pub fn from_sdk(sdk: Client) -> Self {
        SqsClient { sdk }
    }

    /// The underlying SDK client.
    pub fn sdk(&self) -> &Client {
        &self.sdk
    }

    /// Opens an existing queue by name (looked up with `GetQueueUrl`).
    ///
    /// `name` follows the Flextide rules (`validate_queue_name`, so no dot);
    /// for a FIFO queue pass `QueueKind::Fifo` and the name without `.fifo`,
    /// which is appended. The queue's dead-letter queue is read from its
    /// redrive policy, or else is the one `ensure_queue` creates.
    pub async fn open(
        &self,
        name: &str,
        kind: QueueKind,
        options: QueueOptions,
    ) -> Result<SqsQueue> {
        let names = Names::parse(name, kind)?;
        let url =
            self.queue_url(&names.sqs_name())
                .await?
                .ok_or_else(|| QueueError::QueueNotFound {
                    backend: BACKEND,
                    queue: names.sqs_name(),
                })?;
        SqsQueue::open(self.sdk.clone(), names, url, options).await
    }

    /// Opens an existing queue by its URL. FIFO-ness is read from the name
    /// at the URL's end.
    pub async fn open_url(&self, url: &str, options: QueueOptions) -> Result<SqsQueue> {
        let sqs_name = url
            .trim_end_matches('/')
            .rsplit('/')
            .next()
            .unwrap_or_default();
        let names = Names::from_sqs_name(sqs_name)?;
        SqsQueue::open(self.sdk.clone(), names, url.to_owned(), options).await
    }

    /// Creates the queue if it does not exist, with its dead-letter queue
    /// `<name>-dlq-<hash>` (`<name>-dlq-<hash>.fifo`), and opens it.
    ///
    /// With `options.max_attempts = Some(n)` the queue gets a `RedrivePolicy`
    /// with `maxReceiveCount = n` (at most 1000), so SQS itself moves a
    /// message delivered `n` times to the dead-letter queue; with `None` the
    /// dead-letter queue only receives explicit `dead_letter` calls. An
    /// existing queue keeps its attributes, except that a `Some` max_attempts
    /// replaces its redrive policy. The lease is passed on every receive, so
    /// the queue's default visibility timeout does not matter.
    pub async fn ensure_queue(
        &self,
        name: &str,
        kind: QueueKind,
        options: QueueOptions,
    ) -> Result<SqsQueue> {
        let names = Names::parse(name, kind)?;
        let dlq_name = names.dlq_name();
        let mut dlq_attrs = vec![(
            QueueAttributeName::MessageRetentionPeriod,
            DLQ_RETENTION_SECONDS.to_owned(),
        )];
        if names.fifo {
            dlq_attrs.push((QueueAttributeName::FifoQueue, "true".to_owned()));
        }
        let dlq_url = self.create(&dlq_name, dlq_attrs).await?;
        let dlq_arn = self
            .sdk
            .get_queue_attributes()
            .queue_url(&dlq_url)
            .attribute_names(QueueAttributeName::QueueArn)
            .send()
            .await
            .map_err(|e| Fault::from_sdk(&e).into_error(&dlq_name, "get_queue_attributes"))?
            .attributes()
            .and_then(|a| a.get(&QueueAttributeName::QueueArn).cloned())
            .ok_or_else(|| {
                QueueError::backend_error(BACKEND, false, "the dead-letter queue has no QueueArn")
            })?;

        let redrive = match options.max_attempts {
            Some(n) if !(1..=MAX_RECEIVE_COUNT).contains(&n) => {
                return Err(QueueError::configuration(
                    BACKEND,
                    format!("max_attempts must be 1 to {MAX_RECEIVE_COUNT} on SQS"),
                ));
            }
            Some(n) => serde_json::json!({ "deadLetterTargetArn": dlq_arn, "maxReceiveCount": n })
                .to_string(),
            None => String::new(),
        };
        let mut attrs = Vec::new();
        if names.fifo {
            attrs.push((QueueAttributeName::FifoQueue, "true".to_owned()));
        }
        if !redrive.is_empty() {
            attrs.push((QueueAttributeName::RedrivePolicy, redrive.clone()));
        }
        let sqs_name = names.sqs_name();
        let url = self.create(&sqs_name, attrs).await?;
        if !redrive.is_empty() {
            // The queue may have existed with another policy: make it match.
            self.sdk
                .set_queue_attributes()
                .queue_url(&url)
                .attributes(QueueAttributeName::RedrivePolicy, redrive)
                .send()
                .await
                .map_err(|e| Fault::from_sdk(&e).into_error(&sqs_name, "set_queue_attributes"))?;
        }
        SqsQueue::open(self.sdk.clone(), names, url, options).await
    }

    /// Deletes the queue and the dead-letter queue `ensure_queue` made, with every
    /// message in them. Queues that do not exist are skipped. SQS refuses to
    /// recreate a deleted name for 60 seconds.
    pub async fn delete_queue(&self, name: &str, kind: QueueKind) -> Result<()> {
        let names = Names::parse(name, kind)?;
        for sqs_name in [names.sqs_name(), names.dlq_name()] {
            let Some(url) = self.queue_url(&sqs_name).await? else {
                continue;
            };
            match self.sdk.delete_queue().queue_url(url).send().await {
                Ok(_) => {}
                Err(e) => match Fault::from_sdk(&e) {
                    Fault::NotFound => {}
                    fault => return Err(fault.into_error(&sqs_name, "delete_queue")),
                },
            }
        }
        Ok(())
    }

    /// The URL of the queue `sqs_name`, or `None` when it does not exist.
    pub(crate) async fn queue_url(&self, sqs_name: &str) -> Result<Option<String>> {
        queue_url(&self.sdk, sqs_name, None).await
    }

    /// Creates a queue (or finds the existing one) and returns its URL.
    async fn create(
        &self,
        sqs_name: &str,
        attrs: Vec<(QueueAttributeName, String)>,
    ) -> Result<String> {
        let mut request = self.sdk.create_queue().queue_name(sqs_name);
        for (k, v) in attrs {
            request = request.attributes(k, v);
        }
        match request.send().await {
            Ok(out) => out.queue_url().map(str::to_owned).ok_or_else(|| {
                QueueError::backend_error(BACKEND, false, "CreateQueue returned no URL")
            }),
            // It exists with other attributes: use it as it is.
            Err(e)
                if e.code().is_some_and(|c| {
                    c.ends_with("QueueNameExists") || c.ends_with("QueueAlreadyExists")
                }) =>
            {
                self.queue_url(sqs_name)
                    .await?
                    .ok_or_else(|| QueueError::QueueNotFound {
                        backend: BACKEND,
                        queue: sqs_name.to_owned(),
                    })
            }
            Err(e) => Err(Fault::from_sdk(&e).into_error(sqs_name, "create_queue")),
        }
    }
}

/// The URL of the queue `sqs_name` (of another account when `owner` is
/// given), or `None` when it does not exist.
pub(crate) async fn queue_url(
    sdk: &Client,
    sqs_name: &str,
    owner: Option<&str>,
) -> Result<Option<String>> {
    match sdk
        .get_queue_url()
        .queue_name(sqs_name)
        .set_queue_owner_aws_account_id(owner.map(str::to_owned))
        .send()
        .await
    {
        Ok(out) => Ok(out.queue_url().map(str::to_owned)),
        Err(e) => match Fault::from_sdk(&e) {
            Fault::NotFound => Ok(None),
            fault => Err(fault.into_error(sqs_name, "get_queue_url")),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_map_to_sqs() {
        let n = Names::parse("orders", QueueKind::Standard).unwrap();
        let hash = format!("{:08x}", fnv1a("orders") as u32);
        assert_eq!(
            (n.sqs_name(), n.dlq_name()),
            ("orders".into(), format!("orders-dlq-{hash}"))
        );
        let n = Names::parse("orders", QueueKind::Fifo).unwrap();
        assert_eq!(
            (n.sqs_name(), n.dlq_name()),
            ("orders.fifo".into(), format!("orders-dlq-{hash}.fifo"))
        );
        assert_eq!(Names::from_sqs_name("orders.fifo").unwrap(), n);
        for bad in ["a.b", "q.fifo", "a b", ""] {
            assert!(
                matches!(
                    Names::parse(bad, QueueKind::Fifo),
                    Err(QueueError::InvalidQueueName { .. })
                ),
                "{bad}"
            );
        }
        // The dead-letter queue of `x` is not the queue named `x-dlq`.
        let other = Names::parse("orders-dlq", QueueKind::Standard).unwrap();
        assert_ne!(
            other.sqs_name(),
            Names::parse("orders", QueueKind::Standard)
                .unwrap()
                .dlq_name()
        );
    }

    #[test]
    fn long_names_fit_in_80_characters() {
        let long = "x".repeat(80);
        let std = Names::parse(&long, QueueKind::Standard).unwrap();
        assert_eq!(std.sqs_name(), long, "a name that fits is kept");
        for n in [std, Names::parse(&long, QueueKind::Fifo).unwrap()] {
            for sqs in [n.sqs_name(), n.dlq_name()] {
                assert!(sqs.len() <= 80, "{sqs}");
            }
        }
        let fifo = Names::parse(&long, QueueKind::Fifo).unwrap();
        assert!(fifo.sqs_name().ends_with(".fifo"));
        // Names differing only at the cut end stay distinct.
        let other = Names::parse(&format!("{}y", "x".repeat(79)), QueueKind::Fifo).unwrap();
        assert_ne!(fifo.sqs_name(), other.sqs_name());
        assert_ne!(fifo.dlq_name(), other.dlq_name());
    }
}
