//! The agent processes of one run (this same binary, `produce` and
//! `consume`): spawning, killing and replacing them. Dropping [`Agents`]
//! SIGKILLs every one still running, by its pid, also on failure.

use std::{
    fs::File,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use nix::{
    sys::signal::{Signal, kill},
    unistd::Pid,
};
use rand::Rng;

/// Running agents and what happened to them.
#[derive(Debug)]
pub(crate) struct Agents {
    exe: PathBuf,
    dir: PathBuf,
    target: Vec<String>,
    worker_args: Vec<String>,
    workers: Vec<Child>,
    producers: Vec<(u64, Child)>,
    spawned: usize,
    /// Workers SIGKILLed by the run.
    pub kills: u64,
    /// Workers that exited without being killed, with their status.
    pub exits: Vec<String>,
}

impl Agents {
    /// No agents yet; `target` are the queue arguments every agent gets,
    /// `worker_args` those of every consumer.
    pub(crate) fn new(
        dir: &Path,
        target: Vec<String>,
        worker_args: Vec<String>,
    ) -> Result<Self, String> {
        Ok(Agents {
            exe: std::env::current_exe().map_err(|e| format!("where is this program? {e}"))?,
            dir: dir.to_owned(),
            target,
            worker_args,
            workers: Vec::new(),
            producers: Vec::new(),
            spawned: 0,
            kills: 0,
            exits: Vec::new(),
        })
    }

    fn spawn(&mut self, role: &str, args: &[String]) -> Result<Child, String> {
        self.spawned += 1;
        let log = self.dir.join(format!("agent-{role}-{}.log", self.spawned));
        let out = File::create(&log).map_err(|e| format!("create {}: {e}", log.display()))?;
        let err = out
            .try_clone()
            .map_err(|e| format!("{}: {e}", log.display()))?;
        Command::new(&self.exe)
            .arg(role)
            .args(&self.target)
            .args(args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|e| format!("could not start a {role} agent: {e}"))
    }

    /// Starts one more worker, logging to a file of its own.
    pub(crate) fn add_worker(&mut self) -> Result<(), String> {
        let log = self.dir.join(format!("handled-{}", self.spawned + 1));
        let mut args = self.worker_args.clone();
        args.extend(["--handled".into(), log.display().to_string()]);
        let child = self.spawn("consume", &args)?;
        self.workers.push(child);
        Ok(())
    }

    /// Starts producer `n` with its own logs.
    pub(crate) fn add_producer(&mut self, n: u64, args: Vec<String>) -> Result<(), String> {
        let mut args = args;
        for (flag, name) in [("--acked", "acked"), ("--abandoned", "abandoned")] {
            args.extend([
                flag.into(),
                self.dir.join(format!("{name}-{n}")).display().to_string(),
            ]);
        }
        let child = self.spawn("produce", &args)?;
        self.producers.push((n, child));
        Ok(())
    }

    /// SIGKILLs a random worker and starts a replacement.
    pub(crate) fn kill_a_worker(&mut self) -> Result<(), String> {
        if self.workers.is_empty() {
            return Ok(());
        }
        let i = rand::rng().random_range(0..self.workers.len());
        let mut child = self.workers.swap_remove(i);
        let _ = child.kill();
        let _ = child.wait();
        self.kills += 1;
        self.add_worker()
    }

    /// Replaces workers that exited on their own, noting why.
    pub(crate) fn replace_exited_workers(&mut self) -> Result<(), String> {
        let mut i = 0;
        while i < self.workers.len() {
            if let Ok(Some(status)) = self.workers[i].try_wait() {
                // Already reaped by try_wait.
                drop(self.workers.swap_remove(i));
                self.exits.push(status.to_string());
                self.add_worker()?;
            } else {
                i += 1;
            }
        }
        Ok(())
    }

    /// Whether every producer has exited; fails if one failed.
    pub(crate) fn producers_done(&mut self) -> Result<bool, String> {
        let mut done = true;
        for (n, child) in &mut self.producers {
            match child.try_wait() {
                Ok(Some(status)) if !status.success() => {
                    return Err(format!(
                        "producer {n} failed ({status}); see its log in the run directory"
                    ));
                }
                Ok(Some(_)) => {}
                _ => done = false,
            }
        }
        Ok(done)
    }

    /// Stops workers gracefully (SIGTERM: they finish and acknowledge what
    /// they hold), SIGKILLing any still there after `grace`.
    pub(crate) fn stop_workers(&mut self, grace: Duration) {
        for child in &self.workers {
            let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
        }
        let deadline = Instant::now() + grace;
        for mut child in self.workers.drain(..) {
            while Instant::now() < deadline && matches!(child.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Agents {
    fn drop(&mut self) {
        let producers = self.producers.drain(..).map(|(_, c)| c);
        for mut child in self.workers.drain(..).chain(producers) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
