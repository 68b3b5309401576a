//! `flextide schedule list | run` end to end.

mod common;

use common::Scratch;

const FILE: &str = r#"
[[schedule]]
name = "nightly-report"
cron = "0 30 2 * * *"
time_zone = "Europe/Berlin"
queue = "reports"
payload = '{"report":"daily"}'
headers = { content-type = "application/json" }
missed = "run-once"

[[schedule]]
name = "sweep"
cron = "*/10 * * * * *"
missed = "catch-up"
max_missed = 5
"#;

#[test]
fn list_prints_each_schedule_and_its_next_runs() {
    let s = Scratch::new("schedule-list");
    std::fs::write(s.dir.join("schedules.toml"), FILE).unwrap();
    let out = s.ok(&[
        "schedule",
        "list",
        "--file",
        "schedules.toml",
        "--next",
        "2",
    ]);
    assert!(out.contains("nightly-report"), "{out}");
    assert!(out.contains("time zone  Europe/Berlin"), "{out}");
    assert!(out.contains("missed     run once"), "{out}");
    assert!(out.contains("catch up (at most 5)"), "{out}");
    let next: Vec<&str> = out
        .lines()
        .filter(|l| l.trim_start().starts_with("next"))
        .collect();
    assert_eq!(next.len(), 4, "{out}");
    // 02:30 in Berlin, shown in the zone and in UTC.
    assert!(
        next[0].contains("T02:30:00+0") && next[0].contains("[Europe/Berlin]"),
        "{out}"
    );
    // The file may also come from FLEXTIDE_SCHEDULES.
    let by_env = s
        .flextide(&["schedule", "list", "-n", "2"])
        .env("FLEXTIDE_SCHEDULES", "schedules.toml")
        .output()
        .unwrap();
    assert!(by_env.status.success());
    assert!(String::from_utf8_lossy(&by_env.stdout).contains("sweep"));
}

#[test]
fn bad_files_are_clear_errors() {
    let s = Scratch::new("schedule-bad");
    for (text, says) in [
        (
            "[[schedule]]\nname = \"a\"\ncron = \"61 * * * *\"\n",
            "bad cron expression",
        ),
        (
            "[[schedule]]\nname = \"a\"\ncron = \"* * * * *\"\ntime_zone = \"Mars/Olympus\"\n",
            "unknown time zone",
        ),
        (
            "[[schedule]]\nname = \"a\"\ncron = \"* * * * *\"\nmissed = \"sometimes\"\n",
            "unknown variant",
        ),
        (
            "[[schedule]]\nname = \"a\"\ncron = \"* * * * *\"\nmax_missed = 3\n",
            "max_missed",
        ),
        ("x = 1\n", "unknown field"),
    ] {
        std::fs::write(s.dir.join("bad.toml"), text).unwrap();
        let out = s.run(&["schedule", "list", "--file", "bad.toml"]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains(says), "{text}: {err}");
    }
}

/// On a backend without dedup `schedule run` refuses to start (two hosts
/// would push every slot twice); on one with dedup it runs until SIGTERM and
/// prints what it pushed. The default SQLite backend is the first kind
/// until SQL dedup lands, the second after: the test accepts either, each
/// checked in full.
#[test]
fn run_refuses_a_backend_without_dedup_or_stops_on_sigterm() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;

    let s = Scratch::new("schedule-run");
    std::fs::write(s.dir.join("schedules.toml"), FILE).unwrap();
    let mut child = s
        .flextide(&["schedule", "run", "--file", "schedules.toml"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut first = String::new();
    stderr.read_line(&mut first).unwrap();
    if first.contains("pushing the slots") {
        let pid = child.id().to_string();
        assert!(
            std::process::Command::new("kill")
                .args(["-TERM", &pid])
                .status()
                .unwrap()
                .success()
        );
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{first}");
        assert!(String::from_utf8_lossy(&out.stdout).contains("enqueued"));
    } else {
        let mut rest = String::new();
        std::io::Read::read_to_string(&mut stderr, &mut rest).unwrap();
        let status = child.wait().unwrap();
        let err = first + &rest;
        assert!(
            !status.success() && err.contains("does not deduplicate"),
            "{err}"
        );
    }
}
