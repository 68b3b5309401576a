//! Shutting down on Ctrl-C and SIGTERM.

use tokio_util::sync::CancellationToken;
use tracing::info;

/// Completes on Ctrl-C (SIGINT) or, on Unix, SIGTERM (what `kill`,
/// systemd and Kubernetes send).
pub async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// A token cancelled on the first Ctrl-C or SIGTERM, to pass to
/// [`Worker::run`](crate::Worker::run). Call it inside a Tokio runtime.
pub fn shutdown_on_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let cancel = token.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        info!("shutdown signal received: finishing running handlers");
        cancel.cancel();
    });
    token
}
