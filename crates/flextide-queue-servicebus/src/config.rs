//! Where to connect and how to authenticate: a Service Bus connection
//! string, or an `amqp://` / `amqps://` URL of a plain AMQP 1.0 broker.
//! `Debug` never shows a key or a password.

use std::{fmt, time::Duration};

use flextide_queue_core::{QueueError, Result, parse_duration};

use crate::BACKEND;

/// The variable users set: the connection string the Azure portal shows
/// (`Endpoint=sb://NS.servicebus.windows.net/;SharedAccessKeyName=…;SharedAccessKey=…`).
pub const CONNECTION_STRING_ENV: &str = "SERVICEBUS_CONNECTION_STRING";

/// Or, to sign in with Microsoft Entra ID (feature `identity`), the
/// namespace alone (`NS.servicebus.windows.net`), the name Azure's own
/// samples give it.
pub const NAMESPACE_ENV: &str = "SERVICEBUS_FULLY_QUALIFIED_NAMESPACE";

/// The variable that says the queues have duplicate detection on, and its
/// window (`10m`, `1h`, `7d`): the AMQP connection cannot read a queue's
/// settings, so the user states them (see the README).
pub const DUPLICATE_DETECTION_ENV: &str = "SERVICEBUS_DUPLICATE_DETECTION_WINDOW";

/// Service Bus's shortest and longest duplicate detection windows.
pub const MIN_DUPLICATE_WINDOW: Duration = Duration::from_secs(20);
/// See [`MIN_DUPLICATE_WINDOW`].
pub const MAX_DUPLICATE_WINDOW: Duration = Duration::from_secs(7 * 24 * 3600);

/// How the connection proves who it is.
#[derive(Clone, PartialEq, Eq)]
pub enum Auth {
    /// Service Bus: SASL ANONYMOUS, then a SAS token per entity put on the
    /// `$cbs` node (claims-based security), renewed before it expires.
    SharedAccessKey {
        /// The policy name (`RootManageSharedAccessKey`).
        key_name: String,
        /// The base64 key itself; never shown.
        key: String,
    },
    /// Service Bus with a ready SAS token (`SharedAccessSignature=…`);
    /// it cannot be renewed, so it must outlive the connection.
    SharedAccessSignature(String),
    /// A plain AMQP 1.0 broker: SASL PLAIN.
    Plain {
        /// The user name.
        user: String,
        /// The password; never shown.
        password: String,
    },
    /// A plain AMQP 1.0 broker: SASL ANONYMOUS.
    Anonymous,
    /// Service Bus with Microsoft Entra ID (feature `identity`): a token
    /// from the credential per entity put on `$cbs` as `jwt`, renewed
    /// before it expires.
    #[cfg(feature = "identity")]
    Entra(crate::identity::EntraCredential),
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Auth::SharedAccessKey { key_name, .. } => f
                .debug_struct("SharedAccessKey")
                .field("key_name", key_name)
                .field("key", &"***")
                .finish(),
            Auth::SharedAccessSignature(_) => f.write_str("SharedAccessSignature(***)"),
            Auth::Plain { user, .. } => f
                .debug_struct("Plain")
                .field("user", user)
                .field("password", &"***")
                .finish(),
            Auth::Anonymous => f.write_str("Anonymous"),
            #[cfg(feature = "identity")]
            Auth::Entra(c) => write!(f, "Entra({c:?})"),
        }
    }
}

