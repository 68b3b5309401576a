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
    cmd
}

pub(super) fn ready(server: &Server) -> bool {
    // While it loads the append-only file Redis answers LOADING, not PONG.
    let (_, out) = probe("redis-cli", &["-p", &server.port().to_string(), "ping"]);
    out.starts_with("PONG")
}
