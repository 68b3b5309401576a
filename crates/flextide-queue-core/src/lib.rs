#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

mod capabilities;
mod connector;
mod delivery;
mod error;
mod message;
mod name;
mod options;
mod provider;

pub use capabilities::Capabilities;
pub use connector::{Connector, redact_url, url_scheme};
pub use delivery::{Delivery, Receipt};
pub use error::{BatchFailure, QueueError, Result};
pub use message::{CONTENT_TYPE, Headers, Message, MessageId, TRACEPARENT, TRACESTATE};
pub use name::{MAX_QUEUE_NAME_LEN, validate_queue_name};
pub use options::{DEFAULT_DEDUP_WINDOW, QueueOptions, parse_duration};
pub use provider::{DeadLetter, Pushed, QueueProvider, QueueStats, Replay, give_back_unstarted};

pub mod backend;
