//! The scratch directory every end-to-end test of the program runs in.

#![allow(dead_code, unreachable_pub)]

use std::{
    path::PathBuf,
    process::{Command, Output},
};

/// A scratch database removed when dropped.
pub struct Scratch {
    pub dir: PathBuf,
}

impl Scratch {
    pub fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("flextide-cli-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch { dir }
    }

    pub fn flextide(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_flextide"));
        for var in [
            "QUEUE_URL",
            "QUEUE_PROVIDER",
            "QUEUE_NAME",
            "REDIS_URL",
            "AMQP_URL",
            "SQS_QUEUE_URL",
            "RUST_LOG",
            "FLEXTIDE_SCHEDULES",
            "FLEXTIDE_SCHEDULE_LOCK",
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

    pub fn run(&self, args: &[&str]) -> Output {
        self.flextide(args).output().unwrap()
    }

    pub fn ok(&self, args: &[&str]) -> String {
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

pub fn field(stats: &str, name: &str) -> u64 {
    let line = stats
        .lines()
        .find(|l| l.starts_with(name))
        .unwrap_or_else(|| panic!("no {name} in {stats}"));
    line.split_whitespace().last().unwrap().parse().unwrap()
}
