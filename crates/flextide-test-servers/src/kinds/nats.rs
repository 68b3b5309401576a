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
    if let Some(member) = &server.member {
        // JetStream in a cluster needs a unique server name and a cluster
        // name; routes go to every other node's cluster port.
        let routes: Vec<String> = member
            .ports
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != member.index)
            .map(|(_, p)| format!("nats://127.0.0.1:{}", p[1]))
            .collect();
        cmd.arg("--name")
            .arg(format!("{}-{}", member.name, member.index))
            .arg("--cluster_name")
            .arg(&member.name)
            .arg("--cluster")
            .arg(format!("nats://127.0.0.1:{}", server.ports[1]))
            .arg("--routes")
            .arg(routes.join(","));
    }
    cmd
}
