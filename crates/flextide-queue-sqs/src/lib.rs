#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

mod client;
mod codec;
mod connector;
mod error;
mod inflight;
mod list;
mod queue;

pub use client::{QueueKind, SqsClient};
pub use connector::{SCHEMES, SqsConnector};
pub use flextide_queue_core::{
    Capabilities, Connector, DeadLetter, Delivery, Message, QueueError, QueueOptions,
    QueueProvider, QueueStats, Receipt, Replay,
};
pub use queue::SqsQueue;

// Re-exported so users need no direct dependency to build clients or
// configure the SDK.
pub use aws_config;
pub use aws_sdk_sqs;
pub use flextide_queue_core as core;

/// The backend's name in errors, logs and metrics.
pub const BACKEND: &str = "sqs";
