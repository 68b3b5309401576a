//! The AMQP 1.0 transport: a connection with one session, send links,
//! peek-lock receive links with manual credit, settlement on the link
//! that received a delivery, and `$management` request links.
//!
//! Public so its tests can drive it against any AMQP 1.0 broker (they run
//! against RabbitMQ's `rabbitmq_amqp1_0` plugin); the queue is built on it.
//! With a Service Bus connection string it authenticates each entity by
//! putting a SAS token on `$cbs`; with an `amqp://user:pass@…` URL it uses
//! SASL PLAIN (ANONYMOUS without a user).

use std::{
    collections::HashMap,
    fmt,
    sync::Arc,
    time::{Duration, SystemTime},
};

use fe2o3_amqp::{
    Receiver as AmqpReceiver, Sender as AmqpSender, Session,
    connection::ConnectionHandle,
    link::{DetachError, RecvError, SendError, delivery::DeliveryInfo, receiver::CreditMode},
    sasl_profile::SaslProfile,
    session::SessionHandle,
    types::{
        definitions::{self, ErrorCondition, ReceiverSettleMode},
        messaging::{Modified, Outcome},
        primitives::{OrderedMap, Symbol, Value},
    },
};
use fe2o3_amqp_cbs::{client::CbsClient, token::CbsToken};
use fe2o3_amqp_management::{client::MgmtClient, error::Error as MgmtError};
use fe2o3_amqp_types::messaging::{Body, Data, Message as AmqpMessage};
use flextide_queue_core::{Message, QueueError, Result};
use uuid::Uuid;

use crate::{
    BACKEND,
    codec::{self, DLQ_DESCRIPTION, DLQ_REASON, Received},
    config::{Auth, ServiceBusConfig},
    error::{condition_kind, status_kind, to_queue_error},
    mgmt::RenewLock,
    sas::{TOKEN_LIFETIME, renew_after, sas_token},
};

/// How long opening a connection may take before it counts as refused.
const OPEN_TIMEOUT: Duration = Duration::from_secs(20);
/// After the first delivery of a batch, how long to wait for more.
const BATCH_GRACE: Duration = Duration::from_millis(30);
/// How long one link operation (a send, a settlement, a flow) may take
/// before the connection counts as dead.
const OP_TIMEOUT: Duration = Duration::from_secs(30);
/// How long closing a link or connection may take (a dead peer never
/// answers).
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);
/// The CBS token type of a SAS token.
const SAS_TOKEN_TYPE: &str = "servicebus.windows.net:sastoken";
/// The condition Service Bus reads as "move to the dead-letter sub-queue".
const DEAD_LETTER: &str = "com.microsoft:dead-letter";

/// An open AMQP connection with one session.
pub struct Connection {
    config: Arc<ServiceBusConfig>,
    connection: ConnectionHandle<()>,
    session: SessionHandle<()>,
    cbs: Option<CbsClient>,
    /// When each audience's token must be put again.
    authorized: HashMap<String, SystemTime>,
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("endpoint", &self.config.endpoint())
            .finish_non_exhaustive()
    }
}

