//! Redis: `redis-server` on its own port and directory.

use std::process::Command;

use crate::{Server, process::probe};

pub(super) fn command(server: &Server, aof: bool) -> Command {
    let mut cmd = Command::new("redis-server");
    cmd.args(["--bind", "127.0.0.1", "--port"])
        .arg(server.port().to_string())
        .arg("--dir")
        .arg(server.dir())
        .args(["--save", "", "--daemonize", "no"]);
    if aof {
        cmd.args(["--appendonly", "yes", "--appendfsync", "everysec"]);
    } else {
        cmd.args(["--appendonly", "no"]);
    }
    if server.member.is_some() {
        // A replica notices its master's death after 2 s and takes over.
        cmd.args([
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            "nodes.conf",
            "--cluster-node-timeout",
            "2000",
        ]);
    }
    cmd
}

/// Makes a Redis Cluster of the nodes (`redis-cli --cluster create`), one
/// replica per master: with six nodes, three masters and three replicas.
/// Returns once every node says the cluster is ok.
pub(super) fn create_cluster(nodes: &[Server]) -> Result<(), String> {
    let mut cmd = std::process::Command::new("redis-cli");
    cmd.arg("--cluster").arg("create");
    for node in nodes {
        cmd.arg(format!("127.0.0.1:{}", node.port()));
    }
    cmd.args(["--cluster-replicas", "1", "--cluster-yes"]);
    crate::process::run(&mut cmd, "redis-cli --cluster create")?;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    for node in nodes {
        loop {
            let (_, out) = probe(
                "redis-cli",
                &["-p", &node.port().to_string(), "cluster", "info"],
            );
            if out.contains("cluster_state:ok") {
                break;
            }
            if std::time::Instant::now() > deadline {
                return Err(format!("the Redis cluster is not ok after 60 s:\n{out}"));
            }
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    }
    Ok(())
}

pub(super) fn ready(server: &Server) -> bool {
    // While it loads the append-only file Redis answers LOADING, not PONG.
    let (_, out) = probe("redis-cli", &["-p", &server.port().to_string(), "ping"]);
    out.starts_with("PONG")
}
