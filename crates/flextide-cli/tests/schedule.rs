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

/// Two `flextide schedule run` processes share a Redis `--lock` over a
/// queue without dedup (the default SQLite, until SQL dedup lands; with it
/// the lock still gates): every one-second slot is pushed once. Needs
/// `FLEXTIDE_TEST_REDIS_URL` (skipped without it unless
/// `FLEXTIDE_TEST_REQUIRE` names redis or all).
#[cfg(feature = "schedule-lock")]
#[test]
fn two_processes_behind_one_lock_push_each_slot_once() {
    use std::collections::BTreeSet;
    use std::io::{BufRead, BufReader, Read};
    use std::process::Stdio;
    use std::time::{Duration, Instant};

    let Some(url) = std::env::var("FLEXTIDE_TEST_REDIS_URL")
        .ok()
        .filter(|u| !u.trim().is_empty())
    else {
        let required = std::env::var("FLEXTIDE_TEST_REQUIRE").unwrap_or_default();
        assert!(
            !required
                .split(',')
                .any(|r| r.trim() == "all" || r.trim() == "redis"),
            "FLEXTIDE_TEST_REQUIRE names redis but FLEXTIDE_TEST_REDIS_URL is unset"
        );
        eprintln!("skipped: set FLEXTIDE_TEST_REDIS_URL to run it");
        return;
    };
    let s = Scratch::new("schedule-lock");
    s.ok(&["migrate"]);
    // A name of this run: the lock's key is `<queue>/<name>`.
    let name = format!("tick-{}-{}", std::process::id(), rand_suffix());
    std::fs::write(
        s.dir.join("schedules.toml"),
        format!("[[schedule]]\nname = \"{name}\"\ncron = \"* * * * * *\"\npayload = \"x\"\n"),
    )
    .unwrap();
    let mut children: Vec<_> = (0..2)
        .map(|_| {
            let mut child = s
                .flextide(&[
                    "schedule",
                    "run",
                    "--file",
                    "schedules.toml",
                    "--lock",
                    &url,
                ])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            let mut err = BufReader::new(child.stderr.take().unwrap());
            let mut first = String::new();
            err.read_line(&mut first).unwrap();
            assert!(first.contains("pushing the slots"), "{first}");
            (child, err)
        })
        .collect();
    // The first tick pushes the slots of the last minute (the grace); wait
    // for a few more, generously.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let stats = s.ok(&["stats"]);
        if common::field(&stats, "ready") >= 64 {
            break;
        }
        assert!(Instant::now() < deadline, "no slots pushed: {stats}");
        std::thread::sleep(Duration::from_millis(200));
    }
    let mut enqueued = 0;
    for (child, mut err) in children.drain(..) {
        let pid = child.id().to_string();
        assert!(
            std::process::Command::new("kill")
                .args(["-TERM", &pid])
                .status()
                .unwrap()
                .success()
        );
        let out = child.wait_with_output().unwrap();
        let mut rest = String::new();
        err.read_to_string(&mut rest).unwrap();
        assert!(out.status.success(), "{rest}");
        let summary = String::from_utf8(out.stdout).unwrap();
        let n: u64 = summary
            .split_whitespace()
            .nth(1)
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no count in {summary:?}"));
        enqueued += n;
    }
    let peek = s.ok(&["peek", "-n", "100000"]);
    let slots: Vec<String> = peek
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["headers"]["flextide-schedule-slot"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    let unique: BTreeSet<&String> = slots.iter().collect();
    assert_eq!(unique.len(), slots.len(), "a slot pushed twice");
    assert_eq!(slots.len() as u64, enqueued);
    // Leave no lock state behind (best effort).
    let _ = std::process::Command::new("redis-cli")
        .args(["-u", &url, "DEL"])
        .arg(format!("flextide-schedule:{{flextide-tasks/{name}}}:lock"))
        .arg(format!("flextide-schedule:{{flextide-tasks/{name}}}:state"))
        .output();
}

#[cfg(feature = "schedule-lock")]
fn rand_suffix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64
}
