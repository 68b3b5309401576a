//! The `flextide` program end to end, on a temporary SQLite file.

use std::{
    path::PathBuf,
    process::{Command, Output},
};

/// A scratch database removed when dropped.
struct Scratch {
    dir: PathBuf,
}

impl Scratch {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("flextide-cli-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch { dir }
    }

    fn flextide(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_flextide"));
        for var in [
            "QUEUE_PROVIDER",
            "QUEUE_NAME",
            "REDIS_URL",
            "AMQP_URL",
            "SQS_QUEUE_URL",
            "RUST_LOG",
        ] {
            cmd.env_remove(var);
        }
        cmd.env(
            "DATABASE_URL",
            format!("sqlite://{}/queue.db?mode=rwc", self.dir.display()),
        );
        cmd.args(args).current_dir(&self.dir);
        cmd
    }

    fn run(&self, args: &[&str]) -> Output {
        self.flextide(args).output().unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "flextide {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn field(stats: &str, name: &str) -> u64 {
    let line = stats
        .lines()
        .find(|l| l.starts_with(name))
        .unwrap_or_else(|| panic!("no {name} in {stats}"));
    line.split_whitespace().last().unwrap().parse().unwrap()
}

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
        .env("QUEUE_PROVIDER", "kafka")
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
