//! The cases, one module per operation. Each case is a public async function
//! taking a [`Ctx`](crate::Ctx), so you can call any of them from your own
//! tests too.

use flextide_queue_core::Capabilities;

use crate::{Case, HarnessSettings};

pub mod across_handles;
pub mod basic;
pub mod batch;
pub mod concurrency;
pub mod cut_short;
pub mod dead_letter;
pub mod dedup;
pub mod delay;
pub mod fencing;
pub mod foreign;
pub mod lease;
pub mod lifecycle;
pub mod names;
pub mod optional;
pub mod ordering;
pub mod payload;
pub mod priority;
pub mod reconnect;
pub mod release;
pub mod stats;
mod support;
pub mod unsupported;
pub mod wait;

/// Builds a [`Case`] from an async fn and an optional capability gate.
macro_rules! case {
    ($name:literal, $f:path) => {
        case!($name, $f, $crate::cases::always)
    };
    ($name:literal, $f:path, $needs:expr) => {{
        fn run<'a>(ctx: &'a $crate::Ctx) -> futures::future::BoxFuture<'a, $crate::CaseResult> {
            Box::pin($f(ctx))
        }
        $crate::Case {
            name: $name,
            needs: $needs,
            run,
        }
    }};
}
pub(crate) use case;

/// Every case of the suite.
pub(crate) fn all() -> Vec<Case> {
    let mut cases = Vec::new();
    cases.extend(basic::cases());
    cases.extend(batch::cases());
    cases.extend(lease::cases());
    cases.extend(release::cases());
    cases.extend(fencing::cases());
    cases.extend(ordering::cases());
    cases.extend(dead_letter::cases());
    cases.extend(wait::cases());
    cases.extend(payload::cases());
    cases.extend(names::cases());
    cases.extend(delay::cases());
    cases.extend(priority::cases());
    cases.extend(stats::cases());
    cases.extend(concurrency::cases());
    cases.extend(reconnect::cases());
    cases.extend(foreign::cases());
    cases.extend(cut_short::cases());
    cases.extend(across_handles::cases());
    cases.extend(lifecycle::cases());
    cases.extend(unsupported::cases());
    cases.extend(optional::cases());
    cases.extend(dedup::cases());
    cases
}

/// Gate: the case applies to every backend.
pub fn always(_: &Capabilities, _: &HarnessSettings) -> Option<&'static str> {
    None
}

/// Gate helper: ignore with `reason` unless `has` holds.
pub fn need(has: bool, reason: &'static str) -> Option<&'static str> {
    (!has).then_some(reason)
}

/// Gate helper for the "missing capability returns Unsupported" cases.
pub fn lacking(has: bool, reason: &'static str) -> Option<&'static str> {
    has.then_some(reason)
}
