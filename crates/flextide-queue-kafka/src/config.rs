//! Settings of the Kafka backend, and the librdkafka properties they become.

use std::{collections::BTreeMap, fmt, time::Duration};

use flextide_queue_core::{QueueError, Result};

use crate::BACKEND;

/// Tuning of a [`Kafka`](crate::Kafka) client. `Default` suits most uses.
///
/// `properties` are librdkafka settings passed through to every client the
/// backend makes (producer, consumer, admin): `security.protocol`,
/// `sasl.mechanism`, `sasl.username`, `sasl.password`, `ssl.ca.location`, ….
/// Values of keys that look secret are never shown by `Debug`.
#[derive(Clone)]
pub struct KafkaConfig {
    /// Partitions of a queue's topic when the backend creates it (default
    /// 4). More partitions let more consumer processes share a queue; an
    /// existing topic keeps its partitions.
    pub partitions: i32,
    /// Replication factor of the topics the backend creates (default 1).
    pub replication: i32,
    /// The consumer group's session timeout (default 10 s): how long the
    /// group waits for a silent member before giving its partitions to
    /// others. A member joining or leaving takes about half of it.
    pub session_timeout: Duration,
    /// Deadline of one broker round trip (produce acknowledgement, topic
    /// management, metadata). Default 10 s.
    pub operation_timeout: Duration,
    /// Fetched records a handle holds before it pauses fetching (default
    /// 1000): the bound on memory and on what a crash hands back.
    pub max_buffered: usize,
    /// librdkafka properties passed through (SASL, TLS, client id, …).
    pub properties: BTreeMap<String, String>,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        KafkaConfig {
            partitions: 4,
            replication: 1,
            session_timeout: Duration::from_secs(10),
            operation_timeout: Duration::from_secs(10),
            max_buffered: 1000,
            properties: BTreeMap::new(),
        }
    }
}

impl fmt::Debug for KafkaConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown = redacted(&self.properties);
        f.debug_struct("KafkaConfig")
            .field("partitions", &self.partitions)
            .field("replication", &self.replication)
            .field("session_timeout", &self.session_timeout)
            .field("operation_timeout", &self.operation_timeout)
            .field("max_buffered", &self.max_buffered)
            .field("properties", &shown)
            .finish()
    }
}

/// Properties as `Debug` shows them: secret values as `***`.
fn redacted(properties: &BTreeMap<String, String>) -> BTreeMap<&str, &str> {
    properties
        .iter()
        .map(|(k, v)| (k.as_str(), if is_secret(k) { "***" } else { v.as_str() }))
        .collect()
}

/// Whether a librdkafka property holds a secret (`sasl.password`,
/// `ssl.key.password`, `sasl.oauthbearer.client.secret`, …).
pub(crate) fn is_secret(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    [
        "password",
        "secret",
        "token",
        "jaas",
        "ssl.key.pem",
        "credential",
    ]
    .iter()
    .any(|s| k.contains(s))
}

impl KafkaConfig {
    /// Sets [`KafkaConfig::partitions`].
    pub fn partitions(mut self, partitions: i32) -> Self {
        self.partitions = partitions;
        self
    }

    /// Sets [`KafkaConfig::session_timeout`].
    pub fn session_timeout(mut self, timeout: Duration) -> Self {
        self.session_timeout = timeout;
        self
    }

    /// Sets [`KafkaConfig::operation_timeout`].
    pub fn operation_timeout(mut self, timeout: Duration) -> Self {
        self.operation_timeout = timeout;
        self
    }

    /// Sets [`KafkaConfig::max_buffered`].
    pub fn max_buffered(mut self, max: usize) -> Self {
        self.max_buffered = max;
        self
    }

    /// Adds a librdkafka property passed through to every client.
    pub fn property(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.properties.insert(key.into(), value.into());
        self
    }

    /// The default configuration plus the librdkafka properties the
    /// environment sets (see [`ENV_PREFIXES`]): `KAFKA_SECURITY_PROTOCOL=SASL_SSL`
    /// becomes `security.protocol=SASL_SSL`, `KAFKA_SASL_PASSWORD` becomes
    /// `sasl.password`, `KAFKA_CONFIG_CLIENT_ID` becomes `client.id`. These
    /// override what the URL sets. [`Kafka::from_env`](crate::Kafka::from_env)
    /// and the facade (`QUEUE_PROVIDER=kafka`) use it.
    pub fn from_env() -> Result<Self> {
        let c = KafkaConfig {
            properties: env_properties(std::env::vars())?,
            ..KafkaConfig::default()
        };
        c.check()?;
        Ok(c)
    }

