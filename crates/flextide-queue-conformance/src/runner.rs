//! Builds the test binary: one libtest trial per case, gated by capabilities.

use std::{future::Future, process::ExitCode, sync::Arc, time::Duration};

use flextide_queue_core::{Capabilities, QueueOptions};
use futures::future::BoxFuture;
use libtest_mimic::{Arguments, Completion, Failed, Trial};

use crate::{CaseResult, Connect, Ctx, Harness, HarnessSettings, is_required, unique_queue_name};

/// Decides whether a case applies: `Some(reason)` ignores it with that reason.
pub type Needs = fn(&Capabilities, &HarnessSettings) -> Option<&'static str>;

/// One clause of the contract, checked on one backend.
#[derive(Clone, Copy)]
pub struct Case {
    /// `group::name`, as shown by the test runner.
    pub name: &'static str,
    /// Which capabilities the case needs.
    pub needs: Needs,
    /// The case itself.
    pub run: for<'a> fn(&'a Ctx) -> BoxFuture<'a, CaseResult>,
}

impl std::fmt::Debug for Case {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Case").field("name", &self.name).finish()
    }
}

/// Every case of the suite, grouped by operation.
pub fn all_cases() -> Vec<Case> {
    crate::cases::all()
}

/// Longest connecting may take, starting a container included (a cold
/// RabbitMQ container on a loaded machine needs minutes, not seconds).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(300);

/// Longest a case may run before it counts as hung.
const CASE_TIMEOUT: Duration = Duration::from_secs(180);

/// Runs the whole suite against a backend and returns the process's exit
/// code. Call it from an integration test with `harness = false`:
///
/// ```no_run
/// # use flextide_queue_conformance::{Connect, Harness};
/// # struct MyHarness;
/// # #[flextide_queue_conformance::async_trait]
/// # impl Harness for MyHarness {
/// #   async fn open(&self, _: &str, _: flextide_queue_core::QueueOptions) -> Result<std::sync::Arc<dyn flextide_queue_core::QueueProvider>, flextide_queue_core::QueueError> { todo!() }
/// #   async fn cleanup(&self, _: &str) -> Result<(), flextide_queue_core::QueueError> { Ok(()) }
/// # }
/// fn main() -> std::process::ExitCode {
///     flextide_queue_conformance::run("mybroker", || async { Connect::Ready(MyHarness) })
/// }
/// ```
///
/// `connect` runs once; when it reports the backend unconfigured or
/// unreachable, every case is shown as ignored with the reason, or, when
/// `FLEXTIDE_TEST_REQUIRE` names the backend, the run fails.
pub fn run<H, F, Fut>(backend: &'static str, connect: F) -> ExitCode
where
    H: Harness,
    F: FnOnce() -> Fut,
    Fut: Future<Output = Connect<H>>,
{
    run_cases(backend, all_cases(), connect)
}

/// Like [`run`], with a chosen list of cases (your own added to ours, say).
pub fn run_cases<H, F, Fut>(backend: &'static str, cases: Vec<Case>, connect: F) -> ExitCode
where
    H: Harness,
    F: FnOnce() -> Fut,
    Fut: Future<Output = Connect<H>>,
{
    let mut args = Arguments::from_args();
    // Cases mostly wait on I/O and timers: run more of them than there are cores.
    args.test_threads.get_or_insert(4);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");

    let connected = runtime.block_on(async {
        match tokio::time::timeout(CONNECT_TIMEOUT, connect()).await {
            Ok(c) => c,
            Err(_) => Connect::Failed(format!(
                "connecting took longer than {} s",
                CONNECT_TIMEOUT.as_secs()
            )),
        }
    });
    let harness: Arc<dyn Harness> = match connected {
        Connect::Ready(h) => Arc::new(h),
        Connect::NotConfigured(why) | Connect::Failed(why) => {
            return unavailable(backend, &args, cases, why);
        }
    };
    let capabilities = match runtime.block_on(probe(&harness)) {
        Ok(c) => c,
        Err(why) => {
            runtime.block_on(async move { drop(harness) });
            return unavailable(backend, &args, cases, why);
        }
    };
    eprintln!("flextide-conformance: backend {backend}: {capabilities:?}");

    let settings = harness.settings();
    let trials = cases
        .into_iter()
        .map(|case| {
            if let Some(reason) = (case.needs)(&capabilities, &settings) {
                return Trial::ignorable_test(case.name, move || {
                    Ok(Completion::ignored_with(reason))
                })
                .with_kind(backend);
            }
            let harness = harness.clone();
            let handle = runtime.handle().clone();
            Trial::test(case.name, move || {
                handle.block_on(async move {
                    let ctx = Ctx::new(harness, capabilities, case.name);
                    let outcome = tokio::time::timeout(CASE_TIMEOUT, (case.run)(&ctx)).await;
                    let cleaned = ctx.cleanup().await;
                    match outcome {
                        Err(_) => Err(Failed::from(format!(
                            "case did not finish within {CASE_TIMEOUT:?}"
                        ))),
                        Ok(Err(e)) => Err(Failed::from(e.0)),
                        Ok(Ok(())) => cleaned.map_err(|e| Failed::from(e.0)),
                    }
                })
            })
            .with_kind(backend)
        })
        .collect();
    let conclusion = libtest_mimic::run(&args, trials);
    let code = conclusion.exit_code();
    // The harness may hold a container (`locate`), whose drop removes it
    // with the runtime it finds: drop it inside ours, before it shuts down,
    // or the container is left running and the drop panics.
    runtime.block_on(async move { drop(harness) });
    runtime.shutdown_timeout(Duration::from_secs(5));
    code
}

/// Reads the capabilities from a throw-away queue.
async fn probe(harness: &Arc<dyn Harness>) -> Result<Capabilities, String> {
    let name = unique_queue_name("probe");
    let queue = harness
        .open(&name, QueueOptions::default())
        .await
        .map_err(|e| format!("opening a queue failed: {e}"))?;
    let capabilities = queue.capabilities();
    drop(queue);
    harness
        .cleanup(&name)
        .await
        .map_err(|e| format!("cleaning up a queue failed: {e}"))?;
    Ok(capabilities)
}

/// The backend cannot be used: skip every case, or fail if it is required.
fn unavailable(backend: &'static str, args: &Arguments, cases: Vec<Case>, why: String) -> ExitCode {
    if is_required(backend) {
        eprintln!(
            "flextide-conformance: backend {backend} is required (FLEXTIDE_TEST_REQUIRE) but unavailable: {why}"
        );
        let trial = Trial::test(format!("{backend}::connect"), move || {
            Err(Failed::from(format!(
                "backend {backend} is required but unavailable: {why}"
            )))
        });
        return libtest_mimic::run(args, vec![trial]).exit_code();
    }
    eprintln!("flextide-conformance: backend {backend} skipped: {why}");
    let reason = format!("skipped: {backend} unavailable");
    let trials = cases
        .into_iter()
        .map(|case| {
            let reason = reason.clone();
            Trial::ignorable_test(case.name, move || Ok(Completion::ignored_with(reason)))
                .with_kind(backend)
        })
        .collect();
    libtest_mimic::run(args, trials).exit_code()
}
