//! A test binary for a backend's own integration tests (the ones beyond the
//! shared suite): each test is a plain `async fn(url: String)`, and when the
//! server is not configured every test shows as *ignored* with the variable
//! to set, never as passed. When `FLEXTIDE_TEST_REQUIRE` names the backend,
//! an unset variable fails the run instead.
//!
//! ```no_run
//! // tests/integration.rs, with `harness = false` in Cargo.toml
//! use flextide_queue_conformance::{IntegrationTest, integration_test, run_integration};
//!
//! async fn survives_a_dropped_connection(url: String) {
//!     // connect to `url`, break things, assert nothing is lost
//! #   let _ = url;
//! }
//!
//! fn main() -> std::process::ExitCode {
//!     run_integration(
//!         "mybroker",
//!         "FLEXTIDE_TEST_MYBROKER_URL",
//!         vec![integration_test!(survives_a_dropped_connection).threads(2)],
//!     )
//! }
//! ```

use std::{future::Future, panic::AssertUnwindSafe, pin::Pin, process::ExitCode};

use futures::FutureExt;
use libtest_mimic::{Arguments, Completion, Failed, Trial};

use crate::env::is_required;

/// The future of one integration test.
pub type TestFuture = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// One integration test: a name and an async function of the server URL.
/// Build it with [`integration_test!`](crate::integration_test).
#[derive(Debug, Clone)]
pub struct IntegrationTest {
    name: &'static str,
    run: fn(String) -> TestFuture,
    threads: usize,
}

impl IntegrationTest {
    /// A test run on a current-thread tokio runtime.
    pub fn new(name: &'static str, run: fn(String) -> TestFuture) -> Self {
        IntegrationTest {
            name,
            run,
            threads: 1,
        }
    }

    /// Runs the test on a multi-thread runtime with `n` worker threads
    /// (like `#[tokio::test(flavor = "multi_thread", worker_threads = n)]`).
    pub fn threads(mut self, n: usize) -> Self {
        self.threads = n.max(1);
        self
    }

    fn execute(&self, url: String) -> Result<(), Failed> {
        let mut builder = if self.threads > 1 {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            b.worker_threads(self.threads);
            b
        } else {
            tokio::runtime::Builder::new_current_thread()
        };
        let runtime = builder
            .enable_all()
            .build()
            .map_err(|e| Failed::from(format!("cannot start a tokio runtime: {e}")))?;
        let test = AssertUnwindSafe((self.run)(url)).catch_unwind();
        runtime.block_on(test).map_err(|panic| {
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "the test panicked".to_owned());
            Failed::from(message)
        })
    }
}

/// An [`IntegrationTest`] named after the async function it runs.
#[macro_export]
macro_rules! integration_test {
    ($test:ident) => {
        $crate::IntegrationTest::new(stringify!($test), |url| ::std::boxed::Box::pin($test(url)))
    };
}

/// Runs `tests` against the server whose URL is in the environment variable
/// `var`, as the `main` of a `harness = false` test target. Returns the exit
/// code to end `main` with.
///
/// Variable unset: every test is ignored with a reason, unless
/// `FLEXTIDE_TEST_REQUIRE` names `backend` (or `all`): then a test named
/// `<backend>::server` fails, saying which variable is missing.
pub fn run_integration(backend: &str, var: &str, tests: Vec<IntegrationTest>) -> ExitCode {
    let args = Arguments::from_args();
    let url = std::env::var(var)
        .ok()
        .map(|u| u.trim().to_owned())
        .filter(|u| !u.is_empty());
    let trials: Vec<Trial> = match url {
        Some(url) => tests
            .into_iter()
            .map(|test| {
                let url = url.clone();
                Trial::test(test.name, move || test.execute(url)).with_kind(backend)
            })
            .collect(),
        None if is_required(backend) => {
            let message = format!("FLEXTIDE_TEST_REQUIRE names {backend} but {var} is unset");
            vec![
                Trial::test(format!("{backend}::server"), move || {
                    Err(Failed::from(message))
                })
                .with_kind(backend),
            ]
        }
        None => tests
            .into_iter()
            .map(|test| {
                let reason = format!("set {var} to run it");
                Trial::ignorable_test(test.name, move || Ok(Completion::ignored_with(reason)))
                    .with_kind(backend)
            })
            .collect(),
    };
    libtest_mimic::run(&args, trials).exit_code()
}