    pub(crate) fn check(&self) -> Result<()> {
        let bad = |m: &str| Err(QueueError::configuration(BACKEND, m.to_owned()));
        if self.partitions < 1 {
            return bad("partitions must be at least 1");
        }
        if self.replication < 1 {
            return bad("replication must be at least 1");
        }
        if self.max_buffered == 0 {
            return bad("max_buffered must be at least 1");
        }
        if self.operation_timeout.is_zero() {
            return bad("operation_timeout must be above zero");
        }
        if self.session_timeout < Duration::from_millis(1000) {
            return bad("session_timeout must be at least 1 s");
        }
        for key in ["bootstrap.servers", "group.id", "enable.auto.commit"] {
            if self.properties.contains_key(key) {
                return Err(QueueError::configuration(
                    BACKEND,
                    format!(
                        "the property {key} is set by the backend; give brokers in the URL (kafka://host:9092,host2:9092)"
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// The environment variables passed through to librdkafka: a variable
/// starting with one of these prefixes names a property, lower-cased with
/// `_` as `.`. `KAFKA_SECURITY_*`, `KAFKA_SASL_*` and `KAFKA_SSL_*` keep
/// their prefix (`KAFKA_SSL_CA_LOCATION` → `ssl.ca.location`);
/// `KAFKA_CONFIG_` is dropped, for any other property
/// (`KAFKA_CONFIG_ENABLE_SSL_CERTIFICATE_VERIFICATION=false`). Empty values
/// count as unset.
pub const ENV_PREFIXES: &[&str] = &[
    "KAFKA_SECURITY_",
    "KAFKA_SASL_",
    "KAFKA_SSL_",
    "KAFKA_CONFIG_",
];

/// The librdkafka properties among `vars` (see [`ENV_PREFIXES`]).
fn env_properties(
    vars: impl IntoIterator<Item = (String, String)>,
) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for (name, value) in vars {
        let Some(prefix) = ENV_PREFIXES.iter().find(|p| name.starts_with(**p)) else {
            continue;
        };
        if value.trim().is_empty() {
            continue;
        }
        let key = match name.strip_prefix("KAFKA_CONFIG_") {
            Some(rest) => rest,
            None => &name["KAFKA_".len()..],
        };
        if key.is_empty() || !key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err(QueueError::configuration(
                BACKEND,
                format!(
                    "{name} names no librdkafka property; write e.g. {prefix}CLIENT_ID for client.id"
                ),
            ));
        }
        out.insert(key.to_ascii_lowercase().replace('_', "."), value);
    }
    Ok(out)
}

/// Brokers and client properties read from a `kafka://` URL:
/// `kafka://[user:password@]host:9092[,host2:9092][?librdkafka.property=value&…]`.
/// A user and password become `sasl.username` / `sasl.password` (with
/// `security.protocol=SASL_PLAINTEXT` and `sasl.mechanism=PLAIN` unless the
/// query says otherwise); `kafkas://` asks for TLS (`SSL`, or `SASL_SSL`
/// with a user).
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Endpoint {
    pub(crate) brokers: String,
    pub(crate) properties: BTreeMap<String, String>,
}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown = redacted(&self.properties);
        f.debug_struct("Endpoint")
            .field("brokers", &self.brokers)
            .field("properties", &shown)
            .finish()
    }
}

impl Endpoint {
    /// Parses a `kafka://` / `kafkas://` URL, or a bare broker list
    /// (`host:9092,host2:9092`, as in `KAFKA_BROKERS`).
    pub(crate) fn parse(url: &str) -> Result<Self> {
        let url = url.trim();
        let example = "kafka://127.0.0.1:9092 (or KAFKA_BROKERS=host:9092,host2:9092)";
        if url.is_empty() {
            return Err(QueueError::configuration(
                BACKEND,
                format!("no Kafka brokers given; use {example}"),
            ));
        }
        let (tls, rest) = if let Some(r) = strip_scheme(url, "kafkas") {
            (true, r)
        } else if let Some(r) = strip_scheme(url, "kafka") {
            (false, r)
        } else if url.contains("://") {
            return Err(QueueError::configuration(
                BACKEND,
                format!("not a Kafka URL; use {example}"),
            ));
        } else {
            (false, url)
        };
        let (authority, query) = match rest.split_once('?') {
            Some((a, q)) => (a, Some(q)),
            None => (rest, None),
        };
        let authority = authority.trim_end_matches('/');
        let mut properties = BTreeMap::new();
        let (user, hosts) = match authority.rfind('@') {
            Some(at) => (Some(&authority[..at]), &authority[at + 1..]),
            None => (None, authority),
        };
        if hosts.is_empty() || hosts.split(',').any(|h| h.trim().is_empty()) {
            return Err(QueueError::configuration(
                BACKEND,
                format!("the broker list is empty or has an empty entry; use {example}"),
            ));
        }
        if let Some(user) = user {
            let (name, password) = user.split_once(':').unwrap_or((user, ""));
            properties.insert("sasl.username".to_owned(), percent_decode(name));
            properties.insert("sasl.password".to_owned(), percent_decode(password));
            properties.insert(
                "security.protocol".to_owned(),
                if tls { "SASL_SSL" } else { "SASL_PLAINTEXT" }.to_owned(),
            );
            properties.insert("sasl.mechanism".to_owned(), "PLAIN".to_owned());
        } else if tls {
            properties.insert("security.protocol".to_owned(), "SSL".to_owned());
        }
        for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').ok_or_else(|| {
                QueueError::configuration(
                    BACKEND,
                    "a URL query parameter has no value; write property=value".to_owned(),
                )
            })?;
            properties.insert(percent_decode(k), percent_decode(v));
        }
        Ok(Endpoint {
            brokers: hosts.to_owned(),
            properties,
        })
    }
}

