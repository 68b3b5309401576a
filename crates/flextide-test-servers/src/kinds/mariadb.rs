//! MariaDB: a datadir of its own made with `mariadb-install-db`, root
//! without a password, run by `mariadbd` in the foreground.

use std::process::Command;

use crate::{
    Server,
    process::{is_root, probe, run},
};

/// The database the URL names.
pub(super) const DATABASE: &str = "flextide";

pub(super) fn init(server: &Server) -> Result<(), String> {
    let mut cmd = Command::new("mariadb-install-db");
    cmd.arg("--no-defaults")
        .arg(format!("--datadir={}", server.dir().join("data").display()))
        .args(["--auth-root-authentication-method=normal", "--skip-test-db"]);
    if is_root() {
        cmd.arg("--user=root");
    }
    run(&mut cmd, "mariadb-install-db")
}

/// mariadbd; PATH of a non-root user may lack /usr/sbin.
pub(super) fn program() -> &'static str {
    if std::path::Path::new("/usr/sbin/mariadbd").exists() {
        "/usr/sbin/mariadbd"
    } else {
        "mariadbd"
    }
}

pub(super) fn command(server: &Server) -> Command {
    let dir = server.dir();
    let mut cmd = Command::new(program());
    cmd.arg("--no-defaults")
        .arg(format!("--datadir={}", dir.join("data").display()))
        .arg(format!("--port={}", server.port()))
        .arg("--bind-address=127.0.0.1")
        .arg(format!("--socket={}", dir.join("mysqld.sock").display()))
        .arg(format!("--pid-file={}", dir.join("mysqld.pid").display()))
        // Durable commits (the default, said out loud).
        .args([
            "--innodb-flush-log-at-trx-commit=1",
            "--max-connections=500",
        ]);
    if is_root() {
        cmd.arg("--user=root");
    }
    cmd
}

fn client(server: &Server, sql: &str) -> (bool, String) {
    let port = format!("-P{}", server.port());
    probe(
        "mariadb",
        &[
            "-uroot",
            "-h127.0.0.1",
            &port,
            "--connect-timeout=2",
            "-e",
            sql,
        ],
    )
}

pub(super) fn ready(server: &Server) -> bool {
    client(server, "SELECT 1").0
}

pub(super) fn create_database(server: &Server) -> Result<(), String> {
    let (ok, out) = client(server, &format!("CREATE DATABASE IF NOT EXISTS {DATABASE}"));
    if ok {
        Ok(())
    } else {
        Err(format!("could not create database {DATABASE}: {out}"))
    }
}
