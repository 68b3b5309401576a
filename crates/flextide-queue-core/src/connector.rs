//! How a backend is opened by URL: the one shape every backend crate
//! exports, and the entries of the facade's registry.
//!
//! Every backend crate has one type implementing [`Connector`], named after
//! its broker (`PostgresConnector`, `RedisConnector`, …). The facade
//! `flextide-queue` keeps a list of them; `from_env()` and the `flextide`
//! command pick one by `QUEUE_PROVIDER` or by the URL's scheme, and a third
//! party adds its own with `flextide_queue::register`.
//!
//! ```
//! # use std::sync::Arc;
//! # use flextide_queue_core::{Connector, QueueOptions, QueueProvider, Result, url_scheme};
//! #[derive(Debug)]
//! struct MyBrokerConnector;
//!
//! #[async_trait::async_trait]
//! impl Connector for MyBrokerConnector {
//!     fn name(&self) -> &'static str { "mybroker" }
//!     fn schemes(&self) -> &'static [&'static str] { &["mybroker"] }
//!     fn url_vars(&self) -> &'static [&'static str] { &["MYBROKER_URL"] }
//!     fn example_url(&self) -> &'static str { "mybroker://127.0.0.1:7000" }
//!     async fn open(&self, url: &str, queue: &str, options: QueueOptions)
//!         -> Result<Arc<dyn QueueProvider>> {
//!         # let _ = (url, queue, options); unimplemented!()
//!     }
//! }
//! assert!(MyBrokerConnector.accepts("mybroker://h:7000"));
//! assert_eq!(url_scheme("mybroker://h:7000"), Some("mybroker"));
//! ```

use std::{fmt, sync::Arc};

use async_trait::async_trait;

use crate::{QueueOptions, QueueProvider, Result};

/// Opens queues of one backend from a URL.
#[async_trait]
pub trait Connector: Send + Sync + fmt::Debug + 'static {
    /// The backend's short name (`"postgres"`, `"redis"`): a
    /// `QUEUE_PROVIDER` value, and the name in errors and metrics.
    fn name(&self) -> &'static str;

    /// Other `QUEUE_PROVIDER` values that choose this backend (`"amqp"`).
    fn aliases(&self) -> &'static [&'static str] {
        &[]
    }

    /// The URL schemes it opens, without the colon (`["redis", "rediss"]`).
    fn schemes(&self) -> &'static [&'static str];

    /// Whether it opens `url`. By default: when the URL's scheme is one of
    /// [`Connector::schemes`] (case-insensitive).
    fn accepts(&self, url: &str) -> bool {
        url_scheme(url).is_some_and(|s| {
            self.schemes()
                .iter()
                .any(|mine| mine.eq_ignore_ascii_case(s))
        })
    }

    /// The environment variables its users already set for the broker's
    /// URL, in order of preference (`["DATABASE_URL"]`, `["REDIS_URL"]`).
    fn url_vars(&self) -> &'static [&'static str];

    /// The URL used when none of [`Connector::url_vars`] is set, if the
    /// backend has a sensible one (`memory:`, `sqs:` for the AWS chain).
    fn default_url(&self) -> Option<&'static str> {
        None
    }

    /// An example URL, shown in errors that ask for one.
    fn example_url(&self) -> &'static str;

    /// Opens the queue `queue` on the broker at `url`. Errors never show
    /// the URL's password.
    async fn open(
        &self,
        url: &str,
        queue: &str,
        options: QueueOptions,
    ) -> Result<Arc<dyn QueueProvider>>;

    /// Opens the queue for looking at it (stats, peek, dead letters,
    /// listing): like [`Connector::open`], but creating nothing the backend
    /// lets it avoid (no tables migrated, no file created). The default is
    /// [`Connector::open`], for backends whose open creates nothing.
    async fn open_existing(
        &self,
        url: &str,
        queue: &str,
        options: QueueOptions,
    ) -> Result<Arc<dyn QueueProvider>> {
        self.open(url, queue, options).await
    }

    /// Creates or upgrades what the backend keeps queues in (the SQL
    /// tables) and returns what it applied, one line per step (`"1 init"`),
    /// empty when everything was up to date. `None`: this backend has no
    /// schema (queues are created as they are used, or by
    /// [`Connector::create_queue`]). Idempotent.
    async fn migrate(&self, url: &str) -> Result<Option<Vec<String>>> {
        let _ = url;
        Ok(None)
    }

    /// Creates the queue `queue` and its helpers (an SQS dead-letter queue
    /// with its redrive policy after `options.max_attempts` receives, a
    /// RabbitMQ declaration, the SQL tables). Idempotent: an existing
    /// queue is left as it is. The default opens the queue and closes it,
    /// for backends that create what they need when a queue is opened.
    async fn create_queue(&self, url: &str, queue: &str, options: QueueOptions) -> Result<()> {
        self.open(url, queue, options).await?.close().await
    }

    /// The names of the queues at `url`, sorted. Backends that cannot
    /// enumerate their queues return `Unsupported` with a hint saying
    /// where to look instead.
    async fn list_queues(&self, url: &str) -> Result<Vec<String>> {
        let _ = url;
        Err(crate::QueueError::unsupported_because(
            self.name(),
            "list_queues",
            format!(
                "the {} backend cannot enumerate its queues; use the broker's own tools",
                self.name()
            ),
        ))
    }
}

