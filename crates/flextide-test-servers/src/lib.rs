#![doc = include_str!("../README.md")]

mod cluster;
mod kinds;
pub mod load;
mod process;

use std::{
    fmt,
    path::{Path, PathBuf},
    process::Child,
    time::{Duration, Instant},
};

pub use cluster::Cluster;
pub use process::free_port;

/// Which server to run, and how it keeps its data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// PostgreSQL 15, a cluster made with `initdb` (fsync on, the default).
    Postgres,
    /// MariaDB with its own datadir (`innodb_flush_log_at_trx_commit=1`).
    MariaDb,
    /// Redis: with `aof`, an append-only file fsynced every second;
    /// without, no persistence at all (a crash forgets everything).
    Redis {
        /// `--appendonly yes --appendfsync everysec`, else nothing persisted.
        aof: bool,
    },
    /// A RabbitMQ node of its own (node name `flextide-<port>@localhost`).
    RabbitMq,
    /// A RabbitMQ node of its own with the bundled `rabbitmq_amqp1_0`
    /// plugin: AMQP 1.0 on the same port (SASL PLAIN `guest:guest`, or
    /// ANONYMOUS as guest), for AMQP 1.0 clients' transport tests.
    RabbitMqAmqp10,
    /// nats-server with JetStream and its own store directory.
    Nats,
    /// The Google Cloud Pub/Sub emulator: nothing persisted (a crash
    /// forgets every topic, subscription and message).
    PubSub,
    /// tansu, a Kafka-compatible broker, with its embedded SQLite engine in
    /// the data directory (the binary named by
    /// `FLEXTIDE_TEST_TANSU_DURABLE`, built with the `libsql` feature).
    Kafka,
}

impl Kind {
    /// A short name for messages and directory names.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Postgres => "postgres",
            Kind::MariaDb => "mariadb",
            Kind::Redis { aof: true } => "redis-aof",
            Kind::Redis { aof: false } => "redis-volatile",
            Kind::RabbitMq => "rabbitmq",
            Kind::RabbitMqAmqp10 => "rabbitmq-amqp10",
            Kind::Nats => "nats",
            Kind::PubSub => "pubsub",
            Kind::Kafka => "kafka",
        }
    }
}

/// A private server instance: its ports, data directory and process.
/// Dropping it kills the process (by the ids it started) and removes the
/// directory.
pub struct Server {
    kind: Kind,
    dir: PathBuf,
    ports: [u16; 2],
    child: Option<Child>,
    /// Its place in a [`Cluster`], when it is a cluster's node.
    member: Option<cluster::Member>,
}

impl fmt::Debug for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server")
            .field("kind", &self.kind)
            .field("dir", &self.dir)
            .field("ports", &self.ports)
            .field("pid", &self.child.as_ref().map(Child::id))
            .field("member", &self.member)
            .finish()
    }
}

impl Server {
    /// Makes a fresh data directory and free ports, initialises the server
    /// there and starts it; returns once it answers.
    pub fn start(kind: Kind) -> Result<Server, String> {
        // A port found free can be taken before the server binds it (tests
        // and chaos runs start servers side by side, and so does the rest
        // of a shared machine): a start that fails is tried again on fresh
        // ports in a fresh directory (the failed one is removed on drop).
        let mut failures = Vec::new();
        for _ in 0..3 {
            match Self::start_once(kind) {
                Ok(server) => return Ok(server),
                Err(e) => failures.push(e),
            }
        }
        Err(format!(
            "{} did not start in 3 tries: {}",
            kind.name(),
            failures.join("; then: ")
        ))
    }

    fn start_once(kind: Kind) -> Result<Server, String> {
        let dir = process::temp_dir(kind.name())?;
        let mut server = Server {
            kind,
            dir,
            ports: [free_port()?, free_port()?],
            child: None,
            member: None,
        };
        kinds::init(&server)?;
        server.spawn()?;
        kinds::after_first_start(&server)?;
        Ok(server)
    }

    /// What it is.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// The URL a Flextide backend opens it with.
    pub fn url(&self) -> String {
        kinds::url(self)
    }

