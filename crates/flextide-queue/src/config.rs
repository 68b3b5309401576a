//! Reading the backend choice and its settings from the environment.

use std::{fmt, time::Duration};

use flextide_queue_core::{QueueError, QueueOptions, validate_queue_name};

const BACKEND: &str = "config";

/// Which backend `QUEUE_PROVIDER` picks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProviderKind {
    /// `memory`: in-process, nothing survives the process.
    Memory,
    /// `database` (the default): SQLite, PostgreSQL or MySQL by `DATABASE_URL`.
    Database,
    /// `sqs`: AWS SQS.
    Sqs,
    /// `rabbitmq`: RabbitMQ.
    RabbitMq,
    /// `redis`: Redis Streams.
    Redis,
}

impl ProviderKind {
    fn parse(value: &str) -> Result<Self, QueueError> {
        match value.trim().to_ascii_lowercase().as_str() {
            "memory" => Ok(ProviderKind::Memory),
            "database" | "db" | "sql" => Ok(ProviderKind::Database),
            "sqs" => Ok(ProviderKind::Sqs),
            "rabbitmq" | "amqp" => Ok(ProviderKind::RabbitMq),
            "redis" => Ok(ProviderKind::Redis),
            other => Err(QueueError::configuration(
                BACKEND,
                format!(
                    "QUEUE_PROVIDER={other:?} is not one of memory, database, sqs, rabbitmq, redis"
                ),
            )),
        }
    }
}

/// The default `DATABASE_URL`: a SQLite file in the working directory,
/// created on first use.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://flextide.db?mode=rwc";
/// The default `QUEUE_NAME`.
pub const DEFAULT_QUEUE_NAME: &str = "flextide-tasks";

/// Everything needed to open a queue, read from the environment by
/// [`Config::from_env`]. `Debug` hides passwords in URLs.
#[derive(Clone, PartialEq, Eq)]
pub struct Config {
    /// The backend.
    pub provider: ProviderKind,
    /// The queue's name (`QUEUE_NAME`).
    pub queue_name: String,
    /// Lease and max attempts (`QUEUE_LEASE_SECONDS`, `QUEUE_MAX_ATTEMPTS`).
    pub options: QueueOptions,
    /// `DATABASE_URL` (database backend).
    pub database_url: String,
    /// `REDIS_URL` (redis backend).
    pub redis_url: Option<String>,
    /// `AMQP_URL` (rabbitmq backend).
    pub amqp_url: Option<String>,
    /// `SQS_QUEUE_URL` (sqs backend; otherwise the queue is found by name).
    pub sqs_queue_url: Option<String>,
    /// `AWS_ENDPOINT_URL` (sqs backend: a local or compatible server).
    pub aws_endpoint_url: Option<String>,
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("provider", &self.provider)
            .field("queue_name", &self.queue_name)
            .field("options", &self.options)
            .field("database_url", &redact_url(&self.database_url))
            .field("redis_url", &self.redis_url.as_deref().map(redact_url))
            .field("amqp_url", &self.amqp_url.as_deref().map(redact_url))
            .field("sqs_queue_url", &self.sqs_queue_url)
            .field(
                "aws_endpoint_url",
                &self.aws_endpoint_url.as_deref().map(redact_url),
            )
            .finish()
    }
}

impl Config {
    /// Reads the process environment. Fails with a `Configuration` error that
    /// names the missing or malformed variable, never showing a secret.
    pub fn from_env() -> Result<Self, QueueError> {
        Self::from_lookup(|key| std::env::var(key).ok())
    }

    /// Like [`Config::from_env`], reading variables through `lookup`.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, QueueError> {
        let var = |key: &str| {
            lookup(key)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let provider = match var("QUEUE_PROVIDER") {
            Some(v) => ProviderKind::parse(&v)?,
            None => ProviderKind::Database,
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
        let config = Config {
            provider,
            queue_name,
            options,
            database_url: var("DATABASE_URL").unwrap_or_else(|| DEFAULT_DATABASE_URL.to_owned()),
            redis_url: var("REDIS_URL"),
            amqp_url: var("AMQP_URL"),
            sqs_queue_url: var("SQS_QUEUE_URL"),
            aws_endpoint_url: var("AWS_ENDPOINT_URL"),
        };
        config.check()?;
        Ok(config)
    }

    /// Checks that the chosen backend has what it needs.
    fn check(&self) -> Result<(), QueueError> {
        let need = |value: &Option<String>, name: &str, example: &str| match value {
            Some(_) => Ok(()),
            None => Err(QueueError::configuration(
                BACKEND,
                format!(
                    "QUEUE_PROVIDER={} needs {name} (for example {name}={example})",
                    self.provider_name()
                ),
            )),
        };
        match self.provider {
            ProviderKind::Memory | ProviderKind::Sqs => Ok(()),
            ProviderKind::Database => self.database_engine().map(|_| ()),
            ProviderKind::Redis => need(&self.redis_url, "REDIS_URL", "redis://127.0.0.1:6379/"),
            ProviderKind::RabbitMq => need(
                &self.amqp_url,
                "AMQP_URL",
                "amqp://guest:guest@127.0.0.1:5672/%2f",
            ),
        }
    }

    /// The `QUEUE_PROVIDER` value of this configuration.
    pub fn provider_name(&self) -> &'static str {
        match self.provider {
            ProviderKind::Memory => "memory",
            ProviderKind::Database => "database",
            ProviderKind::Sqs => "sqs",
            ProviderKind::RabbitMq => "rabbitmq",
            ProviderKind::Redis => "redis",
        }
    }

