#![doc = include_str!("../README.md")]

mod ops;
mod view;

pub use ops::{
    DeleteOutcome, MAX_LISTED, ReplayOutcome, delete_dead_letters, peek, purge_confirmation, replay,
};
pub use view::{StatsView, dead_letter_json, message_json, stats};

/// Any failure of an operation; printed with its causes.
pub type Error = Box<dyn std::error::Error + Send + Sync>;
