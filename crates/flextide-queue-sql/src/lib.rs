#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

mod batch;
mod codec;
mod dead;
pub mod decode;
pub mod dedup;
mod detach;
mod error;
mod migrate;
mod pool;
mod provider;
mod release;
#[cfg(feature = "test-support")]
pub mod test_support;
mod wake;

pub use batch::{DeleteBatch, Wanted, copy_error};
pub use codec::{MAX_DELAY, check_delay, decode_receipt, headers_text, millis, stale};
pub use dead::{DELETE_DEAD_LETTERS_CHUNK, delete_dead_letters};
pub use detach::{Presence, detach, detach_claim, release_claimed};
pub use error::{Class, Dialect};
pub use migrate::{Migration, Plan, migrate};
pub use pool::{CONNECT_TIMEOUT, open_pool};
pub use provider::{CAPABILITIES, LIST_QUEUES_SQL, applied_steps, list_queues};
pub use release::release;
pub use wake::waker;

/// What the `queue_provider!` and `connector!` macros name, so a backend
/// needs no `async-trait` of its own to use them. Not part of the API.
#[doc(hidden)]
pub mod __private {
    pub use async_trait::async_trait;
    pub use flextide_queue_core::{
        Capabilities, Connector, DeadLetter, Delivery, Message, MessageId, Pushed, QueueOptions,
        QueueProvider, QueueStats, Receipt, Replay, Result, validate_queue_name,
    };
}