/// A parsed connection string or URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceBusConfig {
    /// The host (`NS.servicebus.windows.net`, `127.0.0.1`).
    pub host: String,
    /// The AMQP port: 5671 with TLS, 5672 without.
    pub port: u16,
    /// Whether the connection uses TLS (`amqps`; always for Service Bus
    /// in Azure, off for `UseDevelopmentEmulator=true`).
    pub tls: bool,
    /// How to authenticate.
    pub auth: Auth,
    /// `EntityPath` of a connection string scoped to one queue: the only
    /// queue it may open.
    pub entity_path: Option<String>,
    /// Whether this is Service Bus (claims-based security, `$management`,
    /// lock tokens) rather than a plain AMQP 1.0 broker.
    pub service_bus: bool,
    /// Put before a queue's name to make its address: empty for Service
    /// Bus; `/queue/` for RabbitMQ's AMQP 1.0 plugin (`?address_prefix=`).
    pub address_prefix: String,
    /// The duplicate detection window of the queues opened with this
    /// config, when they have duplicate detection on (set where the queue
    /// is created; [`DUPLICATE_DETECTION_ENV`]). `None`: off, and a push
    /// with a dedup id is refused as `Unsupported`.
    pub duplicate_detection: Option<Duration>,
}

impl ServiceBusConfig {
    /// States that the queues have duplicate detection on with `window`
    /// (`None`: off). The window must be one Service Bus takes (20 s to 7
    /// days), and it must be the queue's: a shorter one here only makes the
    /// backend claim less than the queue does.
    pub fn with_duplicate_detection(mut self, window: Option<Duration>) -> Result<Self> {
        if let Some(w) = window
            && !(MIN_DUPLICATE_WINDOW..=MAX_DUPLICATE_WINDOW).contains(&w)
        {
            return Err(config_error(format!(
                "a duplicate detection window of {w:?} is outside what Service Bus takes (20 s to 7 days)"
            )));
        }
        if window.is_some() && !self.service_bus {
            return Err(config_error(
                "duplicate detection is a Service Bus feature; this URL names a plain AMQP 1.0 broker",
            ));
        }
        self.duplicate_detection = window;
        Ok(self)
    }

    /// Reads [`DUPLICATE_DETECTION_ENV`] from `value` (the variable's
    /// value, if set): unset or empty is off.
    pub fn duplicate_detection_from(value: Option<&str>) -> Result<Option<Duration>> {
        match value.map(str::trim).filter(|v| !v.is_empty()) {
            None => Ok(None),
            Some(v) => parse_duration(v).filter(|d| !d.is_zero()).map(Some).ok_or_else(|| {
                config_error(format!(
                    "{DUPLICATE_DETECTION_ENV}={v:?} is not a duration; write the queue's duplicate detection window as 10m, 1h or 7d"
                ))
            }),
        }
    }

    /// Service Bus at `namespace` (`NS.servicebus.windows.net`, with or
    /// without `sb://`) signed in with a Microsoft Entra ID credential
    /// (feature `identity`), e.g. one of `azure_identity`'s.
    #[cfg(feature = "identity")]
    pub fn entra(namespace: &str, credential: crate::identity::EntraCredential) -> Result<Self> {
        Self::parse_connection_string_with(
            &format!("Endpoint=sb://{}/", namespace_host(namespace)),
            || Ok(Auth::Entra(credential)),
        )
    }

    /// Parses a connection string (`Endpoint=sb://…;…`) or an
    /// `amqp://user:pass@host:port` / `amqps://…` URL.
    pub fn parse(text: &str) -> Result<Self> {
        let text = text.trim();
        let lower = text.to_ascii_lowercase();
        if lower.starts_with("amqp://") || lower.starts_with("amqps://") {
            Self::parse_url(text)
        } else if lower.contains("endpoint=") {
            Self::parse_connection_string(text)
        } else if is_namespace(&lower) {
            // A namespace alone: Microsoft Entra ID from the environment.
            Self::parse_connection_string(&format!("Endpoint=sb://{}/", namespace_host(text)))
        } else {
            Err(config_error(
                "expected a Service Bus connection string (Endpoint=sb://NAMESPACE.servicebus.windows.net/;SharedAccessKeyName=…;SharedAccessKey=…) or an amqp:// URL",
            ))
        }
    }

    /// A connection string with no key signs in with Microsoft Entra ID
    /// from the environment.
    fn parse_connection_string(text: &str) -> Result<Self> {
        Self::parse_connection_string_with(text, entra_from_env)
    }

