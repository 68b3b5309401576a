//! [`SqsConnector`]: opening SQS queues by URL, for the facade's registry.
//!
//! Two kinds of URL open a queue:
//!
//! - `sqs:` opens the queue by the name it is given, through the standard
//!   AWS chain (region, credentials; `AWS_ENDPOINT_URL` for a local server).
//! - a queue URL (`https://sqs.us-east-1.amazonaws.com/123456789012/orders`,
//!   or a local server's `http://127.0.0.1:4566/000000000000/orders`) opens
//!   that queue, FIFO when its name ends in `.fifo`. A queue URL on AWS sets
//!   the region from its host; one elsewhere is its own endpoint.

use std::sync::Arc;

use async_trait::async_trait;
use aws_config::{BehaviorVersion, Region};
use flextide_queue_core::{Connector, QueueError, QueueOptions, QueueProvider, Result, url_scheme};

use crate::{BACKEND, QueueKind, SqsClient};

/// The URL schemes [`SqsConnector`] opens (queue URLs aside, which are
/// `http`/`https` URLs it recognises by their path).
pub const SCHEMES: &[&str] = &["sqs"];

/// Opens SQS queues: `sqs:` by queue name, or an SQS queue URL.
///
/// ```
/// use flextide_queue_sqs::{SqsConnector, core::Connector};
/// assert!(SqsConnector.accepts("sqs:"));
/// assert!(SqsConnector.accepts("https://sqs.eu-west-1.amazonaws.com/123456789012/orders.fifo"));
/// assert!(SqsConnector.accepts("http://127.0.0.1:4566/000000000000/orders"));
/// assert!(!SqsConnector.accepts("https://example.com/orders"));
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct SqsConnector;

#[async_trait]
impl Connector for SqsConnector {
    fn name(&self) -> &'static str {
        BACKEND
    }

    fn schemes(&self) -> &'static [&'static str] {
        SCHEMES
    }

    fn accepts(&self, url: &str) -> bool {
        is_sqs_scheme(url) || QueueUrl::parse(url).is_some()
    }

    fn url_vars(&self) -> &'static [&'static str] {
        &["SQS_QUEUE_URL"]
    }

    fn default_url(&self) -> Option<&'static str> {
        Some("sqs:")
    }

    fn example_url(&self) -> &'static str {
        "https://sqs.us-east-1.amazonaws.com/123456789012/orders"
    }

    async fn open(
        &self,
        url: &str,
        queue: &str,
        options: QueueOptions,
    ) -> Result<Arc<dyn QueueProvider>> {
        if let Some(queue_url) = QueueUrl::parse(url) {
            let client = queue_url.client().await;
            return Ok(Arc::new(client.open_url(url, options).await?));
        }
        let client = self.client(url, queue).await?;
        Ok(Arc::new(
            client.open(queue, QueueKind::Standard, options).await?,
        ))
    }

    /// Creates the queue and its dead-letter queue, with a redrive policy
    /// after `options.max_attempts` receives (`ensure_queue`). With a queue
    /// URL, `queue` is created on that URL's server.
    async fn create_queue(&self, url: &str, queue: &str, options: QueueOptions) -> Result<()> {
        let client = match QueueUrl::parse(url) {
            Some(queue_url) => queue_url.client().await,
            None => self.client(url, queue).await?,
        };
        client
            .ensure_queue(queue, QueueKind::Standard, options)
            .await
            .map(drop)
    }

    async fn list_queues(&self, url: &str) -> Result<Vec<String>> {
        let client = match QueueUrl::parse(url) {
            Some(queue_url) => queue_url.client().await,
            None => self.client(url, "").await?,
        };
        client.queue_names().await
    }
}

impl SqsConnector {
    /// The client of an `sqs:` URL (the AWS chain).
    async fn client(&self, url: &str, queue: &str) -> Result<SqsClient> {
        if !is_sqs_scheme(url) {
            return Err(QueueError::configuration(
                BACKEND,
                format!(
                    "not an SQS URL: use `sqs:` or a queue URL such as {}",
                    self.example_url()
                ),
            ));
        }
        let rest = &url[url.find(':').map_or(url.len(), |i| i + 1)..];
        if !rest.is_empty() && rest != "//" {
            return Err(QueueError::configuration(
                BACKEND,
                format!(
                    "an SQS URL is `sqs:` (the queue named {queue:?}, through the AWS chain) or a queue URL such as {}",
                    self.example_url()
                ),
            ));
        }
        Ok(SqsClient::from_env().await)
    }
}

