//! The connections of a backend, to one server or to a Redis Cluster,
//! behind one type that commands, pipelines and scripts run on.
//!
//! A URL listing several nodes separated by commas
//! (`redis://h1:7000,redis://h2:7001`) names a Redis Cluster. Every key of
//! one queue carries the queue's hash tag (`{name}`), so each script and
//! MULTI/EXEC touches a single slot, and the cluster client sends it to the
//! master of that slot, following MOVED and ASK after a failover.

use std::time::Duration;

use redis::{
    AsyncConnectionConfig, Client, Cmd, ConnectionAddr, ConnectionInfo, ErrorKind,
    IntoConnectionInfo, Pipeline, RedisFuture, RedisResult, Value,
    aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig, MultiplexedConnection},
    cluster::{ClusterClient, ClusterConfig},
    cluster_async::ClusterConnection,
};

use crate::RedisConfig;

/// A connection commands run on.
#[derive(Clone)]
pub(crate) enum Conn {
    /// The shared connection to one server, reconnecting by itself.
    Managed(ConnectionManager),
    /// A blocking-read connection to one server.
    Plain(MultiplexedConnection),
    /// Connections to every node of a cluster, routed by key slot.
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Managed(c) => c.req_packed_command(cmd),
            Conn::Plain(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Managed(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Plain(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Managed(c) => c.get_db(),
            Conn::Plain(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

/// What new connections are made from.
#[derive(Clone)]
pub(crate) enum Clients {
    One(Client),
    /// The cluster client, and the first node's settings (credentials),
    /// for plain connections to single nodes.
    Cluster(Box<ClusterClient>, Box<ConnectionInfo>),
}

impl Clients {
    /// The client for `url` (one server, or a cluster when it lists
    /// several nodes), and the address errors name (never the password).
    pub(crate) fn open(url: &str) -> RedisResult<(Clients, String)> {
        let nodes: Vec<&str> = url.split(',').map(str::trim).collect();
        if nodes.len() == 1 {
            let client = Client::open(url)?;
            let addr = client.get_connection_info().addr().to_string();
            return Ok((Clients::One(client), addr));
        }
        let mut addrs = Vec::new();
        for node in &nodes {
            addrs.push(node.into_connection_info()?.addr().to_string());
        }
        let first = nodes[0].into_connection_info()?;
        let client = ClusterClient::new(nodes)?;
        Ok((
            Clients::Cluster(Box::new(client), Box::new(first)),
            format!("the cluster of {}", addrs.join(",")),
        ))
    }

    /// Whether this is a cluster.
    pub(crate) fn is_cluster(&self) -> bool {
        matches!(self, Clients::Cluster(..))
    }

    /// The shared connection: commands time out after the configured
    /// response timeout.
    pub(crate) async fn shared(&self, config: &RedisConfig) -> RedisResult<Conn> {
        match self {
            Clients::One(client) => {
                let manager_config = ConnectionManagerConfig::new()
                    .set_response_timeout(Some(config.response()))
                    .set_connection_timeout(Some(config.connect_timeout()))
                    .set_number_of_retries(3)
                    .set_max_delay(Duration::from_secs(2));
                let conn =
                    ConnectionManager::new_with_config(client.clone(), manager_config).await?;
                Ok(Conn::Managed(conn))
            }
            Clients::Cluster(client, _) => {
                let cluster_config = ClusterConfig::new()
                    .set_connection_timeout(config.connect_timeout())
                    .set_response_timeout(config.response());
                let conn = client
                    .get_async_connection_with_config(cluster_config)
                    .await?;
                Ok(Conn::Cluster(conn))
            }
        }
    }

    /// A connection of its own for blocking reads: no response timeout of
    /// the driver's (the caller bounds each read itself).
    pub(crate) async fn blocking(&self, config: &RedisConfig) -> RedisResult<Conn> {
        match self {
            Clients::One(client) => {
                let async_config = AsyncConnectionConfig::new()
                    .set_connection_timeout(Some(config.connect_timeout()))
                    .set_response_timeout(None);
                let conn = client
                    .get_multiplexed_async_connection_with_config(&async_config)
                    .await?;
                Ok(Conn::Plain(conn))
            }
            Clients::Cluster(client, _) => {
                // The cluster client always has a response timeout: one far
                // past any single blocking read.
                let cluster_config = ClusterConfig::new()
                    .set_connection_timeout(config.connect_timeout())
                    .set_response_timeout(Duration::from_secs(3600));
                let conn = client
                    .get_async_connection_with_config(cluster_config)
                    .await?;
                Ok(Conn::Cluster(conn))
            }
        }
    }

    /// A plain connection to every master of a cluster, for commands that
    /// look at one node's keys only (`SCAN`); the one server otherwise.
    pub(crate) async fn each_master(&self, config: &RedisConfig) -> RedisResult<Vec<Conn>> {
        let (mut shared, first) = match self {
            Clients::One(_) => return Ok(vec![self.shared(config).await?]),
            Clients::Cluster(_, first) => (self.shared(config).await?, first),
        };
        if !matches!(first.addr(), ConnectionAddr::Tcp(..)) {
            return Err((
                ErrorKind::InvalidClientConfig,
                "listing the queues of a cluster reached over TLS or a socket is not supported; list them on each master with SCAN",
            )
                .into());
        }
        // One line per node: `<id> <ip:port@cport> <flags> ...`.
        let nodes: String = redis::cmd("CLUSTER")
            .arg("NODES")
            .query_async(&mut shared)
            .await?;
        let mut out = Vec::new();
        for line in nodes.lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (Some(addr), Some(flags)) = (fields.get(1), fields.get(2)) else {
                continue;
            };
            if !flags.split(',').any(|f| f == "master") || flags.contains("fail") {
                continue;
            }
            let addr = addr.split('@').next().unwrap_or_default();
            let Some((host, port)) = addr.rsplit_once(':') else {
                continue;
            };
            let Ok(port) = port.parse() else {
                continue;
            };
            let node = first
                .clone()
                .set_addr(ConnectionAddr::Tcp(host.to_owned(), port));
            let client = Client::open(node)?;
            let async_config = AsyncConnectionConfig::new()
                .set_connection_timeout(Some(config.connect_timeout()))
                .set_response_timeout(Some(config.response()));
            out.push(Conn::Plain(
                client
                    .get_multiplexed_async_connection_with_config(&async_config)
                    .await?,
            ));
        }
        Ok(out)
    }
}
