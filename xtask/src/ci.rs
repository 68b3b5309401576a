//! `cargo xtask ci`: everything CI checks, in the order that fails fastest.

use crate::{
    conformance::{parse, print_table},
    util::{cargo, run_tee, step},
};

/// The command's every backend, so its end-to-end tests against servers
/// (`tests/sqs.rs`, …) are built and run. It adds no compile: the bench
/// already turns on every backend of the facade in a workspace build.
const CLI_FEATURES: &str = "flextide-cli/full";

pub(crate) fn run(args: &[String]) -> Result<(), String> {
    if let Some(a) = args.first() {
        return Err(format!("unknown argument `{a}`"));
    }
    let mut fmt = cargo();
    fmt.args(["fmt", "--all", "--check"]);
    step(fmt, "cargo fmt --check")?;

    let mut clippy = cargo();
    clippy.args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--features",
        CLI_FEATURES,
        "--",
        "-D",
        "warnings",
    ]);
    step(clippy, "cargo clippy -D warnings")?;

    // The container fallback of the suite is off by default: check it compiles.
    let mut containers = cargo();
    containers.args([
        "clippy",
        "-p",
        "flextide-queue-conformance",
        "--features",
        "testcontainers",
        "--",
        "-D",
        "warnings",
    ]);
    step(containers, "cargo clippy (conformance with testcontainers)")?;

    // One test run over every target: unit, integration, doc and conformance.
    let mut test = cargo();
    test.args([
        "test",
        "--workspace",
        "--all-targets",
        "--features",
        CLI_FEATURES,
        "--no-fail-fast",
        "--",
        "--color",
        "never",
    ]);
    let (tests_ok, output) = run_tee(test, "cargo test (all targets, conformance included)")?;
    let mut doctest = cargo();
    doctest.args(["test", "--workspace", "--doc"]);
    let doc_ok = step(doctest, "cargo test --doc");
    let table = parse(&output);
    print_table(&table);
    if !tests_ok {
        return Err("tests failed".into());
    }
    doc_ok?;

    let mut doc = cargo();
    doc.args(["doc", "--workspace", "--no-deps"])
        .env("RUSTDOCFLAGS", "-D warnings");
    step(doc, "cargo doc -D warnings")?;

    let mut package = cargo();
    package.args([
        "package",
        "--workspace",
        "--no-verify",
        "--allow-dirty",
        "--exclude",
        "xtask",
        "--exclude",
        "flextide-bench",
        "--exclude",
        "flextide-chaos",
        "--exclude",
        "flextide-test-servers",
    ]);
    step(package, "cargo package --no-verify")?;
    println!("\nxtask ci: all checks passed");
    Ok(())
}
