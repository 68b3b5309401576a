//! The command of one message runs in a process group of its own, so that
//! stopping it stops everything it started: `sh -c` forks the command
//! rather than replacing itself, and killing only the shell would leave the
//! real command running while its message goes to another worker.

use std::{
    collections::HashSet,
    sync::{Arc, Mutex},
};

/// The process groups of the commands running now, so a second Ctrl-C can
/// kill them all before the process exits.
#[derive(Debug, Clone, Default)]
pub(crate) struct Running(Arc<Mutex<HashSet<u32>>>);

impl Running {
    /// Sends SIGKILL to every running command's group.
    pub(crate) fn kill_all(&self) {
        for pgid in self.0.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            signal(*pgid, Signal::Kill);
        }
    }
}

/// A running command's process group; killed (SIGKILL) when dropped, so a
/// handler dropped by a timeout or a hard stop never leaves its command
/// running while the message is handed to someone else.
#[derive(Debug)]
pub(crate) struct Group {
    pgid: u32,
    running: Running,
    done: bool,
}

/// The signals the worker sends to a command.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Signal {
    /// Asks the command to stop (shutdown).
    Term,
    /// Stops it now.
    Kill,
}

impl Group {
    /// The group led by the process `pgid` (spawned with `process_group(0)`).
    pub(crate) fn new(pgid: u32, running: &Running) -> Self {
        running
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(pgid);
        Group {
            pgid,
            running: running.clone(),
            done: false,
        }
    }

    /// Sends `sig` to every process of the group.
    pub(crate) fn signal(&self, sig: Signal) {
        signal(self.pgid, sig);
    }

    /// The command ended: a later drop still kills stragglers it left in
    /// its group (a backgrounded child), but the group is no longer listed.
    pub(crate) fn finished(&mut self) {
        self.done = true;
        self.unlist();
    }

    fn unlist(&self) {
        self.running
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.pgid);
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        // Whatever is left of the group goes with the handler.
        signal(self.pgid, Signal::Kill);
        if !self.done {
            self.unlist();
        }
    }
}

#[cfg(unix)]
fn signal(pgid: u32, sig: Signal) {
    use nix::{sys::signal, unistd::Pid};
    let sig = match sig {
        Signal::Term => signal::Signal::SIGTERM,
        Signal::Kill => signal::Signal::SIGKILL,
    };
    // ESRCH (the group is gone) is the normal case after the command ended.
    let _ = signal::killpg(Pid::from_raw(pgid as i32), sig);
}

#[cfg(not(unix))]
fn signal(_: u32, _: Signal) {}