fn strip_scheme<'u>(url: &'u str, scheme: &str) -> Option<&'u str> {
    let (s, rest) = url.split_once("://")?;
    s.eq_ignore_ascii_case(scheme).then_some(rest)
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Ok(b) = u8::from_str_radix(&s[i + 1..i + 3], 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_broker_lists() {
        let e = Endpoint::parse("kafka://h1:9092,h2:9093").unwrap();
        assert_eq!(e.brokers, "h1:9092,h2:9093");
        assert!(e.properties.is_empty());
        let e = Endpoint::parse("h1:9092").unwrap();
        assert_eq!(e.brokers, "h1:9092");
        let e = Endpoint::parse("kafkas://u:p%40ss@h:9093/?sasl.mechanism=SCRAM-SHA-512").unwrap();
        assert_eq!(e.properties["sasl.password"], "p@ss");
        assert_eq!(e.properties["security.protocol"], "SASL_SSL");
        assert_eq!(e.properties["sasl.mechanism"], "SCRAM-SHA-512");
        assert!(!format!("{e:?}").contains("p@ss"));
        for bad in [
            "",
            "redis://h:1",
            "kafka://",
            "kafka://h:1,,h2:2",
            "kafka://h:1?x",
        ] {
            assert!(Endpoint::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn secrets_are_redacted_and_reserved_keys_refused() {
        let c = KafkaConfig::default().property("sasl.password", "hunter2");
        assert!(!format!("{c:?}").contains("hunter2"));
        assert!(c.check().is_ok());
        assert!(
            KafkaConfig::default()
                .property("group.id", "x")
                .check()
                .is_err()
        );
        assert!(KafkaConfig::default().partitions(0).check().is_err());
    }

    #[test]
    fn environment_properties() {
        let vars = |v: &[(&str, &str)]| {
            env_properties(v.iter().map(|(k, v)| (k.to_string(), v.to_string())))
        };
        let got = vars(&[
            ("KAFKA_BROKERS", "h:9092"),
            ("KAFKA_SECURITY_PROTOCOL", "SASL_SSL"),
            ("KAFKA_SASL_MECHANISM", "SCRAM-SHA-512"),
            ("KAFKA_SASL_PASSWORD", "hunter2"),
            ("KAFKA_SSL_CA_LOCATION", "/etc/ca.pem"),
            ("KAFKA_CONFIG_ENABLE_SSL_CERTIFICATE_VERIFICATION", "false"),
            ("KAFKA_SASL_USERNAME", " "),
            ("PATH", "/bin"),
        ])
        .unwrap();
        let want: BTreeMap<String, String> = [
            ("security.protocol", "SASL_SSL"),
            ("sasl.mechanism", "SCRAM-SHA-512"),
            ("sasl.password", "hunter2"),
            ("ssl.ca.location", "/etc/ca.pem"),
            ("enable.ssl.certificate.verification", "false"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(got, want);
        let config = KafkaConfig {
            properties: got,
            ..KafkaConfig::default()
        };
        assert!(!format!("{config:?}").contains("hunter2"));
        assert!(vars(&[("KAFKA_CONFIG_", "x")]).is_err());
        assert!(vars(&[("KAFKA_CONFIG_A.B", "x")]).is_err());
        let reserved = KafkaConfig {
            properties: vars(&[("KAFKA_CONFIG_GROUP_ID", "x")]).unwrap(),
            ..KafkaConfig::default()
        };
        assert!(reserved.check().is_err());
    }
}