    /// `keyless` gives the authentication of a connection string that
    /// names no key and no signature.
    fn parse_connection_string_with(
        text: &str,
        keyless: impl FnOnce() -> Result<Auth>,
    ) -> Result<Self> {
        let (mut endpoint, mut key_name, mut key, mut sas, mut entity) =
            (None, None, None, None, None);
        let mut emulator = false;
        for part in text.split(';').map(str::trim).filter(|p| !p.is_empty()) {
            let Some((name, value)) = part.split_once('=') else {
                return Err(config_error(format!(
                    "connection string part {:?} is not NAME=VALUE",
                    part.split('=').next().unwrap_or_default()
                )));
            };
            // The key and signature may themselves end in '=' (base64).
            let value = value.trim().to_owned();
            match name.trim().to_ascii_lowercase().as_str() {
                "endpoint" => endpoint = Some(value),
                "sharedaccesskeyname" => key_name = Some(value),
                "sharedaccesskey" => key = Some(value),
                "sharedaccesssignature" => sas = Some(value),
                "entitypath" => entity = Some(value),
                "usedevelopmentemulator" => emulator = value.eq_ignore_ascii_case("true"),
                // TransportType=Amqp and the like: nothing to do.
                _ => {}
            }
        }
        let endpoint = endpoint.ok_or_else(|| config_error("connection string has no Endpoint"))?;
        let rest = endpoint
            .split_once("://")
            .map(|(_, rest)| rest)
            .unwrap_or(&endpoint);
        let authority = rest.split('/').next().unwrap_or_default();
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) => {
                let port = p
                    .parse()
                    .map_err(|_| config_error(format!("Endpoint port {p:?} is not a number")))?;
                (h.to_owned(), Some(port))
            }
            None => (authority.to_owned(), None),
        };
        if host.is_empty() {
            return Err(config_error("Endpoint has no host"));
        }
        let auth = match (key_name, key, sas) {
            (_, _, Some(sas)) => Auth::SharedAccessSignature(sas),
            (Some(key_name), Some(key), None) => Auth::SharedAccessKey { key_name, key },
            (None, None, None) => keyless()?,
            _ => {
                return Err(config_error(
                    "connection string needs SharedAccessKeyName and SharedAccessKey (or SharedAccessSignature)",
                ));
            }
        };
        let tls = !emulator;
        Ok(Self {
            host,
            port: port.unwrap_or(if tls { 5671 } else { 5672 }),
            tls,
            auth,
            entity_path: entity.filter(|e| !e.is_empty()),
            service_bus: true,
            address_prefix: String::new(),
            duplicate_detection: None,
        })
    }

    fn parse_url(text: &str) -> Result<Self> {
        let (scheme, rest) = text.split_once("://").unwrap_or(("amqp", text));
        let tls = scheme.eq_ignore_ascii_case("amqps");
        let authority = rest.split(['/', '?']).next().unwrap_or_default();
        let address_prefix = rest
            .split_once('?')
            .map(|(_, q)| {
                form_urlencoded::parse(q.as_bytes())
                    .find(|(k, _)| k == "address_prefix")
                    .map(|(_, v)| v.into_owned())
                    .unwrap_or_default()
            })
            .unwrap_or_default();
        let (userinfo, hostport) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, authority),
        };
        let (host, port) = match hostport.rsplit_once(':') {
            Some((h, p)) => (
                h.to_owned(),
                p.parse()
                    .map_err(|_| config_error(format!("port {p:?} is not a number")))?,
            ),
            None => (hostport.to_owned(), if tls { 5671 } else { 5672 }),
        };
        if host.is_empty() {
            return Err(config_error("the URL has no host"));
        }
        let auth = match userinfo {
            Some(u) => {
                let (user, password) = u.split_once(':').unwrap_or((u, ""));
                Auth::Plain {
                    user: decode(user),
                    password: decode(password),
                }
            }
            None => Auth::Anonymous,
        };
        Ok(Self {
            host,
            port,
            tls,
            auth,
            entity_path: None,
            service_bus: false,
            address_prefix,
            duplicate_detection: None,
        })
    }

    /// `amqp(s)://host:port`, with no credentials: for the transport and
    /// for messages.
    pub fn endpoint(&self) -> String {
        let scheme = if self.tls { "amqps" } else { "amqp" };
        format!("{scheme}://{}:{}", self.host, self.port)
    }

    /// The SAS audience of an entity: `sb://HOST/ENTITY`.
    pub fn audience(&self, entity: &str) -> String {
        format!("sb://{}/{}", self.host, entity)
    }
}