    /// The port clients connect to.
    pub fn port(&self) -> u16 {
        self.ports[0]
    }

    /// The data directory (removed on drop).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether the server process is running (it was started and has not
    /// been crashed or stopped since).
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Kills the server at once with SIGKILL, the way a power cut or the
    /// OOM killer looks to its clients; no shutdown work is done. For
    /// RabbitMQ this is the node's Erlang VM (found by its pid file and
    /// checked to carry this node's name), then what is left of the group.
    pub fn crash(&mut self) -> Result<(), String> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        kinds::crash(self)?;
        process::kill_group(&mut child);
        Ok(())
    }

    /// Stops the server the clean way (a fast shutdown for PostgreSQL,
    /// `rabbitmqctl stop` through the server script's SIGTERM handler for
    /// RabbitMQ, SIGTERM for the rest), waiting up to two minutes before
    /// it falls back to [`Server::crash`].
    pub fn stop(&mut self) -> Result<(), String> {
        let Some(child) = self.child.as_mut() else {
            return Ok(());
        };
        let signal = match self.kind {
            // SIGTERM would wait for every client to disconnect.
            Kind::Postgres => nix::sys::signal::Signal::SIGINT,
            _ => nix::sys::signal::Signal::SIGTERM,
        };
        process::signal_pid(child.id() as i32, signal)?;
        let deadline = Instant::now() + Duration::from_secs(120);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        // Whatever is left (or all of it, past the deadline) is killed.
        self.crash()
    }

    /// [`Server::crash`], checks that nothing answers on the port any
    /// more, stays down for `down` (so that clients meet the outage), then
    /// [`Server::restart`].
    pub fn crash_and_restart(&mut self, down: Duration) -> Result<(), String> {
        self.crash()?;
        if process::port_open(self.port()) {
            return Err(format!(
                "{} still listens on {} after the crash",
                self.kind.name(),
                self.port()
            ));
        }
        std::thread::sleep(down);
        self.restart()
    }

    /// Starts the server again on the same ports and data directory;
    /// returns once it answers.
    pub fn restart(&mut self) -> Result<(), String> {
        if self.child.is_some() {
            return Ok(());
        }
        self.spawn()
    }

    fn spawn(&mut self) -> Result<(), String> {
        let log = self.dir.join("server.log");
        let mut cmd = kinds::command(self)?;
        let child = process::spawn_in_group(&mut cmd, &log)?;
        self.child = Some(child);
        let started = Instant::now();
        let limit = kinds::start_limit(self.kind);
        loop {
            if kinds::ready(self) {
                return Ok(());
            }
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                self.child = None;
                return Err(format!(
                    "{} exited during start-up ({status}); its log {} ends with:\n{}",
                    self.kind.name(),
                    log.display(),
                    process::tail(&log)
                ));
            }
            if started.elapsed() > limit {
                let tail = process::tail(&log);
                let _ = self.crash();
                return Err(format!(
                    "{} did not answer within {limit:?}; its log {} ends with:\n{tail}",
                    self.kind.name(),
                    log.display()
                ));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// Set (to anything) to keep a stopped server's directory (its data and
/// logs) for a post-mortem instead of deleting it.
pub const KEEP_ENV: &str = "FLEXTIDE_TEST_SERVERS_KEEP";

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.crash();
        if std::env::var_os(KEEP_ENV).is_some() {
            eprintln!("{KEEP_ENV}: kept {}", self.dir.display());
            return;
        }
        if let Err(e) = std::fs::remove_dir_all(&self.dir) {
            eprintln!("could not remove {}: {e}", self.dir.display());
        }
    }
}

/// Whether the program that runs `kind` is installed; the error says which
/// one is missing.
pub fn installed(kind: Kind) -> Result<(), String> {
    let program = kinds::program(kind);
    let found = if program.contains('/') {
        Path::new(&program).exists()
    } else {
        std::env::var_os("PATH")
            .is_some_and(|path| std::env::split_paths(&path).any(|d| d.join(&program).exists()))
    };
    if found {
        Ok(())
    } else {
        Err(format!(
            "{program} is not installed, so no private {} server can be started",
            kind.name()
        ))
    }
}