impl Connection {
    /// Connects (TCP, TLS for `amqps`, SASL), begins a session.
    pub async fn open(config: Arc<ServiceBusConfig>, container_id: &str) -> Result<Self> {
        let endpoint = config.endpoint();
        let connect = async {
            let tcp = tokio::net::TcpStream::connect((config.host.as_str(), config.port))
                .await
                .map_err(|e| {
                    QueueError::connection(
                        BACKEND,
                        format!("{e} at {}:{}", config.host, config.port),
                    )
                })?;
            let sasl = match &config.auth {
                Auth::Plain { user, password } => SaslProfile::Plain {
                    username: user.clone(),
                    password: password.clone(),
                },
                _ => SaslProfile::Anonymous,
            };
            let builder = fe2o3_amqp::Connection::builder()
                .container_id(container_id.to_owned())
                .hostname(Some(config.host.as_str()))
                .sasl_profile(sasl)
                .scheme("amqp")
                .max_frame_size(65_536)
                .idle_time_out(60_000u32);
            let opened = if config.tls {
                let tls = tls_connector()
                    .connect(server_name(&config.host)?, tcp)
                    .await
                    .map_err(|e| {
                        QueueError::connection(BACKEND, format!("TLS with {endpoint}: {e}"))
                    })?;
                builder.open_with_stream(tls).await
            } else {
                builder.open_with_stream(tcp).await
            };
            opened.map_err(|e| open_error(&endpoint, e))
        };
        let mut connection =
            tokio::time::timeout(OPEN_TIMEOUT, connect)
                .await
                .map_err(|_| {
                    QueueError::connection(
                        BACKEND,
                        format!("connecting to {endpoint} took over {OPEN_TIMEOUT:?}"),
                    )
                })??;
        let session = Session::begin(&mut connection)
            .await
            .map_err(|e| QueueError::connection(BACKEND, format!("beginning a session: {e}")))?;
        let mut conn = Self {
            config,
            connection,
            session,
            cbs: None,
            authorized: HashMap::new(),
        };
        if conn.config.service_bus {
            let cbs = CbsClient::attach(&mut conn.session)
                .await
                .map_err(|e| QueueError::connection(BACKEND, format!("attaching to $cbs: {e}")))?;
            conn.cbs = Some(cbs);
        }
        Ok(conn)
    }

    /// Puts a SAS token for `entity` on `$cbs` unless a fresh one is
    /// there (Service Bus only; a no-op for plain brokers).
    pub async fn authorize(&mut self, entity: &str) -> Result<()> {
        let Some(cbs) = self.cbs.as_mut() else {
            return Ok(());
        };
        let audience = self.config.audience(entity);
        let now = SystemTime::now();
        if self.authorized.get(&audience).is_some_and(|at| now < *at) {
            return Ok(());
        }
        let (value, expires_at) = match &self.config.auth {
            Auth::SharedAccessKey { key_name, key } => {
                let t = sas_token(&audience, key_name, key, now + TOKEN_LIFETIME);
                (t.value, Some(t.expires_at))
            }
            Auth::SharedAccessSignature(s) => (s.clone(), None),
            Auth::Plain { .. } | Auth::Anonymous => return Ok(()),
        };
        let token = CbsToken::new(value, SAS_TOKEN_TYPE, expires_at.map(codec::timestamp));
        timed("authorize", async {
            cbs.put_token(audience.clone(), token)
                .await
                .map_err(|e| mgmt_error("authorize", entity, e))
        })
        .await?;
        let renew_at = expires_at.map_or(now + Duration::from_secs(u64::MAX / 4), |exp| {
            now + renew_after(now, exp)
        });
        self.authorized.insert(audience, renew_at);
        Ok(())
    }

    /// A send link to `address` (an entity, `queue/$DeadLetterQueue`).
    pub async fn sender(&mut self, address: &str, entity: &str) -> Result<Sender> {
        self.authorize(entity).await?;
        let name = format!("ftq-send-{}", Uuid::new_v4().simple());
        let link = AmqpSender::attach(&mut self.session, name, address.to_owned())
            .await
            .map_err(|e| {
                attach_error(
                    "attach sender",
                    entity,
                    &e.to_string(),
                    remote_of_sender(&e),
                )
            })?;
        Ok(Sender {
            link,
            entity: entity.to_owned(),
        })
    }

    /// A peek-lock receive link on `address`, with credit given per
    /// receive call (nothing is locked while nobody asks).
    pub async fn receiver(&mut self, address: &str, entity: &str) -> Result<Receiver> {
        self.authorize(entity).await?;
        let name = format!("ftq-recv-{}", Uuid::new_v4().simple());
        let link = AmqpReceiver::builder()
            .name(name.clone())
            .source(address.to_owned())
            .receiver_settle_mode(ReceiverSettleMode::First)
            .credit_mode(CreditMode::Manual)
            .auto_accept(false)
            .attach(&mut self.session)
            .await
            .map_err(|e| {
                attach_error(
                    "attach receiver",
                    entity,
                    &e.to_string(),
                    remote_of_receiver(&e),
                )
            })?;
        Ok(Receiver {
            link,
            name,
            entity: entity.to_owned(),
            credit: 0,
        })
    }