    /// The SQL engine `DATABASE_URL` names: `sqlite`, `postgres` or `mysql`.
    pub fn database_engine(&self) -> Result<&'static str, QueueError> {
        let scheme = self
            .database_url
            .split(':')
            .next()
            .unwrap_or_default()
            .to_ascii_lowercase();
        match scheme.as_str() {
            "sqlite" => Ok("sqlite"),
            "postgres" | "postgresql" => Ok("postgres"),
            "mysql" | "mariadb" => Ok("mysql"),
            _ => Err(QueueError::configuration(
                BACKEND,
                format!(
                    "DATABASE_URL={} must start with sqlite:, postgres://, mysql:// or mariadb://",
                    redact_url(&self.database_url)
                ),
            )),
        }
    }
}

/// A URL with its password (and any query parameter that looks like a
/// secret) replaced by `***`, for logs and errors.
pub fn redact_url(url: &str) -> String {
    let mut out = url.to_owned();
    if let Some(scheme_end) = out.find("://") {
        let rest_start = scheme_end + 3;
        let authority_end = out[rest_start..]
            .find(['/', '?', '#'])
            .map_or(out.len(), |i| rest_start + i);
        if let Some(at) = out[rest_start..authority_end].rfind('@') {
            let userinfo = &out[rest_start..rest_start + at];
            if let Some(colon) = userinfo.find(':') {
                out.replace_range(rest_start + colon + 1..rest_start + at, "***");
            }
        }
    }
    if let Some(q) = out.find('?') {
        let (base, query) = out.split_at(q + 1);
        let redacted: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((k, _))
                    if ["password", "pass", "secret", "token", "key"]
                        .iter()
                        .any(|s| k.to_ascii_lowercase().contains(s)) =>
                {
                    format!("{k}=***")
                }
                _ => pair.to_owned(),
            })
            .collect();
        out = format!("{base}{}", redacted.join("&"));
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn cfg(vars: &[(&str, &str)]) -> Result<Config, QueueError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn defaults_to_embedded_sqlite() {
        let c = cfg(&[]).unwrap();
        assert_eq!(c.provider, ProviderKind::Database);
        assert_eq!(c.database_engine().unwrap(), "sqlite");
        assert_eq!(c.queue_name, DEFAULT_QUEUE_NAME);
    }

    #[test]
    fn errors_name_the_variable_and_hide_secrets() {
        let e = cfg(&[("QUEUE_PROVIDER", "kafka")]).unwrap_err().to_string();
        assert!(e.contains("QUEUE_PROVIDER"), "{e}");
        let e = cfg(&[("QUEUE_PROVIDER", "redis")]).unwrap_err().to_string();
        assert!(e.contains("REDIS_URL"), "{e}");
        let e = cfg(&[("DATABASE_URL", "oracle://scott:tiger@db/x")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("DATABASE_URL") && !e.contains("tiger"), "{e}");
        let e = cfg(&[("QUEUE_NAME", "bad name")]).unwrap_err().to_string();
        assert!(e.contains("QUEUE_NAME"), "{e}");
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
    }

    #[test]
    fn redaction() {
        assert_eq!(
            redact_url("postgres://u:pw@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(redact_url("redis://:pw@h/"), "redis://:***@h/");
        assert_eq!(
            redact_url("postgres://u@h/db?password=pw&sslmode=require"),
            "postgres://u@h/db?password=***&sslmode=require"
        );
        assert_eq!(
            redact_url("sqlite://flextide.db?mode=rwc"),
            "sqlite://flextide.db?mode=rwc"
        );
    }

    #[test]
    fn lease_and_attempts() {
        let c = cfg(&[("QUEUE_LEASE_SECONDS", "2.5"), ("QUEUE_MAX_ATTEMPTS", "0")]).unwrap();
        assert_eq!(c.options.lease, Duration::from_millis(2500));
        assert_eq!(c.options.max_attempts, None);
        assert!(cfg(&[("QUEUE_LEASE_SECONDS", "-1")]).is_err());
    }
}
