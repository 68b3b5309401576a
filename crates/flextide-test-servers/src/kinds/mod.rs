//! What differs between server kinds: how a data directory is made, the
//! command line, when the server counts as up, its URL. One file per kind.

mod kafka;
mod mariadb;
mod nats;
mod postgres;
mod pubsub;
mod rabbitmq;
mod redis;

use std::{process::Command, time::Duration};

use crate::{Kind, Server};

/// Prepares the fresh data directory (initdb and the like).
pub(crate) fn init(server: &Server) -> Result<(), String> {
    match server.kind {
        Kind::Postgres => postgres::init(server),
        Kind::MariaDb => mariadb::init(server),
        Kind::RabbitMq => rabbitmq::init(server, false),
        Kind::RabbitMqAmqp10 => rabbitmq::init(server, true),
        Kind::Redis { .. } | Kind::Nats | Kind::PubSub | Kind::Kafka => Ok(()),
    }
}

/// The command that runs the server in the foreground.
pub(crate) fn command(server: &Server) -> Result<Command, String> {
    match server.kind {
        Kind::Postgres => postgres::command(server),
        Kind::MariaDb => Ok(mariadb::command(server)),
        Kind::Redis { aof } => Ok(redis::command(server, aof)),
        Kind::RabbitMq | Kind::RabbitMqAmqp10 => rabbitmq::command(server),
        Kind::Nats => Ok(nats::command(server)),
        Kind::PubSub => Ok(pubsub::command(server)),
        Kind::Kafka => Ok(kafka::command(server)),
    }
}

/// Whether the server answers its clients.
pub(crate) fn ready(server: &Server) -> bool {
    match server.kind {
        Kind::Postgres => postgres::ready(server),
        Kind::MariaDb => mariadb::ready(server),
        Kind::Redis { .. } => redis::ready(server),
        Kind::RabbitMq | Kind::RabbitMqAmqp10 | Kind::Nats | Kind::PubSub | Kind::Kafka => {
            crate::process::port_open(server.port())
        }
    }
}

/// Set-up that needs the running server (a database to connect to).
pub(crate) fn after_first_start(server: &Server) -> Result<(), String> {
    match server.kind {
        Kind::MariaDb => mariadb::create_database(server),
        _ => Ok(()),
    }
}

/// Joins freshly started nodes into one cluster (node 0 is the seed).
pub(crate) fn join(nodes: &[Server]) -> Result<(), String> {
    match nodes.first().map(|n| n.kind) {
        Some(Kind::RabbitMq | Kind::RabbitMqAmqp10) => rabbitmq::join(nodes),
        Some(Kind::Redis { .. }) => redis::create_cluster(nodes),
        // nats-servers find each other through their --routes.
        _ => Ok(()),
    }
}

/// Kind-specific part of a crash, before the process group is killed.
pub(crate) fn crash(server: &Server) -> Result<(), String> {
    match server.kind {
        Kind::RabbitMq | Kind::RabbitMqAmqp10 => rabbitmq::kill_node(server),
        _ => Ok(()),
    }
}

/// The server program (a path, or a name looked up in PATH).
pub(crate) fn program(kind: Kind) -> String {
    match kind {
        Kind::Postgres => postgres::bin("postgres").display().to_string(),
        Kind::MariaDb => mariadb::program().into(),
        Kind::Redis { .. } => "redis-server".into(),
        Kind::RabbitMq | Kind::RabbitMqAmqp10 => rabbitmq::SCRIPT.into(),
        Kind::Nats => nats::program(),
        Kind::PubSub => pubsub::program(),
        Kind::Kafka => kafka::program(),
    }
}

/// The URL a Flextide backend opens.
pub(crate) fn url(server: &Server) -> String {
    let port = server.port();
    match server.kind {
        Kind::Postgres => format!("postgres://postgres@127.0.0.1:{port}/postgres"),
        Kind::MariaDb => format!("mysql://root@127.0.0.1:{port}/{}", mariadb::DATABASE),
        Kind::Redis { .. } => format!("redis://127.0.0.1:{port}/"),
        Kind::RabbitMq => format!("amqp://guest:guest@127.0.0.1:{port}/%2f"),
        Kind::RabbitMqAmqp10 => format!("amqp://guest:guest@127.0.0.1:{port}"),
        Kind::Nats => format!("nats://127.0.0.1:{port}"),
        Kind::PubSub => format!("pubsub://flextide-chaos?emulator=127.0.0.1:{port}"),
        Kind::Kafka => format!("kafka://127.0.0.1:{port}"),
    }
}

/// How long a start may take before it counts as failed (crash recovery
/// included, on a loaded machine).
pub(crate) fn start_limit(kind: Kind) -> Duration {
    match kind {
        Kind::RabbitMq | Kind::RabbitMqAmqp10 => Duration::from_secs(180),
        _ => Duration::from_secs(90),
    }
}
