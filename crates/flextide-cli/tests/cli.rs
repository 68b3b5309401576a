//! The `flextide` program end to end, on a temporary SQLite file.

mod common;

use std::process::Command;

use common::{Scratch, field};

#[test]
fn demo_runs_on_the_embedded_default() {
    let s = Scratch::new("demo");
    let out = s.ok(&["demo", "--tasks", "300", "--seed", "3"]);
    assert!(out.contains("completed"), "{out}");
    let completed = field(&out, "  completed");
    let line = out
        .lines()
        .find(|l| l.trim_start().starts_with("dead-lettered"))
        .unwrap();
    let dead: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    let expected: u64 = line
        .split("expected ")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(dead, expected, "{out}");
    assert_eq!(completed + dead, 300, "{out}");
    assert!(out.contains("dead letters by reason"), "{out}");
    // Everything settled: nothing ready or in flight, the dead letters kept.
    let stats = s.ok(&["stats", "--queue", "flextide-demo"]);
    assert_eq!(field(&stats, "ready"), 0, "{stats}");
    assert_eq!(field(&stats, "in flight"), 0, "{stats}");
    assert_eq!(field(&stats, "dead letters"), dead, "{stats}");
}

#[test]
fn push_pop_and_stats() {
    let s = Scratch::new("pushpop");
    s.ok(&["push", "--queue", "q1", "one"]);
    s.ok(&["push", "--queue", "q1", "--json", r#"{"step":2}"#]);
    s.ok(&["push", "--queue", "q1", "--priority", "9", "urgent"]);
    assert_eq!(field(&s.ok(&["stats", "--queue", "q1"]), "ready"), 3);
    let popped = s.ok(&["pop", "--queue", "q1", "-n", "2", "--wait", "1"]);
    let lines: Vec<serde_json::Value> = popped
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "{popped}");
    assert_eq!(lines[0]["payload"], "urgent", "priority first: {popped}");
    assert_eq!(lines[1]["payload"], "one");
    assert_eq!(field(&s.ok(&["stats", "--queue", "q1"]), "ready"), 1);
    // --keep gives it back.
    s.ok(&["pop", "--queue", "q1", "--keep"]);
    assert_eq!(field(&s.ok(&["stats", "--queue", "q1"]), "ready"), 1);
    let out = s.run(&["pop", "--queue", "empty", "--wait", "0.2"]);
    assert_eq!(out.status.code(), Some(3), "an empty queue exits with 3");
}

#[test]
fn work_exec_decides_by_exit_code_and_dead_letters_replay() {
    let s = Scratch::new("work");
    s.ok(&["push", "--queue", "jobs", "good"]);
    s.ok(&["push", "--queue", "jobs", "bad"]);
    s.ok(&["push", "--queue", "jobs", "flaky"]);
    // good: ok; bad: EX_DATAERR, dead-lettered at once; flaky: fails on its first attempt only.
    let script = r#"x=$(cat); case "$x" in good) exit 0;; bad) echo "cannot parse $x" >&2; exit 65;; flaky) [ "$FLEXTIDE_ATTEMPT" -ge 2 ] || exit 1;; esac"#;
    let out = s.ok(&[
        "work",
        "--queue",
        "jobs",
        "--exec",
        script,
        "--backoff",
        "0.05",
        "--until-idle",
        "1",
    ]);
    assert!(out.contains("processed 2"), "{out}");
    assert!(out.contains("dead-lettered 1"), "{out}");
    let dead = s.ok(&["dlq", "list", "--queue", "jobs"]);
    let dead: serde_json::Value = serde_json::from_str(dead.lines().next().unwrap()).unwrap();
    assert_eq!(dead["payload"], "bad");
    assert!(
        dead["reason"].as_str().unwrap().contains("status 65"),
        "{dead}"
    );
    assert!(
        dead["reason"]
            .as_str()
            .unwrap()
            .contains("cannot parse bad"),
        "{dead}"
    );
    assert!(
        s.ok(&["dlq", "replay", "--queue", "jobs", "--all"])
            .contains("replayed 1")
    );
    let stats = s.ok(&["stats", "--queue", "jobs"]);
    assert_eq!(
        (field(&stats, "ready"), field(&stats, "dead letters")),
        (1, 0),
        "{stats}"
    );
    assert!(
        !s.run(&["dlq", "purge", "--queue", "jobs"]).status.success(),
        "purge needs --yes"
    );
}

#[test]
fn bad_input_is_refused_clearly_without_secrets() {
    let s = Scratch::new("bad");
    let out = s
        .flextide(&["stats"])
        .env("QUEUE_PROVIDER", "pulsar")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("QUEUE_PROVIDER"));

    let out = s.run(&["push", "--queue", "no spaces allowed", "x"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid queue name"));

    let out = s.run(&["push", "--delay", "-1", "x"]);
    assert!(!out.status.success());

    let out = s.run(&["push", "--json", "{not json"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not valid JSON"));

    let out = s
        .flextide(&["stats"])
        .env("DATABASE_URL", "oracle://scott:tiger@db:1521/x")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("DATABASE_URL") && !err.contains("tiger"),
        "{err}"
    );
}

#[test]
fn pop_into_a_closed_pipe_gives_the_messages_back() {
    let s = Scratch::new("pipe");
    for p in ["a", "b", "c"] {
        s.ok(&["push", "--queue", "p", p]);
    }
    // The reader is gone before anything is written (like `| head -0`):
    // no panic, and every popped message is visible again at once.
    let mut child = s
        .flextide(&["pop", "--queue", "p", "-n", "3", "--wait", "2"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "exit {:?}: {err}", out.status.code());
    assert!(!err.contains("panicked"), "{err}");
    let stats = s.ok(&["stats", "--queue", "p"]);
    assert_eq!(
        (field(&stats, "ready"), field(&stats, "in flight")),
        (3, 0),
        "{stats}"
    );
}

#[test]
fn dlq_delete_removes_the_chosen_and_says_how_many() {
    let s = Scratch::new("dldelete");
    s.ok(&["push", "--queue", "d", "one"]);
    s.ok(&["push", "--queue", "d", "two"]);
    s.ok(&[
        "work",
        "--queue",
        "d",
        "--exec",
        "exit 65",
        "--until-idle",
        "1",
    ]);
    let ids: Vec<String> = s
        .ok(&["dlq", "list", "--queue", "d"])
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["id"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(ids.len(), 2, "{ids:?}");
    let out = s.run(&["dlq", "delete", "--queue", "d", &ids[0], "no-such-id"]);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(!out.status.success(), "an unknown id fails: {stderr}");
    assert!(stdout.contains("deleted 1 dead letters from d"), "{stdout}");
    assert!(stderr.contains("1 of the ids were not"), "{stderr}");
    let left = s.ok(&["dlq", "list", "--queue", "d"]);
    assert!(!left.contains(&ids[0]) && left.contains(&ids[1]), "{left}");
    assert!(
        s.ok(&["dlq", "delete", "--queue", "d", &ids[1]])
            .contains("deleted 1")
    );
    assert!(
        !s.run(&["dlq", "delete", "--queue", "d"]).status.success(),
        "delete needs an id"
    );
}

#[test]
fn replaying_unknown_ids_says_which_and_fails() {
    let s = Scratch::new("replay");
    let out = s.run(&["dlq", "replay", "--queue", "r", "--id", "no-such-id"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("no-such-id"), "{err}");
}

#[test]
fn push_reads_input_carefully() {
    let s = Scratch::new("input");
    // Nothing on standard input is a mistake, not an empty message.
    let out = s
        .flextide(&["push", "--queue", "i"])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("standard input"));
    // Windows line ends do not end up in the payloads.
    let mut child = s
        .flextide(&["push", "--queue", "i", "--lines", "--ids"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"one\r\ntwo\r\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 2);
    let popped = s.ok(&["pop", "--queue", "i", "-n", "2"]);
    let payloads: Vec<String> = popped
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["payload"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(payloads, ["one", "two"]);
}

#[test]
fn queue_flag_wins_over_a_bad_queue_name_and_memory_is_refused_for_one_shots() {
    let s = Scratch::new("names");
    let out = s
        .flextide(&["push", "--queue", "good", "x"])
        .env("QUEUE_NAME", "bad name")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = s
        .flextide(&["push", "x"])
        .env("QUEUE_PROVIDER", "memory")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("gone when it exits"));
}

#[test]
fn stats_as_json_and_peek_spend_no_attempt() {
    let s = Scratch::new("peek");
    s.ok(&["push", "--queue", "k", "hello"]);
    for _ in 0..3 {
        let peeked = s.ok(&["peek", "--queue", "k"]);
        assert!(peeked.contains("hello"), "{peeked}");
    }
    let stats: serde_json::Value =
        serde_json::from_str(s.ok(&["stats", "--queue", "k", "--json"]).trim()).unwrap();
    assert_eq!(stats["ready"], 1);
    assert_eq!(stats["in_flight"], 0);
    let popped: serde_json::Value =
        serde_json::from_str(s.ok(&["pop", "--queue", "k"]).trim()).unwrap();
    assert_eq!(popped["attempt"], 1, "peeking spent no attempt");
    assert!(
        !s.run(&["purge", "--queue", "k"]).status.success(),
        "purge needs --yes"
    );
}

#[test]
fn work_refuses_a_missing_command_before_taking_anything() {
    let s = Scratch::new("missing");
    s.ok(&["push", "--queue", "m", "x"]);
    let out = s.run(&["work", "--queue", "m", "--exec", "handlr.sh --flag"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("handlr.sh"), "{err}");
    let stats = s.ok(&["stats", "--queue", "m"]);
    assert_eq!(
        (field(&stats, "ready"), field(&stats, "dead letters")),
        (1, 0),
        "{stats}"
    );
    // A command that turns out not to run (127) stops the worker, and the
    // message is not dead-lettered for it.
    let out = s.run(&[
        "work",
        "--queue",
        "m",
        "--grace",
        "0",
        "--exec",
        "x=1; no_such_program_here",
    ]);
    assert!(!out.status.success());
    let stats = s.ok(&["stats", "--queue", "m"]);
    assert_eq!(field(&stats, "dead letters"), 0, "{stats}");
}

/// Whether the process `pid` still runs.
fn alive(pid: &str) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|st| st.contains(") Z "))
}

fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !cond() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[cfg(unix)]
#[test]
fn a_timed_out_command_is_killed_with_everything_it_started() {
    let s = Scratch::new("timeout");
    s.ok(&["push", "--queue", "t", "x"]);
    let pidfile = s.dir.join("pid");
    // `sh -c` forks `sleep`: killing only the shell would leave it running.
    let cmd = format!("sleep 300 & echo $! > {}; wait", pidfile.display());
    let out = s.ok(&[
        "work",
        "--queue",
        "t",
        "--exec",
        &cmd,
        "--timeout",
        "1",
        "--max-attempts",
        "1",
        "--until-idle",
        "1",
    ]);
    assert!(out.contains("dead-lettered 1"), "{out}");
    let pid = std::fs::read_to_string(&pidfile).unwrap().trim().to_owned();
    wait_until("the timed-out command's child to be gone", || !alive(&pid));
}

#[cfg(unix)]
#[test]
fn ctrl_c_stops_commands_gives_their_messages_back_and_exits_130() {
    let s = Scratch::new("sigint");
    s.ok(&["push", "--queue", "c", "x"]);
    let pidfile = s.dir.join("pid");
    let cmd = format!("sleep 300 & echo $! > {}; wait", pidfile.display());
    let child = s
        .flextide(&["work", "--queue", "c", "--exec", &cmd, "--grace", "1"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_until("the command to start", || {
        std::fs::read_to_string(&pidfile).is_ok_and(|p| !p.trim().is_empty())
    });
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(130),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pid = std::fs::read_to_string(&pidfile).unwrap().trim().to_owned();
    wait_until("the command's child to be gone", || !alive(&pid));
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        report.contains("failed 0"),
        "a stopped command is not a failure: {report}"
    );
    let stats = s.ok(&["stats", "--queue", "c"]);
    assert_eq!(
        (
            field(&stats, "ready"),
            field(&stats, "in flight"),
            field(&stats, "dead letters")
        ),
        (1, 0, 0),
        "given back: {stats}"
    );
}

#[test]
fn pop_keep_four_times_counts_attempts_one_to_four() {
    let s = Scratch::new("keep");
    s.ok(&["push", "--queue", "kk", "again and again"]);
    for want in 1..=4 {
        let line: serde_json::Value =
            serde_json::from_str(s.ok(&["pop", "--queue", "kk", "--keep"]).trim()).unwrap();
        assert_eq!(line["attempt"], want, "{line}");
    }
}

#[test]
fn an_empty_queue_name_means_the_default_as_in_the_library() {
    let s = Scratch::new("empty-name");
    for blank in ["", " "] {
        let out = s
            .flextide(&["push", "x"])
            .env("QUEUE_NAME", blank)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // flextide_queue::DEFAULT_QUEUE_NAME.
    let stats = s.ok(&["stats", "--queue", "flextide-tasks"]);
    assert_eq!(field(&stats, "ready"), 2, "{stats}");
}
