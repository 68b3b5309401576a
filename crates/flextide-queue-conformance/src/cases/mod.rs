//! The cases, one module per operation. Each case is a public async function
//! taking a [`Ctx`](crate::Ctx), so you can call any of them from your own
//! tests too.

use flextide_queue_core::Capabilities;

use crate::{Case, HarnessSettings};

pub mod basic;

/// Builds a [`Case`] from an async fn and an optional capability gate.
macro_rules! case {
    ($name:literal, $f:path) => {
        case!($name, $f, $crate::cases::always)
    };
    ($name:literal, $f:path, $needs:expr) => {{
        fn run<'a>(ctx: &'a $crate::Ctx) -> futures::future::BoxFuture<'a, $crate::CaseResult> {
            Box::pin($f(ctx))
        }
        $crate::Case { name: $name, needs: $needs, run }
    }};
}
pub(crate) use case;

/// Every case of the suite.
pub(crate) fn all() -> Vec<Case> {
    let mut cases = Vec::new();
    cases.extend(basic::cases());
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
