#![doc = include_str!("../README.md")]

mod api;
mod builder;
mod error;
mod history;
mod metrics;
mod pages;
mod payload;
mod routes;
mod security;
mod state;

pub use builder::{BuildError, Counts, Dashboard, DashboardBuilder};
