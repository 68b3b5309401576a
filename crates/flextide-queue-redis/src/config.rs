//! Connection and key settings of the Redis backend.

use std::{fmt, time::Duration};

use flextide_queue_core::{QueueError, Result};

use crate::BACKEND;

/// The environment variable [`RedisConfig::from_env`] reads the URL from:
/// the one Redis users already set.
pub const URL_VAR: &str = "REDIS_URL";
/// The environment variable the key prefix is read from, when set (by
/// [`RedisConfig::from_env`] and [`RedisConnector`](crate::RedisConnector)).
pub const PREFIX_VAR: &str = "REDIS_KEY_PREFIX";

/// How to reach Redis and where the queues' keys live.
///
/// ```
/// # use flextide_queue_redis::RedisConfig;
/// let config = RedisConfig::new("redis://127.0.0.1:6379/").key_prefix("myapp");
/// assert_eq!(config.prefix(), "myapp");
/// ```
#[derive(Clone)]
pub struct RedisConfig {
    url: String,
    prefix: String,
    max_payload_bytes: usize,
    response_timeout: Duration,
    connection_timeout: Duration,
}

impl fmt::Debug for RedisConfig {
    // The URL can carry a password: never show it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisConfig")
            .field("url", &"<redacted>")
            .field("prefix", &self.prefix)
            .field("max_payload_bytes", &self.max_payload_bytes)
            .field("response_timeout", &self.response_timeout)
            .field("connection_timeout", &self.connection_timeout)
            .finish()
    }
}

impl RedisConfig {
    /// Default key prefix.
    pub const DEFAULT_PREFIX: &'static str = "flextide";
    /// Default largest payload: 4 MiB (Redis takes up to 512 MiB, but large
    /// values stall every other client of the server while they move).
    pub const DEFAULT_MAX_PAYLOAD_BYTES: usize = 4 * 1024 * 1024;

    /// Settings for the server at `url` (`redis://[user:password@]host:port/db`,
    /// or `rediss://` with TLS where the redis crate was built with it).
    pub fn new(url: impl Into<String>) -> Self {
        RedisConfig {
            url: url.into(),
            prefix: Self::DEFAULT_PREFIX.to_owned(),
            max_payload_bytes: Self::DEFAULT_MAX_PAYLOAD_BYTES,
            response_timeout: Duration::from_secs(10),
            connection_timeout: Duration::from_secs(5),
        }
    }

    /// Reads `REDIS_URL` and, when set, `REDIS_KEY_PREFIX`.
    pub fn from_env() -> Result<Self> {
        let url = std::env::var(URL_VAR).map_err(|_| {
            QueueError::configuration(BACKEND, format!("set {URL_VAR}=redis://host:6379/"))
        })?;
        let mut config = RedisConfig::new(url);
        if let Ok(prefix) = std::env::var(PREFIX_VAR) {
            config = config.key_prefix(prefix);
        }
        Ok(config)
    }

    /// Sets the prefix of every key (default `flextide`): keys are
    /// `<prefix>:{<queue>}:<part>`. Checked when connecting: no braces or
    /// whitespace, at most 100 characters.
    pub fn key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Sets the largest payload accepted (default 4 MiB).
    pub fn max_payload_bytes(mut self, max: usize) -> Self {
        self.max_payload_bytes = max;
        self
    }

    /// Sets how long one command may take before it fails with
    /// `QueueError::Timeout` (default 10 s). Blocking waits of `pop` are
    /// given their wait on top of this.
    pub fn response_timeout(mut self, timeout: Duration) -> Self {
        self.response_timeout = timeout;
        self
    }

    /// Sets how long connecting may take (default 5 s).
    pub fn connection_timeout(mut self, timeout: Duration) -> Self {
        self.connection_timeout = timeout;
        self
    }

    /// The key prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The largest payload accepted.
    pub fn max_payload(&self) -> usize {
        self.max_payload_bytes
    }

    pub(crate) fn url(&self) -> &str {
        &self.url
    }

    pub(crate) fn response(&self) -> Duration {
        self.response_timeout
    }

    pub(crate) fn connect_timeout(&self) -> Duration {
        self.connection_timeout
    }

    pub(crate) fn check(&self) -> Result<()> {
        let p = &self.prefix;
        if p.is_empty()
            || p.len() > 100
            || p.chars()
                .any(|c| c == '{' || c == '}' || c.is_whitespace() || c.is_control())
        {
            return Err(QueueError::configuration(
                BACKEND,
                "key prefix must be 1 to 100 characters without braces or whitespace",
            ));
        }
        if self.max_payload_bytes == 0 {
            return Err(QueueError::configuration(
                BACKEND,
                "max_payload_bytes must be above 0",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_url() {
        let c = RedisConfig::new("redis://user:hunter2@example:6379/");
        assert!(!format!("{c:?}").contains("hunter2"));
    }

    #[test]
    fn prefix_rules() {
        assert!(RedisConfig::new("redis://x/").check().is_ok());
        for bad in ["", "a{b", "a}b", "a b", &"x".repeat(101)] {
            assert!(
                RedisConfig::new("redis://x/")
                    .key_prefix(bad)
                    .check()
                    .is_err(),
                "{bad:?}"
            );
        }
    }
}
