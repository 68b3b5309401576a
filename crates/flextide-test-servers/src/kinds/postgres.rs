//! PostgreSQL: a cluster of its own, made with `initdb`, run by `postgres`
//! in the foreground (as the `postgres` user when we are root).

use std::{path::PathBuf, process::Command};

use crate::{
    Server,
    process::{as_service_user, chown_tree, is_root, probe, run, user_ids},
};

const USER: &str = "postgres";

/// The folder of initdb and postgres: `FLEXTIDE_PG_BIN`, else the newest
/// /usr/lib/postgresql/<version>/bin.
pub(super) fn bin(program: &str) -> PathBuf {
    if let Ok(dir) = std::env::var("FLEXTIDE_PG_BIN") {
        return PathBuf::from(dir).join(program);
    }
    let newest = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .max()
        .unwrap_or(15);
    PathBuf::from(format!("/usr/lib/postgresql/{newest}/bin/{program}"))
}

pub(super) fn init(server: &Server) -> Result<(), String> {
    if is_root() {
        chown_tree(server.dir(), user_ids(USER)?)?;
    }
    let mut cmd = Command::new(bin("initdb"));
    cmd.arg("-D").arg(server.dir().join("data")).args([
        "-A",
        "trust",
        "-U",
        "postgres",
        "--no-sync",
    ]);
    as_service_user(&mut cmd, USER)?;
    run(&mut cmd, "initdb")
}

pub(super) fn command(server: &Server) -> Result<Command, String> {
    let mut cmd = Command::new(bin("postgres"));
    cmd.arg("-D")
        .arg(server.dir().join("data"))
        .arg("-p")
        .arg(server.port().to_string())
        // The socket goes into our directory, not the shared /var/run one.
        .arg("-k")
        .arg(server.dir())
        .args([
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            "max_connections=300",
        ]);
    as_service_user(&mut cmd, USER)?;
    Ok(cmd)
}

pub(super) fn ready(server: &Server) -> bool {
    let port = server.port().to_string();
    probe(
        "pg_isready",
        &["-h", "127.0.0.1", "-p", &port, "-t", "2", "-q"],
    )
    .0
}
