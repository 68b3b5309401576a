//! What the run crashes: one private server, or one node at a time of a
//! private cluster (node 0 first, then node 1, …; for Redis the first
//! nodes are masters), each restarted on schedule. Dropping it stops
//! everything it started.

use flextide_test_servers::{Cluster, Server};

use crate::backends::{Home, cluster_nodes};

/// The servers of one run.
#[derive(Debug)]
pub(crate) enum Servers {
    One(Server),
    Cluster {
        cluster: Cluster,
        /// The node the next crash takes.
        next: usize,
        /// The node that is down, if one is.
        down: Option<usize>,
    },
}

impl Servers {
    /// Starts what `home` needs; `None` for a backend without a server.
    pub(crate) fn start(home: Home) -> Result<Option<Servers>, String> {
        Ok(match home {
            Home::Server(kind) => Some(Servers::One(Server::start(kind)?)),
            Home::Cluster(kind) => Some(Servers::Cluster {
                cluster: Cluster::start(kind, cluster_nodes(kind))?,
                next: 0,
                down: None,
            }),
            Home::File | Home::External { .. } => None,
        })
    }

    /// The URL the backend opens (every node's, for a cluster).
    pub(crate) fn url(&self) -> String {
        match self {
            Servers::One(s) => s.url(),
            Servers::Cluster { cluster, .. } => cluster.url(),
        }
    }

    /// SIGKILLs the server, or the cluster's next node (for Redis: a
    /// master, whose replica then takes over).
    pub(crate) fn crash(&mut self) -> Result<(), String> {
        match self {
            Servers::One(s) => s.crash(),
            Servers::Cluster {
                cluster,
                next,
                down,
            } => {
                cluster.crash(*next)?;
                *down = Some(*next);
                *next = (*next + 1) % cluster.nodes().len();
                Ok(())
            }
        }
    }

    /// Starts again what [`Servers::crash`] took down.
    pub(crate) fn restart(&mut self) -> Result<(), String> {
        match self {
            Servers::One(s) => s.restart(),
            Servers::Cluster { cluster, down, .. } => match down.take() {
                Some(node) => cluster.restart(node),
                None => Ok(()),
            },
        }
    }
}
