//! The AMQP 1.0 transport: a connection with one session, send links,
//! peek-lock receive links with manual credit, settlement on the link
//! that received a delivery (`receiver.rs`), and `$management` request
//! links; the engine's errors mapped in `errors.rs`.
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
    link::receiver::CreditMode,
    sasl_profile::SaslProfile,
    session::SessionHandle,
    types::{definitions::ReceiverSettleMode, messaging::Outcome},
};
use fe2o3_amqp_cbs::{client::CbsClient, token::CbsToken};
use fe2o3_amqp_management::client::MgmtClient;
use fe2o3_amqp_types::messaging::{Data, Message as AmqpMessage};
use flextide_queue_core::{Message, QueueError, Result};
use uuid::Uuid;

mod errors;
mod receiver;

pub(crate) use errors::needs_reconnect;
use errors::{
    attach_error, described, mgmt_error, open_error, remote_of_receiver, remote_of_sender,
    send_error, server_name, tls_connector,
};
pub use receiver::{Incoming, Receiver};

use crate::{
    BACKEND,
    codec::{self},
    config::{Auth, ServiceBusConfig},
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
    /// Each audience whose token was put: its entity (for errors) and
    /// when the token must be put again.
    authorized: HashMap<String, (String, SystemTime)>,
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
        if self.cbs.is_none() {
            return Ok(());
        }
        let audience = self.config.audience(entity);
        if self
            .authorized
            .get(&audience)
            .is_some_and(|(_, at)| SystemTime::now() < *at)
        {
            return Ok(());
        }
        self.put_token(audience, entity).await
    }

    /// Puts a fresh token again for every audience whose renewal time has
    /// come. Service Bus detaches the links of an audience whose token
    /// expired, which would strand the locks of messages they received:
    /// the queue calls this before each use of the connection, so a link
    /// in use never outlives its token (a ready-made
    /// `SharedAccessSignature` cannot be renewed and is not due).
    pub async fn refresh_tokens(&mut self) -> Result<()> {
        for (audience, entity) in due(&self.authorized, SystemTime::now()) {
            self.put_token(audience, &entity).await?;
        }
        Ok(())
    }

    async fn put_token(&mut self, audience: String, entity: &str) -> Result<()> {
        let Some(cbs) = self.cbs.as_mut() else {
            return Ok(());
        };
        let now = SystemTime::now();
        let (value, kind, expires_at) = match &self.config.auth {
            Auth::SharedAccessKey { key_name, key } => {
                let t = sas_token(&audience, key_name, key, now + TOKEN_LIFETIME);
                (t.value, SAS_TOKEN_TYPE, Some(t.expires_at))
            }
            Auth::SharedAccessSignature(s) => (s.clone(), SAS_TOKEN_TYPE, None),
            #[cfg(feature = "identity")]
            Auth::Entra(credential) => {
                let (token, expires_at) = credential.token().await?;
                (token, crate::identity::JWT_TOKEN_TYPE, Some(expires_at))
            }
            Auth::Plain { .. } | Auth::Anonymous => return Ok(()),
        };
        let token = CbsToken::new(value, kind, expires_at.map(codec::timestamp));
        timed("authorize", async {
            cbs.put_token(audience.clone(), token)
                .await
                .map_err(|e| mgmt_error("authorize", entity, e))
        })
        .await?;
        let renew_at = expires_at.map_or(now + Duration::from_secs(u64::MAX / 4), |exp| {
            now + renew_after(now, exp)
        });
        self.authorized
            .insert(audience, (entity.to_owned(), renew_at));
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
            service_bus: self.config.service_bus,
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
        self.send_as(message, message.id.as_str(), earlier_attempts, visible_at)
            .await
    }

    /// [`Sender::send`] with `wire_id` as the AMQP `message-id` (Service
    /// Bus's duplicate detection key); the Flextide id travels beside it.
    pub async fn send_as(
        &mut self,
        message: &Message,
        wire_id: &str,
        earlier_attempts: u32,
        visible_at: Option<SystemTime>,
    ) -> Result<()> {
        self.send_raw(codec::encode(
            message,
            wire_id,
            earlier_attempts,
            visible_at,
        ))
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

/// The audiences (with their entities) whose token is due again at `now`.
fn due(
    authorized: &HashMap<String, (String, SystemTime)>,
    now: SystemTime,
) -> Vec<(String, String)> {
    let mut due: Vec<(String, String)> = authorized
        .iter()
        .filter(|(_, (_, renew_at))| now >= *renew_at)
        .map(|(audience, (entity, _))| (audience.clone(), entity.clone()))
        .collect();
    due.sort();
    due
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_due_from_their_renewal_time_on() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let issued = t0 + renew_after(t0, t0 + TOKEN_LIFETIME);
        let authorized = HashMap::from([
            ("sb://ns/a".to_owned(), ("a".to_owned(), issued)),
            (
                "sb://ns/b".to_owned(),
                ("b".to_owned(), issued + Duration::from_secs(60)),
            ),
            // A ready-made signature: never due.
            (
                "sb://ns/c".to_owned(),
                ("c".to_owned(), t0 + Duration::from_secs(u64::MAX / 4)),
            ),
        ]);
        assert!(due(&authorized, t0).is_empty());
        assert!(due(&authorized, issued - Duration::from_secs(1)).is_empty());
        assert_eq!(
            due(&authorized, issued),
            [("sb://ns/a".to_owned(), "a".to_owned())]
        );
        assert_eq!(
            due(&authorized, issued + Duration::from_secs(3600))
                .into_iter()
                .map(|(_, e)| e)
                .collect::<Vec<_>>(),
            ["a", "b"]
        );
    }
}
