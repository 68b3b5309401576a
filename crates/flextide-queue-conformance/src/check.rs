//! Assertions for cases: they fail with a message instead of panicking.

use std::fmt;

use flextide_queue_core::QueueError;

/// Why a case failed.
#[derive(Debug)]
pub struct CaseError(pub String);

impl fmt::Display for CaseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<QueueError> for CaseError {
    fn from(e: QueueError) -> Self {
        let mut text = format!("unexpected queue error: {e}");
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            text.push_str(&format!(": {s}"));
            source = s.source();
        }
        CaseError(text)
    }
}

/// What every case returns.
pub type CaseResult = Result<(), CaseError>;

/// Fails the case with a formatted message unless the condition holds.
#[macro_export]
macro_rules! ensure {
    ($cond:expr, $($msg:tt)+) => {
        if !$cond {
            return Err($crate::CaseError(format!("{} (at {}:{})", format!($($msg)+), file!(), line!())));
        }
    };
}

/// Fails the case unless both sides are equal, showing both.
#[macro_export]
macro_rules! ensure_eq {
    ($left:expr, $right:expr $(,)?) => {{
        let (l, r) = (&$left, &$right);
        if l != r {
            return Err($crate::CaseError(format!(
                "expected {} == {}\n  left: {:?}\n right: {:?} (at {}:{})",
                stringify!($left), stringify!($right), l, r, file!(), line!()
            )));
        }
    }};
    ($left:expr, $right:expr, $($msg:tt)+) => {{
        let (l, r) = (&$left, &$right);
        if l != r {
            return Err($crate::CaseError(format!(
                "{}\n  left: {:?}\n right: {:?} (at {}:{})",
                format!($($msg)+), l, r, file!(), line!()
            )));
        }
    }};
}

/// Fails the case unless the expression is an `Err` matching the pattern.
#[macro_export]
macro_rules! ensure_err {
    ($expr:expr, $pat:pat $(,)?) => {{
        match $expr {
            Err($pat) => {}
            Err(other) => {
                return Err($crate::CaseError(format!(
                    "expected {} to fail with {}, got error: {other} (at {}:{})",
                    stringify!($expr),
                    stringify!($pat),
                    file!(),
                    line!()
                )));
            }
            Ok(v) => {
                return Err($crate::CaseError(format!(
                    "expected {} to fail with {}, got Ok({:?}) (at {}:{})",
                    stringify!($expr),
                    stringify!($pat),
                    v,
                    file!(),
                    line!()
                )));
            }
        }
    }};
}
