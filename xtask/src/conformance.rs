//! `cargo xtask conformance`: the suite per backend, summed up in a table.

use std::collections::BTreeMap;

use crate::util::{cargo, run_tee};

/// One backend's package and its conformance test targets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Backend {
    pub(crate) name: String,
    pub(crate) package: String,
    pub(crate) tests: Vec<String>,
}

/// Every backend of the workspace, found by the layout rule instead of a
/// list kept here: a crate `crates/flextide-queue-<name>` with a test target
/// `tests/conformance*.rs` (each is one run of the suite).
pub(crate) fn backends() -> Vec<Backend> {
    let crates = crate::util::project_root().join("crates");
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(&crates) else {
        return found;
    };
    for entry in entries.flatten() {
        let package = entry.file_name().to_string_lossy().into_owned();
        let Some(name) = package.strip_prefix("flextide-queue-") else {
            continue;
        };
        let mut tests: Vec<String> = std::fs::read_dir(entry.path().join("tests"))
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|t| {
                let file = t.file_name().to_string_lossy().into_owned();
                let stem = file.strip_suffix(".rs")?;
                stem.starts_with("conformance").then(|| stem.to_owned())
            })
            .collect();
        if tests.is_empty() {
            continue;
        }
        tests.sort();
        found.push(Backend {
            name: name.to_owned(),
            package,
            tests,
        });
    }
    found.sort_by(|a, b| a.name.cmp(&b.name));
    found
}

/// Counts of one backend's trials.
#[derive(Debug, Default, Clone)]
pub(crate) struct Counts {
    pub(crate) passed: u32,
    pub(crate) failed: u32,
    pub(crate) ignored: u32,
    pub(crate) skipped: u32,
}

pub(crate) fn run(args: &[String]) -> Result<(), String> {
    let mut wanted = Vec::new();
    let mut containers = false;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--backend" | "-b" => wanted.push(it.next().ok_or("--backend needs a name")?.clone()),
            "--containers" => containers = true,
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    let mut all = backends();
    if containers {
        all = with_containers(all);
    }
    if let Some(unknown) = wanted.iter().find(|w| !all.iter().any(|b| &b.name == *w)) {
        let names: Vec<&str> = all.iter().map(|b| b.name.as_str()).collect();
        return Err(format!(
            "unknown backend `{unknown}`; the workspace has: {}",
            names.join(", ")
        ));
    }
    let selected: Vec<_> = all
        .into_iter()
        .filter(|b| wanted.is_empty() || wanted.contains(&b.name))
        .collect();
    let mut output = String::new();
    let mut ok = true;
    if containers {
        let (success, text) = run_tee(container_run(&selected), &container_what(&selected))?;
        ok &= success;
        output.push_str(&text);
    } else {
        for Backend {
            name,
            package,
            tests,
        } in selected
        {
            let mut cmd = cargo();
            cmd.args(["test", "-p", &package]);
            for t in &tests {
                cmd.args(["--test", t]);
            }
            cmd.args(["--", "--color", "never"]);
            let (success, text) = run_tee(cmd, &format!("conformance: {name}"))?;
            ok &= success;
            output.push_str(&text);
        }
    }
    let table = parse(&output);
    print_table(&table);
    if ok && table.values().all(|c| c.failed == 0) {
        Ok(())
    } else {
        Err("conformance failed".into())
    }
}

/// The backends whose suite can start its server in a container (their
/// crate has a `testcontainers` feature), each with only its main
/// `conformance` target: the others need servers a container does not give
/// (NATS with message schedules) or none at all.
fn with_containers(all: Vec<Backend>) -> Vec<Backend> {
    let crates = crate::util::project_root().join("crates");
    all.into_iter()
        .filter(|b| {
            std::fs::read_to_string(crates.join(&b.package).join("Cargo.toml"))
                .is_ok_and(|manifest| has_testcontainers_feature(&manifest))
        })
        .map(|b| Backend {
            tests: vec!["conformance".to_owned()],
            ..b
        })
        .collect()
}

fn has_testcontainers_feature(manifest: &str) -> bool {
    manifest
        .lines()
        .any(|line| line.trim_start().starts_with("testcontainers = ["))
}

