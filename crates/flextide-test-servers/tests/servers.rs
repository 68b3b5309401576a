//! Every server kind starts on its own port, goes away when crashed, comes
//! back on the same port and directory, and leaves nothing behind when
//! dropped. A kind whose server is not installed shows as ignored, with
//! the reason (a failure when FLEXTIDE_TEST_REQUIRE names it or says all).

use std::{net::TcpStream, path::PathBuf, time::Duration};

use flextide_test_servers::{Cluster, Kind, Server};

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

/// A cluster: every node listens on a port of its own, one node crashed
/// leaves the others answering, it comes back on its port, and dropping
/// the cluster stops every node and removes every directory.
fn cluster_crash_and_restart(kind: Kind, size: usize) {
    let mut cluster = Cluster::start(kind, size).unwrap_or_else(|e| panic!("{e}"));
    let ports: Vec<u16> = cluster.nodes().iter().map(Server::port).collect();
    let dirs: Vec<PathBuf> = cluster.nodes().iter().map(|n| n.dir().to_owned()).collect();
    assert_eq!(ports.len(), size);
    for port in &ports {
        assert!(answers(*port), "{kind:?} node does not listen on {port}");
    }
    let url = cluster.url();
    assert!(
        ports.iter().all(|p| url.contains(&format!(":{p}"))),
        "{url} does not name every node"
    );
    cluster.crash(0).unwrap();
    assert!(!answers(ports[0]), "the crashed node still listens");
    assert!(
        ports[1..].iter().all(|p| answers(*p)),
        "the others went down too"
    );
    cluster.restart(0).unwrap_or_else(|e| panic!("{e}"));
    assert!(answers(ports[0]), "the crashed node did not come back");
    drop(cluster);
    for port in &ports {
        assert!(
            !answers(*port),
            "{kind:?} node still listens on {port} after drop"
        );
    }
    for dir in &dirs {
        assert!(!dir.exists(), "{} was not removed", dir.display());
    }
}

/// Whether FLEXTIDE_TEST_REQUIRE names the backend this server is for.
fn required(kind: Kind) -> bool {
    let backend = match kind {
        Kind::Postgres => "postgres",
        Kind::MariaDb => "mysql",
        Kind::Redis { .. } => "redis",
        Kind::RabbitMq | Kind::RabbitMqAmqp10 => "rabbitmq",
        Kind::Nats => "nats",
        Kind::PubSub => "pubsub",
        Kind::Kafka => "kafka",
    };
    std::env::var("FLEXTIDE_TEST_REQUIRE")
        .unwrap_or_default()
        .split([',', ' '])
        .any(|b| b.eq_ignore_ascii_case("all") || b.eq_ignore_ascii_case(backend))
}

fn main() -> std::process::ExitCode {
    use libtest_mimic::{Arguments, Completion, Trial};
    let kinds = [
        Kind::Postgres,
        Kind::MariaDb,
        Kind::Redis { aof: true },
        Kind::Redis { aof: false },
        Kind::RabbitMq,
        Kind::Nats,
        Kind::PubSub,
        Kind::Kafka,
    ];
    // Redis: three masters with a replica each.
    let clusters = [
        (Kind::RabbitMq, 3),
        (Kind::Nats, 3),
        (Kind::Redis { aof: true }, 6),
    ]
    .map(|(kind, size)| {
        Trial::ignorable_test(format!("{}-cluster", kind.name()), move || {
            if let Err(missing) = flextide_test_servers::installed(kind) {
                if required(kind) {
                    return Err(missing.into());
                }
                return Ok(Completion::ignored_with(missing));
            }
            cluster_crash_and_restart(kind, size);
            Ok(Completion::Completed)
        })
    });
    let trials = kinds
        .into_iter()
        .map(|kind| {
            Trial::ignorable_test(kind.name(), move || {
                if let Err(missing) = flextide_test_servers::installed(kind) {
                    if required(kind) {
                        return Err(missing.into());
                    }
                    return Ok(Completion::ignored_with(missing));
                }
                crash_and_restart(kind);
                Ok(Completion::Completed)
            })
        })
        .chain(clusters)
        .collect();
    libtest_mimic::run(&Arguments::from_args(), trials).exit_code()
}