/// `NS.servicebus.windows.net` (or another cloud's `NS.servicebus.…`),
/// with or without `sb://`: a fully qualified namespace, nothing else.
pub(crate) fn is_namespace(lower: &str) -> bool {
    let host = namespace_host(lower);
    host.contains(".servicebus.")
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == ':')
}

/// The host of a namespace written with or without `sb://` and a
/// trailing slash.
fn namespace_host(text: &str) -> &str {
    text.trim()
        .trim_start_matches("sb://")
        .trim_end_matches('/')
}

/// A connection string with an endpoint and no key: Microsoft Entra ID
/// from the environment (feature `identity`).
#[cfg(feature = "identity")]
fn entra_from_env() -> Result<Auth> {
    crate::identity::credential_from_env().map(Auth::Entra)
}

#[cfg(not(feature = "identity"))]
fn entra_from_env() -> Result<Auth> {
    Err(config_error(
        "connection string needs SharedAccessKeyName and SharedAccessKey (or SharedAccessSignature); to sign in with Microsoft Entra ID (managed or workload identity, a service principal) instead, build flextide-queue-servicebus with its `identity` feature and give only the Endpoint",
    ))
}

fn decode(s: &str) -> String {
    form_urlencoded::parse(format!("x={}", s.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

fn config_error(message: impl Into<String>) -> QueueError {
    QueueError::configuration(BACKEND, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "c2VjcmV0LWtleS1ub3QtdG8tc2hvdw==";

    #[test]
    fn parses_the_portal_connection_string() {
        let cs = format!(
            "Endpoint=sb://ns1.servicebus.windows.net/;SharedAccessKeyName=RootManageSharedAccessKey;SharedAccessKey={KEY}"
        );
        let c = ServiceBusConfig::parse(&cs).unwrap();
        assert_eq!(c.host, "ns1.servicebus.windows.net");
        assert_eq!(c.port, 5671);
        assert!(c.tls && c.service_bus);
        assert_eq!(c.entity_path, None);
        assert_eq!(
            c.auth,
            Auth::SharedAccessKey {
                key_name: "RootManageSharedAccessKey".into(),
                key: KEY.into()
            }
        );
        assert_eq!(c.endpoint(), "amqps://ns1.servicebus.windows.net:5671");
        assert_eq!(c.audience("jobs"), "sb://ns1.servicebus.windows.net/jobs");
    }

    #[test]
    fn parses_entity_path_emulator_and_signature() {
        let c = ServiceBusConfig::parse(
            "Endpoint=sb://localhost;SharedAccessKeyName=k;SharedAccessKey=SAS_KEY_VALUE;UseDevelopmentEmulator=true;EntityPath=jobs",
        )
        .unwrap();
        assert_eq!((c.host.as_str(), c.port, c.tls), ("localhost", 5672, false));
        assert_eq!(c.entity_path.as_deref(), Some("jobs"));
        let c = ServiceBusConfig::parse(
            "Endpoint=sb://ns.servicebus.windows.net/;SharedAccessSignature=SharedAccessSignature sr=x&sig=y%3D&se=1&skn=k",
        )
        .unwrap();
        assert!(matches!(c.auth, Auth::SharedAccessSignature(ref s) if s.ends_with("skn=k")));
    }

    #[test]
    fn parses_plain_amqp_urls() {
        let c = ServiceBusConfig::parse("amqp://guest:p%40ss@127.0.0.1:25672").unwrap();
        assert_eq!(
            (c.host.as_str(), c.port, c.tls),
            ("127.0.0.1", 25672, false)
        );
        assert!(!c.service_bus);
        assert_eq!(
            c.auth,
            Auth::Plain {
                user: "guest".into(),
                password: "p@ss".into()
            }
        );
        let c = ServiceBusConfig::parse("amqp://h:1/?address_prefix=%2Fqueue%2F").unwrap();
        assert_eq!(c.address_prefix, "/queue/");
        let c = ServiceBusConfig::parse("amqps://broker.example").unwrap();
        assert_eq!((c.port, c.tls, c.auth), (5671, true, Auth::Anonymous));
    }

    #[test]
    fn errors_say_what_is_missing_without_the_key() {
        for bad in [
            format!("Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKey={KEY}"),
            format!("SharedAccessKeyName=k;SharedAccessKey={KEY}"),
            "postgres://x".to_owned(),
        ] {
            let err = ServiceBusConfig::parse(&bad).unwrap_err().to_string();
            assert!(!err.contains(KEY), "{err}");
            assert!(
                err.contains("Endpoint") || err.contains("SharedAccessKeyName"),
                "{err}"
            );
        }
    }

    #[test]
    fn debug_never_shows_secrets() {
        let c = ServiceBusConfig::parse(&format!(
            "Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=k;SharedAccessKey={KEY}"
        ))
        .unwrap();
        let shown = format!("{c:?} {c:#?}");
        assert!(!shown.contains(KEY) && shown.contains("***"), "{shown}");
        let c = ServiceBusConfig::parse("amqp://u:hunter2@h:1").unwrap();
        assert!(!format!("{c:?}").contains("hunter2"));
        let c = ServiceBusConfig::parse("Endpoint=sb://h/;SharedAccessSignature=SIGVALUE").unwrap();
        assert!(!format!("{c:?}").contains("SIGVALUE"));
    }

    #[test]
    fn duplicate_detection_is_stated_and_checked() {
        let sb = ServiceBusConfig::parse(&format!(
            "Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=k;SharedAccessKey={KEY}"
        ))
        .unwrap();
        assert_eq!(sb.duplicate_detection, None);
        let on = ServiceBusConfig::duplicate_detection_from(Some("10m")).unwrap();
        assert_eq!(on, Some(Duration::from_secs(600)));
        let c = sb.clone().with_duplicate_detection(on).unwrap();
        assert_eq!(c.duplicate_detection, Some(Duration::from_secs(600)));
        assert_eq!(
            ServiceBusConfig::duplicate_detection_from(None).unwrap(),
            None
        );
        assert_eq!(
            ServiceBusConfig::duplicate_detection_from(Some(" ")).unwrap(),
            None
        );
        let e = ServiceBusConfig::duplicate_detection_from(Some("ten minutes"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(DUPLICATE_DETECTION_ENV) && e.contains("10m"),
            "{e}"
        );
        for bad in [Duration::from_secs(5), Duration::from_secs(8 * 24 * 3600)] {
            let e = sb.clone().with_duplicate_detection(Some(bad)).unwrap_err();
            assert!(e.to_string().contains("20 s to 7 days"), "{e}");
        }
        let plain = ServiceBusConfig::parse("amqp://h:1").unwrap();
        assert!(plain.with_duplicate_detection(on).is_err());
    }

    #[test]
    fn a_namespace_alone_signs_in_with_entra_id() {
        for text in [
            "ns1.servicebus.windows.net",
            "sb://ns1.servicebus.windows.net/",
            "Endpoint=sb://ns1.servicebus.windows.net/",
        ] {
            let parsed = ServiceBusConfig::parse(text);
            #[cfg(feature = "identity")]
            {
                let c = parsed.unwrap();
                assert_eq!(c.host, "ns1.servicebus.windows.net");
                assert!(c.tls && c.service_bus && c.port == 5671);
                assert!(matches!(c.auth, Auth::Entra(_)), "{c:?}");
            }
            #[cfg(not(feature = "identity"))]
            {
                let e = parsed.unwrap_err();
                assert!(!e.is_retryable());
                assert!(e.to_string().contains("`identity` feature"), "{e}");
            }
        }
    }
}
