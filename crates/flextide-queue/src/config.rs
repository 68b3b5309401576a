//! Reading the backend choice and its settings from the environment.

use std::{fmt, time::Duration};

use flextide_queue_core::{
    QueueError, QueueOptions, parse_duration, redact_url, url_scheme, validate_queue_name,
};

use crate::Registry;

const BACKEND: &str = "config";

/// The default `DATABASE_URL`: a SQLite file in the working directory,
/// created on first use.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://flextide.db?mode=rwc";
/// The default `QUEUE_NAME`.
pub const DEFAULT_QUEUE_NAME: &str = "flextide-tasks";

/// The default `QUEUE_COMPRESSION_THRESHOLD`, in bytes.
pub const DEFAULT_COMPRESSION_THRESHOLD: usize = 1024;

/// `QUEUE_PROVIDER` values that mean "the SQL database `DATABASE_URL` names".
const DATABASE: &[&str] = &["database", "db", "sql"];

/// Everything needed to open a queue, read from the environment by
/// [`Config::from_env`]. `Debug` hides passwords in the URL.
#[derive(Clone, PartialEq, Eq)]
pub struct Config {
    /// The backend's name (`"sqlite"`, `"postgres"`, `"redis"`, …), as its
    /// connector calls itself.
    pub backend: String,
    /// Where it is: `QUEUE_URL`, or the backend's usual variable
    /// (`DATABASE_URL`, `REDIS_URL`, `AMQP_URL`, `SQS_QUEUE_URL`), or its
    /// default (`sqlite://flextide.db?mode=rwc`, `sqs:`, `memory:`).
    pub url: String,
    /// The queue's name (`QUEUE_NAME`).
    pub queue_name: String,
    /// Lease, max attempts and dedup window (`QUEUE_LEASE_SECONDS`,
    /// `QUEUE_MAX_ATTEMPTS`, `QUEUE_DEDUP_WINDOW`).
    pub options: QueueOptions,
    /// Compress payloads of at least this many bytes with zstd
    /// (`QUEUE_COMPRESSION=zstd`, threshold `QUEUE_COMPRESSION_THRESHOLD`,
    /// 1024 by default); `None` sends payloads as they are. Needs this
    /// crate's `zstd` feature to open.
    pub compress_above: Option<usize>,
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("backend", &self.backend)
            .field("url", &redact_url(&self.url))
            .field("queue_name", &self.queue_name)
            .field("options", &self.options)
            .field("compress_above", &self.compress_above)
            .finish()
    }
}

impl Config {
    /// Reads the process environment with the process-wide
    /// [`registry`](crate::registry). Fails with a `Configuration` error
    /// that names the missing or malformed variable, never showing a secret.
    ///
    /// The backend is chosen by, in order: `QUEUE_URL`'s scheme;
    /// `QUEUE_PROVIDER` (a backend's name, or `database` for the SQL
    /// database `DATABASE_URL` names) with that backend's usual variable;
    /// and by default the SQLite file `sqlite://flextide.db?mode=rwc`.
    pub fn from_env() -> Result<Self, QueueError> {
        Self::from_lookup(|key| std::env::var(key).ok())
    }

