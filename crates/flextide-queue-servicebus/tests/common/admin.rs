//! Creating and deleting Service Bus queues for the suite, through the
//! namespace's REST management endpoint (`PUT`/`DELETE
//! https://NAMESPACE/QUEUE`, an Atom entry, SAS-authorised with a key that
//! has the Manage right): the AMQP connection cannot create queues.
//! A bare HTTP/1.1 exchange over the crate's TLS, so the suite needs no
//! HTTP client. Not run on this project's machines (no namespace there).

use std::{sync::Arc, time::Duration};

use flextide_queue_servicebus::{Auth, QueueError, ServiceBusConfig, shared_access_signature};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn failed(what: &str, e: impl std::fmt::Display) -> QueueError {
    QueueError::connection("servicebus", format!("{what}: {e}"))
}

/// The Atom entry of a queue whose lock lasts `lock` (at least 5 s, the
/// Service Bus minimum), with duplicate detection over `window` (the
/// elements in the order the schema gives them), and whose own
/// dead-lettering by delivery count stays out of the way of the backend's
/// `max_attempts`.
fn queue_entry(lock: Duration, window: Duration) -> String {
    let secs = lock.as_secs().max(5);
    let window = window.as_secs();
    format!(
        "<entry xmlns=\"http://www.w3.org/2005/Atom\"><content type=\"application/xml\">\
         <QueueDescription xmlns=\"http://schemas.microsoft.com/netservices/2010/10/servicebus/connect\" \
         xmlns:i=\"http://www.w3.org/2001/XMLSchema-instance\">\
         <LockDuration>PT{secs}S</LockDuration>\
         <RequiresDuplicateDetection>true</RequiresDuplicateDetection>\
         <DuplicateDetectionHistoryTimeWindow>PT{window}S</DuplicateDetectionHistoryTimeWindow>\
         <MaxDeliveryCount>1000</MaxDeliveryCount>\
         </QueueDescription></content></entry>"
    )
}

async fn request(
    config: &ServiceBusConfig,
    method: &str,
    queue: &str,
    body: &str,
) -> Result<u16, QueueError> {
    let Auth::SharedAccessKey { key_name, key } = &config.auth else {
        return Err(QueueError::configuration(
            "servicebus",
            "the suite creates its queues with SharedAccessKeyName/SharedAccessKey (Manage right)",
        ));
    };
    let audience = format!("https://{}/{queue}", config.host);
    let token = shared_access_signature(&audience, key_name, key, Duration::from_secs(600));
    let request = format!(
        "{method} /{queue}?api-version=2017-04 HTTP/1.1\r\nHost: {host}\r\nAuthorization: {token}\r\n\
         Content-Type: application/atom+xml;type=entry;charset=utf-8\r\nContent-Length: {len}\r\n\
         Connection: close\r\n\r\n{body}",
        host = config.host,
        len = body.len(),
    );
    let tcp = tokio::net::TcpStream::connect((config.host.as_str(), 443))
        .await
        .map_err(|e| failed("connect to the management endpoint", e))?;
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| failed("TLS", e))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from(config.host.clone())
        .map_err(|e| failed("TLS name", e))?;
    let mut stream = tokio_rustls::TlsConnector::from(Arc::new(tls))
        .connect(name, tcp)
        .await
        .map_err(|e| failed("TLS", e))?;
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| failed("write", e))?;
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response).await;
    let text = String::from_utf8_lossy(&response);
    text.split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| failed("management response", "no status line"))
}

/// Creates `queue` (an existing one is fine).
pub(crate) async fn create(
    config: &ServiceBusConfig,
    queue: &str,
    lock: Duration,
    window: Duration,
) -> Result<(), QueueError> {
    match request(config, "PUT", queue, &queue_entry(lock, window)).await? {
        200 | 201 | 409 => Ok(()),
        code => Err(failed("creating a queue", format!("HTTP {code}"))),
    }
}

/// Deletes `queue` (a missing one is fine).
pub(crate) async fn delete(config: &ServiceBusConfig, queue: &str) -> Result<(), QueueError> {
    match request(config, "DELETE", queue, "").await? {
        200 | 404 => Ok(()),
        code => Err(failed("deleting a queue", format!("HTTP {code}"))),
    }
}
