//! Settings shared by every queue of one [`PostgresBackend`](crate::PostgresBackend).

use std::time::Duration;

use flextide_queue_core::QueueError;

use crate::BACKEND;

/// Default largest payload: 16 MiB. PostgreSQL itself stops at 1 GiB per
/// value; a queue is not the place for such bodies.
pub const DEFAULT_MAX_PAYLOAD_BYTES: usize = 16 * 1024 * 1024;

/// Default LISTEN/NOTIFY channel.
pub const DEFAULT_CHANNEL: &str = "flextide_queue";

/// Settings of a [`PostgresBackend`](crate::PostgresBackend): where the
/// tables live, the notification channel, limits and polling.
///
/// ```
/// # use flextide_queue_postgres::PostgresConfig;
/// let config = PostgresConfig::default().schema("jobs").max_connections(20);
/// assert_eq!(config.schema.as_deref(), Some("jobs"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PostgresConfig {
    /// Schema holding the tables (created by `migrate`). `None`: the
    /// connection's `search_path` (normally `public`). Letters, digits and
    /// `_` only, not starting with a digit, at most 63 characters.
    pub schema: Option<String>,
    /// LISTEN/NOTIFY channel; pushes notify it with the queue name as
    /// payload. Same character rules as `schema`.
    pub channel: String,
    /// Largest payload accepted; `None` leaves it to PostgreSQL (1 GiB).
    pub max_payload_bytes: Option<usize>,
    /// Pool size when the backend opens its own pool (`connect`).
    pub max_connections: u32,
    /// `application_name` of the connections the backend opens itself
    /// (visible in `pg_stat_activity`).
    pub application_name: Option<String>,
    /// Run [`migrate`](crate::migrate) when connecting. Default `false`:
    /// migrate explicitly, from a deploy step or at start-up.
    pub migrate_on_connect: bool,
    /// Make leases and settlements (claim, delete, nack, extend,
    /// dead-letter) wait for the WAL flush like pushes do. Default `true`.
    /// Set it to `false` to commit them asynchronously (faster on a disk
    /// with slow fsync): a database crash can then forget the last fraction
    /// of a second of acks, so those messages are delivered again — never
    /// lost, since pushes always wait for the flush, but run twice.
    pub durable_settle: bool,
    /// First polling interval of a waiting `pop` (doubles up to
    /// `poll_max`). Notifications normally wake it much sooner; polling
    /// covers delayed messages, missed notifications and reconnects.
    pub poll_min: Duration,
    /// Longest polling interval of a waiting `pop`.
    pub poll_max: Duration,
}

impl Default for PostgresConfig {
    fn default() -> Self {
        PostgresConfig {
            schema: None,
            channel: DEFAULT_CHANNEL.to_owned(),
            max_payload_bytes: Some(DEFAULT_MAX_PAYLOAD_BYTES),
            max_connections: 10,
            application_name: None,
            migrate_on_connect: false,
            durable_settle: true,
            poll_min: Duration::from_millis(50),
            poll_max: Duration::from_millis(500),
        }
    }
}

impl PostgresConfig {
    /// Sets [`PostgresConfig::schema`].
    pub fn schema(mut self, schema: impl Into<String>) -> Self {
        self.schema = Some(schema.into());
        self
    }

    /// Sets [`PostgresConfig::channel`].
    pub fn channel(mut self, channel: impl Into<String>) -> Self {
        self.channel = channel.into();
        self
    }

    /// Sets [`PostgresConfig::max_payload_bytes`].
    pub fn max_payload_bytes(mut self, max: Option<usize>) -> Self {
        self.max_payload_bytes = max;
        self
    }

    /// Sets [`PostgresConfig::max_connections`].
    pub fn max_connections(mut self, n: u32) -> Self {
        self.max_connections = n;
        self
    }

    /// Sets [`PostgresConfig::application_name`].
    pub fn application_name(mut self, name: impl Into<String>) -> Self {
        self.application_name = Some(name.into());
        self
    }

    /// Sets [`PostgresConfig::migrate_on_connect`].
    pub fn migrate_on_connect(mut self, yes: bool) -> Self {
        self.migrate_on_connect = yes;
        self
    }

    /// Sets [`PostgresConfig::durable_settle`].
    pub fn durable_settle(mut self, yes: bool) -> Self {
        self.durable_settle = yes;
        self
    }

    /// Sets the polling interval bounds of waiting pops.
    pub fn poll_interval(mut self, min: Duration, max: Duration) -> Self {
        self.poll_min = min;
        self.poll_max = max.max(min);
        self
    }

    /// Checks the identifiers, which are spliced into SQL and so must be plain.
    pub(crate) fn validate(&self) -> Result<(), QueueError> {
        if let Some(schema) = &self.schema {
            check_ident("schema", schema)?;
        }
        check_ident("channel", &self.channel)
    }

    /// `"schema".` or nothing: the prefix of every table name.
    pub(crate) fn table_prefix(&self) -> String {
        match &self.schema {
            Some(s) => format!("\"{s}\"."),
            None => String::new(),
        }
    }
}

/// An identifier safe to splice into SQL inside double quotes.
fn check_ident(what: &str, ident: &str) -> Result<(), QueueError> {
    let ok = !ident.is_empty()
        && ident.len() <= 63
        && !ident.as_bytes()[0].is_ascii_digit()
        && ident
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(QueueError::configuration(
            BACKEND,
            format!(
                "{what} {:?} is not a plain identifier (letters, digits, '_'; 1 to 63 characters)",
                ident.escape_debug().to_string()
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_checked() {
        assert!(PostgresConfig::default().validate().is_ok());
        assert!(
            PostgresConfig::default()
                .schema("jobs_2")
                .validate()
                .is_ok()
        );
        for bad in ["", "1a", "a\"b", "a b", "a;drop", &"x".repeat(64)] {
            assert!(
                PostgresConfig::default().schema(bad).validate().is_err(),
                "{bad:?}"
            );
        }
        assert_eq!(
            PostgresConfig::default().schema("s").table_prefix(),
            "\"s\"."
        );
    }
}