    /// A request link to `entity/$management` (Service Bus).
    pub async fn management(&mut self, entity: &str) -> Result<Management> {
        self.authorize(entity).await?;
        let client = MgmtClient::builder()
            .management_node_address(format!("{entity}/$management"))
            .client_node_addr(format!("ftq-mgmt-{}", Uuid::new_v4().simple()))
            .attach(&mut self.session)
            .await
            .map_err(|e| {
                QueueError::connection(BACKEND, format!("attaching to {entity}/$management: {e}"))
            })?;
        Ok(Management {
            client,
            entity: entity.to_owned(),
        })
    }

    /// Ends the session and closes the connection.
    pub async fn close(mut self) {
        if let Some(cbs) = self.cbs.take() {
            quietly(cbs.close()).await;
        }
        quietly(self.session.end()).await;
        quietly(self.connection.close()).await;
    }
}

/// A send link.
pub struct Sender {
    link: AmqpSender,
    entity: String,
}

impl fmt::Debug for Sender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sender")
            .field("entity", &self.entity)
            .finish()
    }
}

impl Sender {
    /// Sends `message` and waits for the broker to accept it;
    /// `earlier_attempts` is carried in the copy, `visible_at` schedules it.
    pub async fn send(
        &mut self,
        message: &Message,
        earlier_attempts: u32,
        visible_at: Option<SystemTime>,
    ) -> Result<()> {
        self.send_raw(codec::encode(message, earlier_attempts, visible_at))
            .await
    }

    pub(crate) async fn send_raw(&mut self, message: AmqpMessage<Data>) -> Result<()> {
        let sent = tokio::time::timeout(OP_TIMEOUT, self.link.send(message))
            .await
            .map_err(|_| {
                QueueError::connection(BACKEND, format!("send: no answer within {OP_TIMEOUT:?}"))
            })?;
        match sent {
            Ok(Outcome::Accepted(_)) => Ok(()),
            Ok(Outcome::Rejected(r)) => Err(match r.error {
                Some(e) => described("send", &self.entity, &e),
                None => QueueError::backend_error(
                    BACKEND,
                    false,
                    "send: the broker rejected the message",
                ),
            }),
            Ok(other) => Err(QueueError::backend_error(
                BACKEND,
                true,
                format!("send: the broker answered {other:?}"),
            )),
            Err(e) => Err(send_error(&self.entity, e)),
        }
    }

    /// Detaches the link.
    pub async fn close(self) {
        quietly(self.link.close()).await;
    }
}

/// One received, unsettled delivery.
pub struct Incoming {
    pub(crate) delivery: DeliveryInfo,
    pub(crate) received: Received,
}

impl fmt::Debug for Incoming {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Incoming")
            .field("received", &self.received)
            .finish_non_exhaustive()
    }
}

impl Incoming {
    /// The message, or why its body cannot be read.
    pub fn message(&self) -> std::result::Result<&Message, &str> {
        self.received.message.as_ref().map_err(String::as_str)
    }
    /// Deliveries before this one (the header's `delivery-count`).
    pub fn delivery_count(&self) -> u32 {
        self.received.delivery_count
    }
    /// The attempt this is, counting copies' carried attempts.
    pub fn attempt(&self) -> u32 {
        self.received.attempt()
    }
    /// Service Bus's lock token, if the broker sent one.
    pub fn lock_token(&self) -> Option<Uuid> {
        self.received.lock_token
    }
}

/// A peek-lock receive link.
pub struct Receiver {
    link: AmqpReceiver,
    name: String,
    entity: String,
    credit: u32,
}

