#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

mod check;
mod context;
mod env;
mod handles;
mod harness;
mod integration;
mod locate;
mod runner;

pub mod cases;

pub use check::{CaseError, CaseResult};
pub use context::Ctx;
pub use env::{is_required, required_backends, server_url, unique_queue_name};
pub use handles::HandleRegistry;
pub use harness::{Connect, ForeignEntry, Harness, HarnessSettings};
pub use integration::{IntegrationTest, TestFuture, run_integration};
pub use locate::{CONTAINER_LABEL, Located, Server, locate};
pub use runner::{Case, Needs, all_cases, run, run_cases};

// Re-exported so a backend's test needs no other dependency.
pub use async_trait::async_trait;
pub use flextide_queue_core as core;
