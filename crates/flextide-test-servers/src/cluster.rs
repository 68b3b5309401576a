//! A cluster of private servers on this machine: RabbitMQ nodes joined
//! with `rabbitmqctl join_cluster`, or nats-servers routed to each other
//! with JetStream clustered. Each node is a [`Server`] of its own (free
//! ports, its own directory, killed by the ids it started), so one node can
//! be crashed and restarted while the others carry on.

use std::fmt;

use crate::{
    Kind, Server, kinds,
    process::{free_port, temp_dir},
};

/// A node's place in its cluster: what its command line needs to find
/// the other nodes.
#[derive(Debug, Clone)]
pub(crate) struct Member {
    /// The cluster's name (NATS `--cluster_name`).
    pub(crate) name: String,
    /// This node's index in `ports`.
    pub(crate) index: usize,
    /// Every node's ports (client, then cluster/distribution), this one
    /// included.
    pub(crate) ports: Vec<[u16; 2]>,
}

/// Private servers of one kind forming a cluster. Dropping it kills every
/// node (by the ids it started) and removes their directories.
///
/// ```no_run
/// use flextide_test_servers::{Cluster, Kind};
/// let mut nats = Cluster::start(Kind::Nats, 3).unwrap();
/// println!("{}", nats.url()); // nats://127.0.0.1:<p1>,...?replicas=3
/// nats.crash(0).unwrap();     // SIGKILL one node; the others carry on
/// nats.restart(0).unwrap();   // it comes back and catches up
/// ```
pub struct Cluster {
    kind: Kind,
    nodes: Vec<Server>,
}

impl fmt::Debug for Cluster {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cluster")
            .field("kind", &self.kind)
            .field("nodes", &self.nodes)
            .finish()
    }
}

impl Cluster {
    /// Starts `size` nodes of `kind` (RabbitMQ, NATS, or Redis: then
    /// `size / 2` masters with one replica each, so at least 6) and joins
    /// them into one cluster; returns once every node answers and has
    /// joined.
    pub fn start(kind: Kind, size: usize) -> Result<Cluster, String> {
        if !matches!(kind, Kind::RabbitMq | Kind::Nats | Kind::Redis { .. }) {
            return Err(format!("no cluster of {} can be started", kind.name()));
        }
        if size == 0 {
            return Err("a cluster needs at least one node".into());
        }
        if matches!(kind, Kind::Redis { .. }) && (size < 6 || size % 2 == 1) {
            return Err(
                "a Redis cluster needs an even number of nodes, at least 6 (3 masters, 3 replicas)"
                    .into(),
            );
        }
        // As for one server: a port found free may be taken before a node
        // binds it, so a failed start is tried again on fresh ports.
        let mut failures = Vec::new();
        for _ in 0..2 {
            match Self::start_once(kind, size) {
                Ok(cluster) => return Ok(cluster),
                Err(e) => failures.push(e),
            }
        }
        Err(format!(
            "a {}-node {} cluster did not start in 2 tries: {}",
            size,
            kind.name(),
            failures.join("; then: ")
        ))
    }

    fn start_once(kind: Kind, size: usize) -> Result<Cluster, String> {
        let mut ports: Vec<[u16; 2]> = Vec::new();
        while ports.len() < size {
            let pair = [free_port()?, free_port()?];
            // The kernel may hand the same free port out twice in a row.
            let taken = ports.iter().flatten().any(|p| pair.contains(p));
            if pair[0] != pair[1] && !taken {
                ports.push(pair);
            }
        }
        let name = format!("flextide-{}", ports[0][0]);
        // Nodes join the vector before they start, so a failure part-way
        // kills those already running (on drop).
        let mut cluster = Cluster {
            kind,
            nodes: Vec::new(),
        };
        for index in 0..size {
            let server = Server {
                kind,
                dir: temp_dir(&format!("{}-node{index}", kind.name()))?,
                ports: ports[index],
                child: None,
                member: Some(Member {
                    name: name.clone(),
                    index,
                    ports: ports.clone(),
                }),
            };
            cluster.nodes.push(server);
            let server = &mut cluster.nodes[index];
            kinds::init(server)?;
            server.spawn()?;
        }
        kinds::join(&cluster.nodes)?;
        Ok(cluster)
    }

    /// What it is.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// The nodes, in the order they were started (node 0 first).
    pub fn nodes(&self) -> &[Server] {
        &self.nodes
    }

    /// The URL a Flextide backend opens it with: every node's URL,
    /// separated by commas (for NATS followed by `?replicas=<nodes>`, so
    /// streams are replicated on every node).
    pub fn url(&self) -> String {
        let urls: Vec<String> = self.nodes.iter().map(Server::url).collect();
        let mut url = urls.join(",");
        if self.kind == Kind::Nats {
            url.push_str(&format!("?replicas={}", self.nodes.len()));
        }
        url
    }

    /// SIGKILLs node `node` (see [`Server::crash`]).
    pub fn crash(&mut self, node: usize) -> Result<(), String> {
        self.node(node)?.crash()
    }

    /// Starts node `node` again on its ports and directory; it rejoins the
    /// cluster by itself.
    pub fn restart(&mut self, node: usize) -> Result<(), String> {
        self.node(node)?.restart()
    }

    fn node(&mut self, node: usize) -> Result<&mut Server, String> {
        let size = self.nodes.len();
        self.nodes
            .get_mut(node)
            .ok_or_else(|| format!("there is no node {node} in a cluster of {size}"))
    }
}