impl fmt::Debug for Receiver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Receiver")
            .field("name", &self.name)
            .field("entity", &self.entity)
            .finish()
    }
}

impl Receiver {
    /// The link's name (for `associated-link-name`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Up to `max` deliveries, waiting at most `wait` for the first.
    pub async fn receive(&mut self, max: usize, wait: Duration) -> Result<Vec<Incoming>> {
        let max = u32::try_from(max.max(1)).unwrap_or(u32::MAX);
        if self.credit < max {
            timed("flow", async {
                self.link
                    .set_credit(max)
                    .await
                    .map_err(|e| QueueError::connection(BACKEND, format!("flow: {e}")))
            })
            .await?;
            self.credit = max;
        }
        let mut out = Vec::new();
        let mut budget = wait;
        while out.len() < max as usize {
            match tokio::time::timeout(budget, self.link.recv::<Body<Value>>()).await {
                Err(_) => break,
                Ok(Err(e)) => {
                    if out.is_empty() {
                        return Err(recv_error(&self.entity, e));
                    }
                    break;
                }
                Ok(Ok(delivery)) => {
                    self.credit = self.credit.saturating_sub(1);
                    let tag = delivery.delivery_tag().to_vec();
                    let (info, message) = delivery.into_parts();
                    out.push(Incoming {
                        delivery: info,
                        received: codec::decode(message, &tag),
                    });
                    budget = BATCH_GRACE;
                }
            }
        }
        Ok(out)
    }

    /// Settles: done (Service Bus: complete).
    pub async fn accept(&self, incoming: &Incoming) -> Result<()> {
        self.accept_info(&incoming.delivery).await
    }
    pub(crate) async fn accept_info(&self, info: &DeliveryInfo) -> Result<()> {
        timed("accept", async {
            self.link
                .accept(info.clone())
                .await
                .map_err(|e| QueueError::connection(BACKEND, format!("accept: {e}")))
        })
        .await
    }

    /// Gives it back for redelivery (AMQP released).
    pub async fn release(&self, incoming: &Incoming) -> Result<()> {
        timed("release", async {
            self.link
                .release(incoming.delivery.clone())
                .await
                .map_err(|e| QueueError::connection(BACKEND, format!("release: {e}")))
        })
        .await
    }

    /// Gives it back counting a failed delivery (Service Bus: abandon,
    /// the delivery count goes up).
    pub(crate) async fn abandon_info(&self, info: &DeliveryInfo) -> Result<()> {
        let modified = Modified {
            delivery_failed: Some(true),
            undeliverable_here: None,
            message_annotations: None,
        };
        timed("abandon", async {
            self.link
                .modify(info.clone(), modified)
                .await
                .map_err(|e| QueueError::connection(BACKEND, format!("abandon: {e}")))
        })
        .await
    }

    /// Rejects it; with `reason`, as Service Bus's dead-letter (condition
    /// `com.microsoft:dead-letter`, `DeadLetterReason` in the info).
    pub async fn reject(&self, incoming: &Incoming, reason: Option<&str>) -> Result<()> {
        self.reject_info(&incoming.delivery, reason).await
    }
    pub(crate) async fn reject_info(
        &self,
        info: &DeliveryInfo,
        reason: Option<&str>,
    ) -> Result<()> {
        let error = reason.map(dead_letter_error);
        timed("reject", async {
            self.link
                .reject(info.clone(), error)
                .await
                .map_err(|e| QueueError::connection(BACKEND, format!("reject: {e}")))
        })
        .await
    }

    /// Detaches the link; unsettled deliveries go back to the broker.
    pub async fn close(self) {
        quietly(self.link.close()).await;
    }
}

