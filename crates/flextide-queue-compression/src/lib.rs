#![doc = include_str!("../README.md")]

mod codec;
mod queue;

pub use codec::{CONTENT_ENCODING, Compression, ZSTD, is_zstd};
pub use queue::Compressed;
