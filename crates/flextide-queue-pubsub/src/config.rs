//! Settings of the Pub/Sub backend, and the `pubsub://` URL they are read from.

use std::time::Duration;

use flextide_queue_core::{QueueError, Result};

use crate::BACKEND;

/// The largest batch one Pub/Sub request takes: `Pull`'s `max_messages`,
/// `Publish`'s and `Acknowledge`'s message lists.
pub const PUBSUB_MAX_BATCH: usize = 1000;

/// Where the project's name is read from when the URL does not name it.
pub const PROJECT_VARS: &[&str] = &["GOOGLE_CLOUD_PROJECT", "GCLOUD_PROJECT"];

/// The variable Google's own clients read a local emulator's address from.
pub const EMULATOR_ENV: &str = "PUBSUB_EMULATOR_HOST";

/// Tuning and location of a [`PubSub`](crate::PubSub) client.
///
/// Read from a URL by [`PubSubConfig::from_url`]:
/// `pubsub://PROJECT?emulator=HOST:PORT&exactly_once=true&prefix=ftq-`.
/// Every part is optional: the project falls back to `GOOGLE_CLOUD_PROJECT`
/// (then `GCLOUD_PROJECT`, then the project of the credentials), the
/// emulator to `PUBSUB_EMULATOR_HOST`.
#[derive(Debug, Clone)]
pub struct PubSubConfig {
    /// The Google Cloud project holding the topics and subscriptions.
    pub project: Option<String>,
    /// A local emulator's `host:port`; `None` talks to Google Cloud with
    /// the standard credential chain.
    pub emulator: Option<String>,
    /// Whether subscriptions this library creates enable exactly-once
    /// delivery, which fences stale receipts (default `false`). Existing
    /// subscriptions are used as they are: the handle reads their setting.
    pub exactly_once: bool,
    /// What every topic and subscription name starts with (default `ftq-`):
    /// the queue `emails` is the topic and subscription `ftq-emails`, its
    /// dead letters the topic and subscription `ftq-emails.dlq`.
    pub prefix: String,
    /// Largest batch of one `pop_batch`, `push_batch` request or
    /// `delete_batch` request (default and maximum 1000).
    pub max_batch: usize,
    /// Deadline of one request other than a waiting pull (default 30 s).
    pub operation_timeout: Duration,
}

impl Default for PubSubConfig {
    fn default() -> Self {
        PubSubConfig {
            project: None,
            emulator: None,
            exactly_once: false,
            prefix: "ftq-".to_owned(),
            max_batch: PUBSUB_MAX_BATCH,
            operation_timeout: Duration::from_secs(30),
        }
    }
}

impl PubSubConfig {
    /// Reads a `pubsub:` URL, then fills what it leaves out from the
    /// environment (`GOOGLE_CLOUD_PROJECT`, `PUBSUB_EMULATOR_HOST`).
    ///
    /// ```
    /// use flextide_queue_pubsub::PubSubConfig;
    ///
    /// let c = PubSubConfig::from_url("pubsub://my-project?emulator=127.0.0.1:8085&exactly_once=true").unwrap();
    /// assert_eq!(c.project.as_deref(), Some("my-project"));
    /// assert_eq!(c.emulator.as_deref(), Some("127.0.0.1:8085"));
    /// assert!(c.exactly_once);
    /// ```
    pub fn from_url(url: &str) -> Result<Self> {
        let mut config = Self::parse(url)?;
        if config.project.is_none() {
            config.project = PROJECT_VARS
                .iter()
                .find_map(|v| std::env::var(v).ok().filter(|p| !p.is_empty()));
        }
        if config.emulator.is_none() {
            config.emulator = std::env::var(EMULATOR_ENV).ok().filter(|h| !h.is_empty());
        }
        config.check()?;
        Ok(config)
    }