/// The scheme of `url` (`"postgres"` of `postgres://…`, `"sqlite"` of
/// `sqlite::memory:`), if it has one.
pub fn url_scheme(url: &str) -> Option<&str> {
    let (scheme, _) = url.split_once(':')?;
    let valid = !scheme.is_empty()
        && scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    valid.then_some(scheme)
}

/// `url` with the password of its userinfo (and any query parameter that
/// looks like a secret) replaced by `***`, for logs and errors, whatever
/// the scheme: `postgres://u:***@h/db`. A password may hold `/`, `?` or `@`;
/// everything between the first `:` of the userinfo and the last `@` before
/// the host is hidden. A `NAME=VALUE;…` connection string (Azure's
/// `Endpoint=sb://…;SharedAccessKey=…`) keeps only the values of parts
/// whose name does not look like a secret.
pub fn redact_url(url: &str) -> String {
    if url
        .trim_start()
        .to_ascii_lowercase()
        .starts_with("endpoint=")
    {
        return redact_connection_string(url);
    }
    let (head, rest) = match url.find("://") {
        Some(i) => url.split_at(i + 3),
        None => ("", url),
    };
    let mut out = String::with_capacity(url.len());
    out.push_str(head);
    // The userinfo ends at the last `@` (a password may contain `/` or `?`),
    // provided the text before it has a `:` (user:password) or no `/`.
    let rest = match rest.rfind('@') {
        Some(at) if !head.is_empty() || !rest[..at].contains('/') => {
            let userinfo = &rest[..at];
            match userinfo.find(':') {
                Some(colon) => {
                    out.push_str(&userinfo[..colon]);
                    out.push_str(":***");
                }
                None => out.push_str(userinfo),
            }
            out.push('@');
            &rest[at + 1..]
        }
        _ => rest,
    };
    match rest.split_once('?') {
        None => out.push_str(rest),
        Some((base, query)) => {
            out.push_str(base);
            out.push('?');
            let pairs: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((k, _))
                        if ["password", "pass", "pwd", "secret", "token", "key", "auth"]
                            .iter()
                            .any(|s| k.to_ascii_lowercase().contains(s)) =>
                    {
                        format!("{k}=***")
                    }
                    _ => pair.to_owned(),
                })
                .collect();
            out.push_str(&pairs.join("&"));
        }
    }
    out
}

fn looks_secret(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    [
        "password",
        "pass",
        "pwd",
        "secret",
        "token",
        "key",
        "auth",
        "signature",
    ]
    .iter()
    .any(|s| name.contains(s))
        && !name.ends_with("keyname")
}

fn redact_connection_string(text: &str) -> String {
    text.split(';')
        .map(|part| match part.split_once('=') {
            Some((k, _)) if looks_secret(k) => format!("{k}=***"),
            _ => part.to_owned(),
        })
        .collect::<Vec<_>>()
        .join(";")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_strings_lose_their_keys() {
        let shown = redact_url(
            "Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=Root;SharedAccessKey=S3CRET+/=",
        );
        assert_eq!(
            shown,
            "Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=Root;SharedAccessKey=***"
        );
        assert!(
            !redact_url(
                "Endpoint=sb://h/;SharedAccessSignature=SharedAccessSignature sr=a&sig=S3CRET"
            )
            .contains("S3CRET")
        );
    }

    #[test]
    fn redaction() {
        for (url, want) in [
            ("postgres://u:pw@h:5432/db", "postgres://u:***@h:5432/db"),
            ("redis://:pw@h/", "redis://:***@h/"),
            ("oracle://u:S3c/retPW@db/x", "oracle://u:***@db/x"),
            ("amqp://u:p@ss?w@h:5672/%2f", "amqp://u:***@h:5672/%2f"),
            (
                "postgres://u@h/db?password=pw&sslmode=require",
                "postgres://u@h/db?password=***&sslmode=require",
            ),
            (
                "sqlite://flextide.db?mode=rwc",
                "sqlite://flextide.db?mode=rwc",
            ),
            ("sqlite::memory:", "sqlite::memory:"),
            ("u:pw@h", "u:***@h"),
        ] {
            assert_eq!(redact_url(url), want, "{url}");
            assert!(
                !redact_url(url).contains("pw") || !url.contains(":pw"),
                "{url}"
            );
        }
        assert!(!redact_url("mysql://root:S3c/ret@h:3306/test").contains("S3c"));
    }

    #[test]
    fn schemes() {
        assert_eq!(url_scheme("postgres://u@h/db"), Some("postgres"));
        assert_eq!(url_scheme("sqlite::memory:"), Some("sqlite"));
        assert_eq!(url_scheme("memory:"), Some("memory"));
        assert_eq!(url_scheme("no scheme here"), None);
        assert_eq!(url_scheme("://x"), None);
    }
}
