//! Ctrl-C and SIGTERM for `flextide work`: the first stops taking messages
//! and asks running commands to finish (SIGTERM, then SIGKILL after the
//! grace period); a second stops at once. The exit status says which
//! signal stopped the worker (130 for SIGINT, 143 for SIGTERM), as shells do.

use std::sync::{
    Arc,
    atomic::{AtomicU8, Ordering},
};

use tokio_util::sync::CancellationToken;
use tracing::warn;

use super::group::Running;

/// The signal that stopped the worker, if any.
#[derive(Debug, Clone, Default)]
pub(crate) struct Stopped(Arc<AtomicU8>);

impl Stopped {
    /// The exit status for the signal received: 128 + its number.
    pub(crate) fn exit_status(&self) -> Option<u8> {
        match self.0.load(Ordering::Acquire) {
            0 => None,
            n => Some(128 + n),
        }
    }

    fn set(&self, signo: u8) {
        let _ = self
            .0
            .compare_exchange(0, signo, Ordering::AcqRel, Ordering::Acquire);
    }
}

const SIGINT: u8 = 2;
const SIGTERM: u8 = 15;

/// Cancels `shutdown` on the first SIGINT or SIGTERM; on a second, kills
/// every running command and exits the process at once.
pub(crate) fn watch(shutdown: CancellationToken, running: Running) -> Stopped {
    let stopped = Stopped::default();
    let seen = stopped.clone();
    tokio::spawn(async move {
        let mut signals = Signals::new();
        let first = signals.next().await;
        seen.set(first);
        eprintln!(
            "flextide work: stopping: no new messages; running commands get SIGTERM and their grace period to finish (again to stop at once)"
        );
        shutdown.cancel();
        signals.next().await;
        warn!(
            "second signal: killing running commands and exiting now; their messages come back when their leases end"
        );
        running.kill_all();
        std::process::exit(i32::from(128 + first));
    });
    stopped
}

/// SIGINT and SIGTERM, listened to from the start so none is missed
/// between the first and the second.
struct Signals {
    #[cfg(unix)]
    both: Option<(tokio::signal::unix::Signal, tokio::signal::unix::Signal)>,
}

impl Signals {
    fn new() -> Self {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let both = match (
                signal(SignalKind::interrupt()),
                signal(SignalKind::terminate()),
            ) {
                (Ok(i), Ok(t)) => Some((i, t)),
                _ => None,
            };
            Signals { both }
        }
        #[cfg(not(unix))]
        Signals {}
    }

    async fn next(&mut self) -> u8 {
        #[cfg(unix)]
        {
            match &mut self.both {
                Some((int, term)) => tokio::select! {
                    _ = int.recv() => SIGINT,
                    _ = term.recv() => SIGTERM,
                },
                None => std::future::pending().await,
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            SIGINT
        }
    }
}
