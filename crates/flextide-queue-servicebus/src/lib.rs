#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

mod codec;
mod config;
mod error;
mod lock;
mod mgmt;
mod sas;
pub mod transport;

pub use config::{Auth, CONNECTION_STRING_ENV, ServiceBusConfig};

/// The backend's short name, used in errors and logs.
pub const BACKEND: &str = "servicebus";

pub use flextide_queue_core::{
    Capabilities, Connector, DeadLetter, Delivery, Message, QueueError, QueueOptions,
    QueueProvider, QueueStats, Receipt, Replay,
};