    /// Like [`Config::from_env`], reading variables through `lookup`.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, QueueError> {
        Self::resolve(&crate::registry(), lookup)
    }

    /// Like [`Config::from_lookup`], choosing among the backends of `registry`.
    pub fn resolve(
        registry: &Registry,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, QueueError> {
        let var = |key: &str| {
            lookup(key)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let provider = var("QUEUE_PROVIDER").map(|p| p.to_ascii_lowercase());
        let is_database = provider.as_deref().is_none_or(|p| DATABASE.contains(&p));
        let (backend, url) = if let Some(url) = var("QUEUE_URL") {
            let connector = registry.by_url(&url)?;
            if let Some(p) = provider.as_deref()
                && !is_database
                && registry.by_name(p)?.name() != connector.name()
            {
                return Err(QueueError::configuration(
                    BACKEND,
                    format!(
                        "QUEUE_PROVIDER={p} disagrees with QUEUE_URL={}, which names the {} backend; unset one of them",
                        redact_url(&url),
                        connector.name()
                    ),
                ));
            }
            (connector.name(), url)
        } else if is_database {
            let url = var("DATABASE_URL").unwrap_or_else(|| DEFAULT_DATABASE_URL.to_owned());
            let connector = registry
                .by_url(&url)
                .ok()
                .filter(|c| c.url_vars().contains(&"DATABASE_URL"));
            match connector {
                Some(c) => (c.name(), url),
                None => {
                    // A backend of this repository that is not compiled
                    // in: say which feature to turn on.
                    let in_tree = url_scheme(&url).is_some_and(|s| {
                        crate::IN_TREE
                            .iter()
                            .any(|(_, schemes)| schemes.iter().any(|x| x.eq_ignore_ascii_case(s)))
                    });
                    if in_tree {
                        registry.by_url(&url)?;
                    }
                    return Err(QueueError::configuration(
                        BACKEND,
                        format!(
                            "DATABASE_URL={} must start with sqlite:, postgres://, mysql:// or mariadb://",
                            redact_url(&url)
                        ),
                    ));
                }
            }
        } else {
            let name = provider.as_deref().unwrap_or_default();
            let connector = registry.by_name(name)?;
            let from_var = connector
                .url_vars()
                .iter()
                .find_map(|v| var(v).map(|url| (*v, url)));
            let url = match (from_var, connector.default_url()) {
                (Some((v, url)), _) => {
                    if !connector.accepts(&url) {
                        return Err(QueueError::configuration(
                            BACKEND,
                            format!(
                                "QUEUE_PROVIDER={name} cannot open {v}={}; for example {v}={}",
                                redact_url(&url),
                                connector.example_url()
                            ),
                        ));
                    }
                    url
                }
                (None, Some(default)) => default.to_owned(),
                (None, None) => {
                    let v = connector.url_vars().first().copied().unwrap_or("QUEUE_URL");
                    return Err(QueueError::configuration(
                        BACKEND,
                        format!(
                            "QUEUE_PROVIDER={name} needs {v} (for example {v}={}) or QUEUE_URL",
                            connector.example_url()
                        ),
                    ));
                }
            };
            (connector.name(), url)
        };

        let queue_name = var("QUEUE_NAME").unwrap_or_else(|| DEFAULT_QUEUE_NAME.to_owned());
        validate_queue_name(&queue_name).map_err(|e| {
            QueueError::configuration(BACKEND, format!("QUEUE_NAME is invalid: {e}"))
        })?;
        let mut options = QueueOptions::default();
        if let Some(v) = var("QUEUE_LEASE_SECONDS") {
            let secs: f64 = v
                .parse()
                .ok()
                .filter(|s: &f64| s.is_finite() && *s > 0.0)
                .ok_or_else(|| {
                    QueueError::configuration(
                        BACKEND,
                        format!("QUEUE_LEASE_SECONDS={v:?} is not a positive number of seconds"),
                    )
                })?;
            options.lease = Duration::from_secs_f64(secs);
        }
        if let Some(v) = var("QUEUE_MAX_ATTEMPTS") {
            options.max_attempts = match v.as_str() {
                "0" | "unlimited" | "none" => None,
                _ => Some(v.parse().map_err(|_| {
                    QueueError::configuration(
                        BACKEND,
                        format!("QUEUE_MAX_ATTEMPTS={v:?} is not a whole number (0 for unlimited)"),
                    )
                })?),
            };
        }
        if let Some(v) = var("QUEUE_DEDUP_WINDOW") {
            options.dedup_window = parse_duration(&v)
                .filter(|d| !d.is_zero())
                .ok_or_else(|| {
                    QueueError::configuration(
                        BACKEND,
                        format!(
                            "QUEUE_DEDUP_WINDOW={v:?} is not a duration above zero; use a number and a unit, such as 90s, 15m or 1h"
                        ),
                    )
                })?;
        }
        let compress_above = match var("QUEUE_COMPRESSION").map(|v| v.to_ascii_lowercase()) {
            None => None,
            Some(v) if v == "none" || v == "off" => None,
            Some(v) if v == "zstd" => Some(match var("QUEUE_COMPRESSION_THRESHOLD") {
                None => DEFAULT_COMPRESSION_THRESHOLD,
                Some(t) => t.parse().map_err(|_| {
                    QueueError::configuration(
                        BACKEND,
                        format!("QUEUE_COMPRESSION_THRESHOLD={t:?} is not a whole number of bytes"),
                    )
                })?,
            }),
            Some(v) => {
                return Err(QueueError::configuration(
                    BACKEND,
                    format!("QUEUE_COMPRESSION={v:?} is not known; use zstd or none"),
                ));
            }
        };
        Ok(Config {
            backend: backend.to_owned(),
            url,
            queue_name,
            options,
            compress_above,
        })
    }

    /// Where the queue is, for messages: the backend and its URL without
    /// the password.
    pub fn describe(&self) -> String {
        format!("{} at {}", self.backend, redact_url(&self.url))
    }
}

#[cfg(test)]
mod tests {
    use std::{collections::HashMap, sync::Arc};

    use async_trait::async_trait;
    use flextide_queue_core::{Connector, QueueProvider};

    use super::*;

    #[derive(Debug)]
    struct Fake(
        &'static str,
        &'static [&'static str],
        &'static [&'static str],
        Option<&'static str>,
    );

    #[async_trait]
    impl Connector for Fake {
        fn name(&self) -> &'static str {
            self.0
        }
        fn aliases(&self) -> &'static [&'static str] {
            if self.0 == "rabbitmq" { &["amqp"] } else { &[] }
        }
        fn schemes(&self) -> &'static [&'static str] {
            self.1
        }
        fn url_vars(&self) -> &'static [&'static str] {
            self.2
        }
        fn default_url(&self) -> Option<&'static str> {
            self.3
        }
        fn example_url(&self) -> &'static str {
            "x://example"
        }
        async fn open(
            &self,
            _: &str,
            _: &str,
            _: QueueOptions,
        ) -> Result<Arc<dyn QueueProvider>, QueueError> {
            unreachable!()
        }
    }

    fn registry() -> Registry {
        let mut r = Registry::empty();
        for c in [
            Fake(
                "sqlite",
                &["sqlite"],
                &["DATABASE_URL"],
                Some(DEFAULT_DATABASE_URL),
            ),
            Fake(
                "postgres",
                &["postgres", "postgresql"],
                &["DATABASE_URL"],
                None,
            ),
            Fake("redis", &["redis", "rediss"], &["REDIS_URL"], None),
            Fake("rabbitmq", &["amqp", "amqps"], &["AMQP_URL"], None),
            Fake("sqs", &["sqs"], &["SQS_QUEUE_URL"], Some("sqs:")),
        ] {
            r.register(Arc::new(c));
        }
        r
    }

    fn cfg(vars: &[(&str, &str)]) -> Result<Config, QueueError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::resolve(&registry(), |k| map.get(k).cloned())
    }

    #[test]
    fn compression_from_the_environment() {
        assert_eq!(cfg(&[]).unwrap().compress_above, None);
        let c = cfg(&[("QUEUE_COMPRESSION", "zstd")]).unwrap();
        assert_eq!(c.compress_above, Some(DEFAULT_COMPRESSION_THRESHOLD));
        let c = cfg(&[
            ("QUEUE_COMPRESSION", "ZSTD"),
            ("QUEUE_COMPRESSION_THRESHOLD", "0"),
        ])
        .unwrap();
        assert_eq!(c.compress_above, Some(0));
        assert_eq!(
            cfg(&[("QUEUE_COMPRESSION", "none")])
                .unwrap()
                .compress_above,
            None
        );
        let e = cfg(&[("QUEUE_COMPRESSION", "gzip")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("use zstd or none"), "{e}");
        let e = cfg(&[
            ("QUEUE_COMPRESSION", "zstd"),
            ("QUEUE_COMPRESSION_THRESHOLD", "1k"),
        ])
        .unwrap_err()
        .to_string();
        assert!(e.contains("QUEUE_COMPRESSION_THRESHOLD"), "{e}");
    }

    #[test]
    fn defaults_to_embedded_sqlite() {
        let c = cfg(&[]).unwrap();
        assert_eq!(c.backend, "sqlite");
        assert_eq!(c.url, DEFAULT_DATABASE_URL);
        assert_eq!(c.queue_name, DEFAULT_QUEUE_NAME);
    }

    #[test]
    fn chosen_by_provider_name_alias_or_url() {
        let c = cfg(&[
            ("QUEUE_PROVIDER", "database"),
            ("DATABASE_URL", "postgres://u@h/db"),
        ])
        .unwrap();
        assert_eq!(c.backend, "postgres");
        let c = cfg(&[
            ("QUEUE_PROVIDER", "postgres"),
            ("DATABASE_URL", "postgres://u@h/db"),
        ])
        .unwrap();
        assert_eq!(c.backend, "postgres");
        let c = cfg(&[("QUEUE_PROVIDER", "amqp"), ("AMQP_URL", "amqp://h")]).unwrap();
        assert_eq!(c.backend, "rabbitmq");
        let c = cfg(&[("QUEUE_PROVIDER", "sqs")]).unwrap();
        assert_eq!((c.backend.as_str(), c.url.as_str()), ("sqs", "sqs:"));
        let c = cfg(&[("QUEUE_URL", "rediss://h:6380/")]).unwrap();
        assert_eq!(c.backend, "redis");
        let e = cfg(&[("QUEUE_PROVIDER", "redis"), ("QUEUE_URL", "amqp://h")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("disagrees"), "{e}");
        let e = cfg(&[
            ("QUEUE_PROVIDER", "postgres"),
            ("DATABASE_URL", "sqlite://x.db"),
        ])
        .unwrap_err()
        .to_string();
        assert!(e.contains("cannot open DATABASE_URL"), "{e}");
    }

    #[test]
    fn errors_name_the_variable_and_hide_secrets() {
        let e = cfg(&[("QUEUE_PROVIDER", "pulsar")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("QUEUE_PROVIDER"), "{e}");
        // A backend of this repository that is not compiled in: say the feature.
        let e = cfg(&[("QUEUE_PROVIDER", "mysql")]).unwrap_err().to_string();
        assert!(e.contains("`mysql` feature"), "{e}");
        let e = cfg(&[("DATABASE_URL", "mysql://u:pw@h/db")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("`mysql` feature") && !e.contains("pw"), "{e}");
        let e = cfg(&[("QUEUE_PROVIDER", "redis")]).unwrap_err().to_string();
        assert!(e.contains("REDIS_URL"), "{e}");
        for url in ["oracle://scott:tiger@db/x", "oracle://u:S3c/retPW@db/x"] {
            let e = cfg(&[("DATABASE_URL", url)]).unwrap_err().to_string();
            assert!(
                e.contains("DATABASE_URL") && !e.contains("tiger") && !e.contains("retPW"),
                "{e}"
            );
            let e = cfg(&[("QUEUE_URL", url)]).unwrap_err().to_string();
            assert!(!e.contains("tiger") && !e.contains("retPW"), "{e}");
        }
        let e = cfg(&[("QUEUE_NAME", "bad name")]).unwrap_err().to_string();
        assert!(e.contains("QUEUE_NAME"), "{e}");
        // Empty (or blank) is unset, as in the `flextide` command.
        for blank in ["", "  "] {
            let c = cfg(&[("QUEUE_NAME", blank)]).unwrap();
            assert_eq!(c.queue_name, DEFAULT_QUEUE_NAME);
        }
        let e = cfg(&[("QUEUE_MAX_ATTEMPTS", "many")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("QUEUE_MAX_ATTEMPTS"), "{e}");
        let c = cfg(&[
            ("QUEUE_PROVIDER", "rabbitmq"),
            ("AMQP_URL", "amqp://guest:s3cret@h:5672/%2f"),
        ])
        .unwrap();
        assert!(!format!("{c:?}").contains("s3cret"));
        assert!(!c.describe().contains("s3cret"));
    }

    #[test]
    fn dedup_window() {
        assert_eq!(
            cfg(&[]).unwrap().options.dedup_window,
            flextide_queue_core::DEFAULT_DEDUP_WINDOW
        );
        for (text, want) in [
            ("90s", 90_000),
            ("15m", 900_000),
            ("1h", 3_600_000),
            ("1.5h", 5_400_000),
            ("500ms", 500),
            ("2d", 172_800_000),
            ("45", 45_000),
            (" 10 s ", 10_000),
        ] {
            let c = cfg(&[("QUEUE_DEDUP_WINDOW", text)]).unwrap();
            assert_eq!(
                c.options.dedup_window,
                Duration::from_millis(want),
                "{text}"
            );
        }
        for bad in ["0s", "soon", "1w", "-5s", "1h30m", "h"] {
            let e = cfg(&[("QUEUE_DEDUP_WINDOW", bad)]).unwrap_err().to_string();
            assert!(
                e.contains("QUEUE_DEDUP_WINDOW") && e.contains("90s"),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn lease_and_attempts() {
        let c = cfg(&[("QUEUE_LEASE_SECONDS", "2.5"), ("QUEUE_MAX_ATTEMPTS", "0")]).unwrap();
        assert_eq!(c.options.lease, Duration::from_millis(2500));
        assert_eq!(c.options.max_attempts, None);
        assert!(cfg(&[("QUEUE_LEASE_SECONDS", "-1")]).is_err());
    }
}