/// One `cargo test` over every selected backend's `conformance` target
/// through the container path: each crate's `testcontainers` feature on (in
/// one build, so the Docker client is compiled once, not once per
/// backend's feature set), no server URL in the environment (so `locate`
/// starts a container), and the backends required, so a container that
/// cannot start fails the run instead of skipping it.
fn container_run(selected: &[Backend]) -> std::process::Command {
    let mut cmd = cargo();
    cmd.arg("test");
    let mut features = Vec::new();
    for b in selected {
        cmd.args(["-p", &b.package]);
        features.push(format!("{}/testcontainers", b.package));
    }
    cmd.args(["--features", &features.join(",")]);
    cmd.args([
        "--test",
        "conformance",
        "--no-fail-fast",
        "--",
        "--color",
        "never",
    ]);
    for (var, _) in std::env::vars() {
        if var.starts_with("FLEXTIDE_TEST_") && var.ends_with("_URL") {
            cmd.env_remove(var);
        }
    }
    let names: Vec<&str> = selected.iter().map(|b| b.name.as_str()).collect();
    cmd.env("FLEXTIDE_TEST_REQUIRE", names.join(","));
    cmd
}

fn container_what(selected: &[Backend]) -> String {
    let names: Vec<&str> = selected.iter().map(|b| b.name.as_str()).collect();
    format!(
        "conformance: {}, each server in a container (testcontainers)",
        names.join(", ")
    )
}

/// Reads trial lines (`test [backend] group::case ... ok`) and skip notices
/// out of libtest output.
pub(crate) fn parse(output: &str) -> BTreeMap<String, Counts> {
    let mut table: BTreeMap<String, Counts> = BTreeMap::new();
    for line in output.lines() {
        let Some(rest) = line.strip_prefix("test [") else {
            continue;
        };
        let Some((backend, rest)) = rest.split_once("] ") else {
            continue;
        };
        let counts = table.entry(backend.to_owned()).or_default();
        if rest.ends_with("... ok") {
            counts.passed += 1;
        } else if rest.contains("... FAILED") {
            counts.failed += 1;
        } else if rest.contains("... ignored") {
            if rest.contains("(skipped:") {
                counts.skipped += 1
            } else {
                counts.ignored += 1
            }
        }
    }
    // A required backend that was unavailable shows as one failed `connect` trial.
    for line in output.lines() {
        if let Some(rest) = line.strip_prefix("test ")
            && let Some((name, outcome)) = rest.split_once("::connect ... ")
            && !name.starts_with('[')
            && outcome.starts_with("FAILED")
        {
            table.entry(name.to_owned()).or_default().failed += 1;
        }
    }
    table
}

pub(crate) fn print_table(table: &BTreeMap<String, Counts>) {
    println!("\nConformance");
    println!("| backend | passed | failed | ignored | skipped |");
    println!("|---|---:|---:|---:|---:|");
    for (backend, c) in table {
        println!(
            "| {backend} | {} | {} | {} | {} |",
            c.passed, c.failed, c.ignored, c.skipped
        );
    }
    if table.is_empty() {
        println!("| (no conformance trials ran) | | | | |");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_trials() {
        let out = "test [memory] basic::a ... ok\ntest [memory] lease::b ... FAILED\n\
                   test [sqs] fencing::c ... ignored (needs fenced_receipts)\n\
                   test [redis] basic::a ... ignored (skipped: redis unavailable)\n\
                   test postgres::connect ... FAILED\n";
        let t = parse(out);
        assert_eq!((t["memory"].passed, t["memory"].failed), (1, 1));
        assert_eq!(t["sqs"].ignored, 1);
        assert_eq!(t["redis"].skipped, 1);
        assert_eq!(t["postgres"].failed, 1);
    }

    #[test]
    fn container_backends_are_those_with_the_feature() {
        let names: Vec<String> = with_containers(backends())
            .into_iter()
            .map(|b| {
                assert_eq!(b.tests, ["conformance"], "{}", b.name);
                b.name
            })
            .collect();
        for name in ["postgres", "mysql", "redis", "rabbitmq", "nats"] {
            assert!(names.iter().any(|n| n == name), "{name} in {names:?}");
        }
        for name in ["memory", "sqlite", "sqs"] {
            assert!(!names.iter().any(|n| n == name), "{name} in {names:?}");
        }
        assert!(has_testcontainers_feature(
            "[features]\ntestcontainers = [\"x/testcontainers\"]\n"
        ));
        assert!(!has_testcontainers_feature(
            "[dependencies]\ntestcontainers = \"0.27\"\n"
        ));
    }

    #[test]
    fn finds_the_backends_by_layout() {
        let all = backends();
        let sqlite = all.iter().find(|b| b.name == "sqlite").unwrap();
        assert_eq!(sqlite.package, "flextide-queue-sqlite");
        assert_eq!(sqlite.tests, ["conformance", "conformance_memory"]);
        for name in ["memory", "postgres", "mysql", "redis", "rabbitmq", "sqs"] {
            assert!(all.iter().any(|b| b.name == name), "{name}");
        }
        assert!(
            !all.iter()
                .any(|b| b.name == "core" || b.name == "conformance")
        );
    }
}