/// The rejected outcome's error that dead-letters with `reason`.
pub(crate) fn dead_letter_error(reason: &str) -> definitions::Error {
    let mut info = OrderedMap::new();
    info.insert(Symbol::from(DLQ_REASON), Value::String(reason.to_owned()));
    info.insert(
        Symbol::from(DLQ_DESCRIPTION),
        Value::String(reason.to_owned()),
    );
    definitions::Error::new(
        ErrorCondition::Custom(Symbol::from(DEAD_LETTER)),
        Some(reason.to_owned()),
        Some(info.into()),
    )
}

/// A `$management` request link of one entity.
pub struct Management {
    client: MgmtClient,
    entity: String,
}

impl fmt::Debug for Management {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Management")
            .field("entity", &self.entity)
            .finish()
    }
}

impl Management {
    /// Renews the locks of `tokens` taken on the receive link `link`;
    /// the new expiry of each. A lost lock is `StaleReceipt`.
    pub async fn renew_locks(&mut self, tokens: Vec<Uuid>, link: &str) -> Result<Vec<SystemTime>> {
        let request = RenewLock {
            tokens,
            link: link.to_owned(),
            server_timeout_ms: 30_000,
        };
        timed("renew-lock", async {
            self.client
                .call(request)
                .await
                .map(|r: crate::mgmt::RenewLockResponse| r.expirations)
                .map_err(|e| mgmt_error("renew-lock", &self.entity, e))
        })
        .await
    }

    /// Detaches the request link.
    pub async fn close(self) {
        quietly(self.client.close()).await;
    }
}

/// `fut`, or a connection error after [`OP_TIMEOUT`].
async fn timed<T>(operation: &'static str, fut: impl Future<Output = Result<T>>) -> Result<T> {
    tokio::time::timeout(OP_TIMEOUT, fut)
        .await
        .unwrap_or_else(|_| {
            Err(QueueError::connection(
                BACKEND,
                format!("{operation}: no answer within {OP_TIMEOUT:?}"),
            ))
        })
}

/// Closes something, giving up after [`CLOSE_TIMEOUT`].
async fn quietly(fut: impl Future) {
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, fut).await;
}

// ---- errors: the engine's types into the table of `error.rs` ----

/// The name of an AMQP error condition (`amqp:not-found`).
pub(crate) fn condition_name(condition: &ErrorCondition) -> String {
    let symbol = match condition {
        ErrorCondition::AmqpError(e) => Symbol::from(e),
        ErrorCondition::ConnectionError(e) => Symbol::from(e),
        ErrorCondition::SessionError(e) => Symbol::from(e),
        ErrorCondition::LinkError(e) => Symbol::from(e),
        ErrorCondition::Custom(s) => s.clone(),
    };
    symbol.0
}

fn described(operation: &'static str, entity: &str, error: &definitions::Error) -> QueueError {
    let condition = condition_name(&error.condition);
    let detail = match &error.description {
        Some(d) => format!("{condition}: {d}"),
        None => condition.clone(),
    };
    to_queue_error(condition_kind(&condition), operation, entity, detail)
}

fn open_error(endpoint: &str, e: fe2o3_amqp::connection::OpenError) -> QueueError {
    use fe2o3_amqp::connection::OpenError;
    match e {
        OpenError::RemoteClosedWithError(err) => described("open", endpoint, &err),
        OpenError::SaslError { code, .. } => QueueError::configuration(
            BACKEND,
            format!(
                "SASL authentication with {endpoint} failed ({code:?}); check the user and password"
            ),
        ),
        other => QueueError::connection(BACKEND, format!("opening {endpoint}: {other}")),
    }
}

fn remote_of_sender(e: &fe2o3_amqp::link::SenderAttachError) -> Option<&definitions::Error> {
    match e {
        fe2o3_amqp::link::SenderAttachError::RemoteClosedWithError(err) => Some(err),
        _ => None,
    }
}

fn remote_of_receiver(e: &fe2o3_amqp::link::ReceiverAttachError) -> Option<&definitions::Error> {
    match e {
        fe2o3_amqp::link::ReceiverAttachError::RemoteClosedWithError(err) => Some(err),
        _ => None,
    }
}

