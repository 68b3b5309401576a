//! The engine's error types mapped into the tables of `error.rs`, and
//! the TLS set-up.

use std::sync::Arc;

use fe2o3_amqp::{
    link::{DetachError, RecvError, SendError},
    types::{
        definitions::{self, ErrorCondition},
        primitives::Symbol,
    },
};
use fe2o3_amqp_management::error::Error as MgmtError;
use flextide_queue_core::{QueueError, Result};

use crate::{
    BACKEND,
    error::{condition_kind, status_kind, to_queue_error},
};

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

pub(super) fn described(
    operation: &'static str,
    entity: &str,
    error: &definitions::Error,
) -> QueueError {
    let condition = condition_name(&error.condition);
    let detail = match &error.description {
        Some(d) => format!("{condition}: {d}"),
        None => condition.clone(),
    };
    to_queue_error(condition_kind(&condition), operation, entity, detail)
}

pub(super) fn open_error(endpoint: &str, e: fe2o3_amqp::connection::OpenError) -> QueueError {
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

pub(super) fn remote_of_sender(
    e: &fe2o3_amqp::link::SenderAttachError,
) -> Option<&definitions::Error> {
    match e {
        fe2o3_amqp::link::SenderAttachError::RemoteClosedWithError(err) => Some(err),
        _ => None,
    }
}

pub(super) fn remote_of_receiver(
    e: &fe2o3_amqp::link::ReceiverAttachError,
) -> Option<&definitions::Error> {
    match e {
        fe2o3_amqp::link::ReceiverAttachError::RemoteClosedWithError(err) => Some(err),
        _ => None,
    }
}

pub(super) fn attach_error(
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

pub(super) fn detach_error(operation: &'static str, entity: &str, e: &DetachError) -> QueueError {
    match e {
        DetachError::RemoteDetachedWithError(err) | DetachError::RemoteClosedWithError(err) => {
            described(operation, entity, err)
        }
        other => QueueError::connection(BACKEND, format!("{operation}: {other}")),
    }
}

pub(super) fn send_error(entity: &str, e: SendError) -> QueueError {
    match e {
        SendError::Detached(d) => detach_error("send", entity, &d),
        SendError::MessageEncodeError => {
            QueueError::invalid_message(BACKEND, "the message could not be encoded")
        }
        other => QueueError::connection(BACKEND, format!("send: {other}")),
    }
}

pub(super) fn recv_error(entity: &str, e: RecvError) -> QueueError {
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

pub(super) fn mgmt_error(operation: &'static str, entity: &str, e: MgmtError) -> QueueError {
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

#[cfg(test)]
fn is_stale(e: &QueueError) -> bool {
    matches!(e, QueueError::StaleReceipt { .. })
}

pub(super) fn tls_connector() -> tokio_rustls::TlsConnector {
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

pub(super) fn server_name(host: &str) -> Result<rustls::pki_types::ServerName<'static>> {
    rustls::pki_types::ServerName::try_from(host.to_owned()).map_err(|_| {
        QueueError::configuration(BACKEND, format!("{host:?} is not a valid TLS server name"))
    })
}

#[cfg(test)]
mod tests {
    use fe2o3_amqp::types::{definitions::AmqpError, primitives::Value};

    use super::*;
    use crate::{
        codec::DLQ_REASON,
        transport::{DEAD_LETTER, receiver::dead_letter_error},
    };

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
