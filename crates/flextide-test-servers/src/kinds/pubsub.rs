//! The Google Cloud Pub/Sub emulator (Java): keeps everything in memory,
//! so a crash forgets every topic, subscription and message.

use std::process::Command;

use crate::Server;

/// `FLEXTIDE_TEST_PUBSUB_EMULATOR` when set, else the Google Cloud CLI's
/// component (`google-cloud-cli-pubsub-emulator`).
pub(super) fn program() -> String {
    std::env::var("FLEXTIDE_TEST_PUBSUB_EMULATOR")
        .ok()
        .filter(|b| !b.is_empty())
        .unwrap_or_else(|| {
            "/usr/lib/google-cloud-sdk/platform/pubsub-emulator/bin/cloud-pubsub-emulator"
                .to_owned()
        })
}

pub(super) fn command(server: &Server) -> Command {
    let mut cmd = Command::new(program());
    cmd.arg("--host=127.0.0.1")
        .arg(format!("--port={}", server.port()))
        .current_dir(server.dir());
    cmd
}
