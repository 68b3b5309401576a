//! The conformance suite again, against a Redis Cluster of its own:
//! three masters with a replica each, on free local ports (crate
//! `flextide-test-servers`; stopped when the suite ends). Every key of a
//! queue carries its hash tag, so each script and MULTI/EXEC lands on one
//! slot; this target shows it, case by case.
//!
//! Run with: `cargo test -p flextide-queue-redis --test conformance_cluster`
//! (needs `redis-server` and `redis-cli`; shown as ignored without them,
//! a failure when `FLEXTIDE_TEST_REQUIRE` names redis).

mod common;

use std::process::ExitCode;

use flextide_queue_conformance::Connect;
use flextide_test_servers::{Cluster, Kind};

fn main() -> ExitCode {
    flextide_queue_conformance::run("redis", || async {
        let kind = Kind::Redis { aof: true };
        if let Err(missing) = flextide_test_servers::installed(kind) {
            return Connect::NotConfigured(missing);
        }
        let cluster = match tokio::task::spawn_blocking(move || Cluster::start(kind, 6)).await {
            Ok(Ok(cluster)) => cluster,
            Ok(Err(e)) => return Connect::Failed(e),
            Err(e) => return Connect::Failed(e.to_string()),
        };
        common::connect(cluster.url(), Box::new(cluster)).await
    })
}