    /// The URL alone, without the environment.
    pub(crate) fn parse(url: &str) -> Result<Self> {
        let bad = |what: String| {
            QueueError::configuration(
                BACKEND,
                format!("{what}; expected pubsub://PROJECT?emulator=HOST:PORT&exactly_once=true"),
            )
        };
        let rest = match url.split_once(':') {
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("pubsub") => rest,
            _ => return Err(bad("the URL does not start with pubsub:".into())),
        };
        let rest = rest.strip_prefix("//").unwrap_or(rest);
        let (project, query) = rest.split_once('?').unwrap_or((rest, ""));
        let project = project.trim_end_matches('/');
        let mut config = PubSubConfig::default();
        if !project.is_empty() {
            config.project = Some(project.to_owned());
        }
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            match key {
                "emulator" => config.emulator = Some(value.to_owned()).filter(|v| !v.is_empty()),
                "exactly_once" => {
                    config.exactly_once = match value {
                        "" | "true" | "1" | "yes" => true,
                        "false" | "0" | "no" => false,
                        _ => {
                            return Err(bad(format!(
                                "exactly_once={value:?} is not true or false"
                            )));
                        }
                    }
                }
                "prefix" => config.prefix = value.to_owned(),
                _ => {
                    return Err(bad(format!(
                        "unknown URL parameter {key:?} (known: emulator, exactly_once, prefix)"
                    )));
                }
            }
        }
        Ok(config)
    }

    /// The project, or an error saying how to name one.
    pub(crate) fn project(&self) -> Result<&str> {
        self.project.as_deref().ok_or_else(|| {
            QueueError::configuration(
                BACKEND,
                "no Google Cloud project: name it in the URL (pubsub://PROJECT) or set GOOGLE_CLOUD_PROJECT",
            )
        })
    }

    pub(crate) fn check(&self) -> Result<()> {
        if let Some(p) = &self.project {
            let ok = (6..=30).contains(&p.len())
                && p.starts_with(|c: char| c.is_ascii_lowercase())
                && p.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
            // The emulator takes any project name; Google Cloud's are 6 to
            // 30 lowercase letters, digits and hyphens.
            let loose = p
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
            if !(ok || (self.emulator.is_some() && loose && !p.is_empty())) {
                return Err(QueueError::configuration(
                    BACKEND,
                    format!(
                        "{p:?} is not a Google Cloud project id (6 to 30 lowercase letters, digits and hyphens)"
                    ),
                ));
            }
        }
        let prefix_ok = self.prefix.starts_with(|c: char| c.is_ascii_alphabetic())
            && !self.prefix.to_ascii_lowercase().starts_with("goog")
            && self.prefix.len() <= 100
            && self
                .prefix
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '~' | '+'));
        if !prefix_ok {
            return Err(QueueError::configuration(
                BACKEND,
                "the name prefix must start with a letter (not \"goog\") and hold at most 100 letters, digits, - _ . ~ +",
            ));
        }
        if !(1..=PUBSUB_MAX_BATCH).contains(&self.max_batch) {
            return Err(QueueError::configuration(
                BACKEND,
                format!("max_batch must be between 1 and {PUBSUB_MAX_BATCH}"),
            ));
        }
        if self.operation_timeout.is_zero() {
            return Err(QueueError::configuration(
                BACKEND,
                "operation_timeout must be above zero",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let c = PubSubConfig::parse("pubsub:").unwrap();
        assert_eq!(c.project, None);
        assert!(!c.exactly_once);
        let c = PubSubConfig::parse("PUBSUB://proj-123/?prefix=x-&exactly_once=0").unwrap();
        assert_eq!(c.project.as_deref(), Some("proj-123"));
        assert_eq!(c.prefix, "x-");
        assert!(!c.exactly_once);
        assert!(PubSubConfig::parse("pubsub://p?nope=1").is_err());
        assert!(PubSubConfig::parse("pubsub://p?exactly_once=maybe").is_err());
        assert!(PubSubConfig::parse("redis://p").is_err());
    }

    #[test]
    fn checks() {
        let mut c = PubSubConfig::parse("pubsub://Not_A_Project").unwrap();
        assert!(c.check().is_err());
        c.emulator = Some("127.0.0.1:1".into());
        assert!(c.check().is_ok(), "the emulator takes any project name");
        let c = PubSubConfig::parse("pubsub://my-project?prefix=goog-").unwrap();
        assert!(c.check().is_err());
    }
}
