//! NATS: `nats-server` with JetStream and its own store directory.

use std::process::Command;

use crate::Server;

/// `FLEXTIDE_TEST_NATS_SERVER` when set, else `nats-server` from PATH.
pub(super) fn program() -> String {
    std::env::var("FLEXTIDE_TEST_NATS_SERVER")
        .ok()
        .filter(|b| !b.is_empty())
        .unwrap_or_else(|| "nats-server".to_owned())
}

pub(super) fn command(server: &Server) -> Command {
    let mut cmd = Command::new(program());
    cmd.args(["-a", "127.0.0.1", "-p"])
        .arg(server.port().to_string())
        .arg("-js")
        .arg("-sd")
        .arg(server.dir().join("store"));
    cmd
}
