//! Running the command of one message and reading its exit status.

use std::{
    pin::pin,
    process::Stdio,
    sync::{Arc, Mutex},
    time::Duration,
};

use flextide_worker::{HandlerError, Task};
use tokio::io::AsyncWriteExt;
use tokio_util::sync::CancellationToken;
use tracing::error;

use super::group::{Group, Running, Signal};
use crate::commands::Error;

/// Exit status meaning "this message is bad; do not retry" (sysexits' EX_DATAERR).
const EX_DATAERR: i32 = 65;
/// Exit statuses of a shell that could not run the command: found but not
/// executable (126), not found (127). A setup error, not a message's fault.
const CANNOT_RUN: [i32; 2] = [126, 127];

/// What every message's command shares.
#[derive(Debug)]
pub(crate) struct Exec {
    command: Arc<str>,
    grace: Duration,
    shutdown: CancellationToken,
    running: Running,
    setup_error: Mutex<Option<String>>,
}

impl Exec {
    pub(crate) fn new(command: &str, grace: Duration, shutdown: CancellationToken) -> Self {
        Exec {
            command: command.into(),
            grace,
            shutdown,
            running: Running::default(),
            setup_error: Mutex::new(None),
        }
    }

    /// The process groups of the commands running now.
    pub(crate) fn running(&self) -> Running {
        self.running.clone()
    }

    /// Why the worker stopped on a command that cannot run, if it did.
    pub(crate) fn setup_error(&self) -> Option<String> {
        self.setup_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Runs the command for one message; its exit status decides the outcome.
    pub(crate) async fn run(&self, task: Task) -> Result<(), HandlerError> {
        let mut cmd = tokio::process::Command::new("sh");
        cmd.arg("-c")
            .arg(&*self.command)
            .env("FLEXTIDE_MESSAGE_ID", task.id().as_str())
            .env("FLEXTIDE_ATTEMPT", task.attempt().to_string())
            .env("FLEXTIDE_QUEUE", task.queue())
            .stdin(Stdio::piped())
            .stdout(Stdio::inherit())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        // Its own process group: a terminal's Ctrl-C does not reach it (the
        // worker decides), and stopping it stops all it started.
        #[cfg(unix)]
        cmd.process_group(0);
        let mut child = cmd.spawn().map_err(|e| {
            HandlerError::retryable(format!("cannot start `sh -c {}`: {e}", self.command))
        })?;
        let mut group = child.id().map(|pgid| Group::new(pgid, &self.running));
        let signal = |group: &Option<Group>, sig| {
            if let Some(g) = group {
                g.signal(sig);
            }
        };
        let mut stdin = child.stdin.take().expect("stdin is piped");
        let payload = task.payload().to_vec();
        let mut done = pin!(async move {
            // A command that ignores its input closes the pipe early: not an error.
            let feed = async move {
                let _ = stdin.write_all(&payload).await;
            };
            tokio::join!(feed, child.wait_with_output()).1
        });
        let output = tokio::select! {
            out = &mut done => out,
            _ = self.shutdown.cancelled() => {
                signal(&group, Signal::Term);
                let out = match tokio::time::timeout(self.grace, &mut done).await {
                    Ok(out) => out,
                    Err(_) => {
                        signal(&group, Signal::Kill);
                        done.await
                    }
                };
                if let Some(g) = group.as_mut() {
                    g.finished();
                }
                if out.is_ok_and(|o| o.status.success()) {
                    return Ok(());
                }
                // Stopped by the shutdown, not failed: the worker gives the
                // message back when its shutdown timeout ends.
                return std::future::pending().await;
            }
            _ = task.cancelled() => {
                signal(&group, Signal::Kill);
                let _ = done.await;
                return Err(HandlerError::retryable("cancelled: the lease was lost or the worker is stopping"));
            }
        };
        if let Some(g) = group.as_mut() {
            g.finished();
        }
        let output = output
            .map_err(|e| HandlerError::retryable(format!("waiting for the command failed: {e}")))?;
        if output.status.success() {
            return Ok(());
        }
        let stderr = String::from_utf8_lossy(&output.stderr);
        let tail: String = stderr
            .trim()
            .lines()
            .last()
            .unwrap_or("")
            .chars()
            .take(300)
            .collect();
        let code = output.status.code();
        let why = match code {
            Some(code) => format!("command exited with status {code}: {tail}"),
            None => format!("command was killed by a signal: {tail}"),
        };
        if let Some(code) = code.filter(|c| CANNOT_RUN.contains(c)) {
            // Every message would fail the same way: stop, and hand the
            // message back rather than burn its attempts.
            let why = format!(
                "the command cannot run (status {code}: {}): fix --exec; stopped without counting this as the message's failure",
                if tail.is_empty() {
                    "not found or not executable"
                } else {
                    &tail
                }
            );
            error!("{why}");
            self.setup_error
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get_or_insert(why);
            self.shutdown.cancel();
            return std::future::pending().await;
        }
        if code == Some(EX_DATAERR) {
            Err(HandlerError::fatal(why))
        } else {
            Err(HandlerError::retryable(why))
        }
    }
}

/// Refuses, before anything is taken from the queue, a command whose
/// program does not exist. Only a command that starts with a plain program
/// name or path is checked; shell syntax (`x=$(cat); …`) is left to run.
pub(crate) fn check_command(command: &str) -> Result<(), Error> {
    let Some(first) = command.split_whitespace().next() else {
        return Err("--exec is empty: give the command to run per message".into());
    };
    let plain = first
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/' | '+'));
    if !plain {
        return Ok(());
    }
    let found = std::process::Command::new("sh")
        .arg("-c")
        .arg("command -v -- \"$1\" >/dev/null 2>&1")
        .arg("sh")
        .arg(first)
        .status()
        .map_err(|e| format!("cannot run sh to check --exec: {e}"))?;
    if found.success() {
        Ok(())
    } else {
        Err(format!(
            "--exec {first:?}: no such command (not on PATH, or not executable); nothing was taken from the queue"
        )
        .into())
    }
}