fn attach_error(
    operation: &'static str,
    entity: &str,
    text: &str,
    remote: Option<&definitions::Error>,
) -> QueueError {
    match remote {
        Some(err) => described(operation, entity, err),
        None => QueueError::connection(BACKEND, format!("{operation} on {entity:?}: {text}")),
    }
}

fn detach_error(operation: &'static str, entity: &str, e: &DetachError) -> QueueError {
    match e {
        DetachError::RemoteDetachedWithError(err) | DetachError::RemoteClosedWithError(err) => {
            described(operation, entity, err)
        }
        other => QueueError::connection(BACKEND, format!("{operation}: {other}")),
    }
}

fn send_error(entity: &str, e: SendError) -> QueueError {
    match e {
        SendError::Detached(d) => detach_error("send", entity, &d),
        SendError::MessageEncodeError => {
            QueueError::invalid_message(BACKEND, "the message could not be encoded")
        }
        other => QueueError::connection(BACKEND, format!("send: {other}")),
    }
}

fn recv_error(entity: &str, e: RecvError) -> QueueError {
    match e {
        RecvError::LinkStateError(fe2o3_amqp::link::LinkStateError::RemoteDetachedWithError(
            err,
        ))
        | RecvError::LinkStateError(fe2o3_amqp::link::LinkStateError::RemoteClosedWithError(err)) => {
            described("receive", entity, &err)
        }
        other => QueueError::connection(BACKEND, format!("receive: {other}")),
    }
}

fn mgmt_error(operation: &'static str, entity: &str, e: MgmtError) -> QueueError {
    match e {
        MgmtError::Status(s) => {
            let code = s.code.0.get();
            let detail = format!("status {code}: {}", s.description.unwrap_or_default());
            to_queue_error(status_kind(code), operation, entity, detail)
        }
        other => QueueError::connection(BACKEND, format!("{operation}: {other}")),
    }
}

/// Whether an error means the connection must be opened again.
pub(crate) fn needs_reconnect(e: &QueueError) -> bool {
    matches!(e, QueueError::Connection { .. })
}

/// Kind of an error, for the queue's decisions.
pub(crate) fn is_stale(e: &QueueError) -> bool {
    matches!(e, QueueError::StaleReceipt { .. })
}

fn tls_connector() -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    let provider = rustls::crypto::CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| Arc::new(rustls::crypto::aws_lc_rs::default_provider()));
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("the provider supports TLS 1.2 and 1.3")
        .with_root_certificates(roots)
        .with_no_client_auth();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

fn server_name(host: &str) -> Result<rustls::pki_types::ServerName<'static>> {
    rustls::pki_types::ServerName::try_from(host.to_owned()).map_err(|_| {
        QueueError::configuration(BACKEND, format!("{host:?} is not a valid TLS server name"))
    })
}

#[cfg(test)]
mod tests {
    use fe2o3_amqp::types::definitions::AmqpError;

    use super::*;

    #[test]
    fn dead_letter_outcome_carries_the_reason() {
        let e = dead_letter_error("max attempts (5) reached");
        assert_eq!(condition_name(&e.condition), DEAD_LETTER);
        let info = e.info.unwrap();
        assert_eq!(
            info.get(&Symbol::from(DLQ_REASON)),
            Some(&Value::String("max attempts (5) reached".into()))
        );
    }

    #[test]
    fn described_errors_follow_the_table() {
        let lost = definitions::Error::new(
            ErrorCondition::Custom(Symbol::from("com.microsoft:message-lock-lost")),
            Some("The lock supplied is invalid".into()),
            None,
        );
        assert!(is_stale(&described("complete", "q", &lost)));
        let missing = definitions::Error::new(AmqpError::NotFound, None, None);
        assert_eq!(condition_name(&missing.condition), "amqp:not-found");
        assert!(matches!(
            described("attach", "q", &missing),
            QueueError::QueueNotFound { .. }
        ));
    }
}