fn is_sqs_scheme(url: &str) -> bool {
    url_scheme(url).is_some_and(|s| SCHEMES.iter().any(|m| m.eq_ignore_ascii_case(s)))
}

/// An SQS queue URL: `http(s)://HOST/<12-digit account>/<name>`.
#[derive(Debug, PartialEq, Eq)]
struct QueueUrl<'u> {
    /// `scheme://host[:port]`.
    origin: &'u str,
    host: &'u str,
}

impl<'u> QueueUrl<'u> {
    fn parse(url: &'u str) -> Option<Self> {
        let scheme = url_scheme(url)?;
        if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
            return None;
        }
        let after = url[scheme.len() + 1..].strip_prefix("//")?;
        let (authority, path) = after.split_once('/')?;
        let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
        if host.is_empty() {
            return None;
        }
        let mut segments = path.trim_end_matches('/').split('/');
        let (account, name) = (segments.next()?, segments.next()?);
        let valid = segments.next().is_none()
            && account.len() == 12
            && account.bytes().all(|b| b.is_ascii_digit())
            && !name.is_empty();
        valid.then(|| QueueUrl {
            origin: &url[..scheme.len() + 3 + authority.len()],
            host: host.split(':').next().unwrap_or(host),
        })
    }

    /// The region of an AWS queue URL (`sqs.<region>.amazonaws.com`, or the
    /// legacy `<region>.queue.amazonaws.com`); `None` for other hosts.
    fn aws_region(&self) -> Option<&'u str> {
        let host = self.host.strip_suffix(".amazonaws.com")?;
        host.strip_prefix("sqs.")
            .or_else(|| host.strip_suffix(".queue"))
            .filter(|r| !r.is_empty() && !r.contains('.'))
    }

    /// A client for this URL: the AWS chain in the URL's region on AWS, the
    /// URL's own server elsewhere.
    async fn client(&self) -> SqsClient {
        match self.aws_region() {
            Some(region) => {
                let config = aws_config::defaults(BehaviorVersion::latest())
                    .region(Region::new(region.to_owned()))
                    .load()
                    .await;
                SqsClient::from_sdk_config(&config)
            }
            None => SqsClient::with_endpoint(self.origin).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_urls() {
        let aws = QueueUrl::parse("https://sqs.eu-west-1.amazonaws.com/123456789012/orders.fifo")
            .unwrap();
        assert_eq!(aws.origin, "https://sqs.eu-west-1.amazonaws.com");
        assert_eq!(aws.aws_region(), Some("eu-west-1"));
        let legacy =
            QueueUrl::parse("https://us-east-2.queue.amazonaws.com/123456789012/q").unwrap();
        assert_eq!(legacy.aws_region(), Some("us-east-2"));
        let local = QueueUrl::parse("http://127.0.0.1:4566/000000000000/orders/").unwrap();
        assert_eq!(local.origin, "http://127.0.0.1:4566");
        assert_eq!(local.aws_region(), None);
        for bad in [
            "https://example.com/orders",
            "https://example.com/12345/orders",
            "https://example.com/123456789012/",
            "https://example.com/123456789012/a/b",
            "ftp://h/123456789012/q",
            "sqs:",
            "postgres://u@h/123456789012/q",
        ] {
            assert!(QueueUrl::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn connector_surface() {
        let c = SqsConnector;
        assert_eq!(c.name(), "sqs");
        assert_eq!(c.schemes(), SCHEMES);
        assert!(c.accepts("sqs:") && c.accepts("SQS://"));
        assert!(c.accepts("http://localhost:4599/123456789012/jobs"));
        assert!(!c.accepts("redis://localhost"));
        assert_eq!(c.default_url(), Some("sqs:"));
        assert!(c.accepts(c.example_url()));
    }
}
