//! Every server kind starts on its own port, goes away when crashed, comes
//! back on the same port and directory, and leaves nothing behind when
//! dropped. Needs the server binaries installed (as in `.ci/run`).

use std::{net::TcpStream, path::PathBuf, time::Duration};

use flextide_test_servers::{Kind, Server};

fn answers(port: u16) -> bool {
    TcpStream::connect_timeout(
        &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_secs(1),
    )
    .is_ok()
}

fn crash_and_restart(kind: Kind) {
    let mut server = Server::start(kind).unwrap_or_else(|e| panic!("{e}"));
    let (port, dir): (u16, PathBuf) = (server.port(), server.dir().to_owned());
    assert!(
        ![5432, 3306, 6379, 5672, 4222].contains(&port),
        "a private server must not use a shared port"
    );
    assert!(answers(port), "{kind:?} does not listen on {port}");
    server.crash().unwrap();
    assert!(!server.is_running());
    assert!(!answers(port), "{kind:?} still listens after the crash");
    server.restart().unwrap_or_else(|e| panic!("{e}"));
    assert!(answers(port), "{kind:?} did not come back on {port}");
    server.stop().unwrap();
    assert!(!answers(port), "{kind:?} still listens after the stop");
    server.restart().unwrap_or_else(|e| panic!("{e}"));
    assert!(answers(port), "{kind:?} did not come back after the stop");
    drop(server);
    assert!(!answers(port), "{kind:?} still listens after drop");
    assert!(!dir.exists(), "{} was not removed", dir.display());
}

#[test]
fn postgres() {
    crash_and_restart(Kind::Postgres);
}

#[test]
fn mariadb() {
    crash_and_restart(Kind::MariaDb);
}

#[test]
fn redis_with_aof() {
    crash_and_restart(Kind::Redis { aof: true });
}

#[test]
fn redis_without_persistence() {
    crash_and_restart(Kind::Redis { aof: false });
}

#[test]
fn rabbitmq() {
    crash_and_restart(Kind::RabbitMq);
}

#[test]
fn nats() {
    crash_and_restart(Kind::Nats);
}
