#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

mod batch;
mod codec;
pub mod decode;
mod detach;
mod error;
mod migrate;
mod wake;

pub use batch::{DeleteBatch, Wanted, copy_error};
pub use codec::{MAX_DELAY, check_delay, decode_receipt, headers_text, millis, stale};
pub use detach::{Presence, detach, detach_claim};
pub use error::{Class, Dialect};
pub use migrate::{Migration, Plan, migrate};
pub use wake::waker;
