#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

mod codec;
mod config;
mod connector;
mod error;
#[cfg(feature = "identity")]
pub mod identity;
mod lock;
mod mgmt;
mod queue;
mod sas;
pub mod transport;

pub use config::{
    Auth, CONNECTION_STRING_ENV, DUPLICATE_DETECTION_ENV, MAX_DUPLICATE_WINDOW,
    MIN_DUPLICATE_WINDOW, NAMESPACE_ENV, ServiceBusConfig,
};
pub use connector::ServiceBusConnector;
pub use queue::{MAX_PAYLOAD_BYTES, ServiceBusQueue};
pub use sas::shared_access_signature;

/// The backend's short name, used in errors and logs.
pub const BACKEND: &str = "servicebus";

/// URL schemes: none; a connection string is recognised by its
/// `Endpoint=sb://` (see [`ServiceBusConnector`]).
pub const SCHEMES: &[&str] = &[];

pub use flextide_queue_core::{
    Capabilities, Connector, DeadLetter, Delivery, Message, QueueError, QueueOptions,
    QueueProvider, QueueStats, Receipt, Replay,
};
