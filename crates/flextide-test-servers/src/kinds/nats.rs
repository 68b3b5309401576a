//! NATS: `nats-server` with JetStream and its own store directory.

use std::process::Command;

use crate::Server;

pub(super) fn command(server: &Server) -> Command {
    let mut cmd = Command::new("nats-server");
    cmd.args(["-a", "127.0.0.1", "-p"])
        .arg(server.port().to_string())
        .arg("-js")
        .arg("-sd")
        .arg(server.dir().join("store"));
    cmd
}
