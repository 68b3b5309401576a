//! On a Redis Cluster, a queue's keys live on the master of its slot, so
//! listing the queues must scan every master: queues spread over all three
//! masters are all listed. Starts a private cluster of its own
//! (crate `flextide-test-servers`); ignored when `redis-server` is missing.
//!
//! Run with: `cargo test -p flextide-queue-redis --test cluster_listing`

use flextide_queue_conformance::unique_queue_name;
use flextide_queue_core::{Message, QueueOptions, QueueProvider};
use flextide_queue_redis::{RedisBackend, RedisConfig};
use flextide_test_servers::{Cluster, Kind};

async fn every_master_is_scanned() {
    let cluster = tokio::task::spawn_blocking(|| Cluster::start(Kind::Redis { aof: true }, 6))
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("{e}"));
    let backend = RedisBackend::connect(RedisConfig::new(cluster.url()))
        .await
        .unwrap();
    assert!(backend.is_cluster());
    let mut names: Vec<String> = (0..12).map(|_| unique_queue_name("list")).collect();
    for name in &names {
        let q = backend.open(name, QueueOptions::default()).await.unwrap();
        q.push(Message::new("x")).await.unwrap();
    }
    // Twelve queues all on one master of three: a chance of 3^-11. The
    // cluster is fresh, so every key is one of ours.
    let mut holding = 0;
    for node in cluster.nodes() {
        let mut conn = redis::Client::open(node.url())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap();
        let role: Vec<redis::Value> = redis::cmd("ROLE").query_async(&mut conn).await.unwrap();
        let master = matches!(&role[0], redis::Value::BulkString(b) if b == b"master");
        let size: u64 = redis::cmd("DBSIZE").query_async(&mut conn).await.unwrap();
        if master && size > 0 {
            holding += 1;
        }
    }
    assert!(holding >= 2, "the queues sit on {holding} master(s) only");
    let listed = backend.queue_names().await.unwrap();
    names.sort();
    let ours: Vec<String> = listed.into_iter().filter(|n| names.contains(n)).collect();
    assert_eq!(ours, names);
    for name in &names {
        backend.drop_queue(name).await.unwrap();
    }
    drop(cluster);
}

fn main() -> std::process::ExitCode {
    use libtest_mimic::{Arguments, Completion, Trial};
    let trial = Trial::ignorable_test("cluster_lists_queues_of_every_master", || {
        if let Err(missing) = flextide_test_servers::installed(Kind::Redis { aof: true }) {
            let required = std::env::var("FLEXTIDE_TEST_REQUIRE")
                .unwrap_or_default()
                .split([',', ' '])
                .any(|b| b.eq_ignore_ascii_case("all") || b.eq_ignore_ascii_case("redis"));
            if required {
                return Err(missing.into());
            }
            return Ok(Completion::ignored_with(missing));
        }
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(every_master_is_scanned());
        Ok(Completion::Completed)
    });
    libtest_mimic::run(&Arguments::from_args(), vec![trial]).exit_code()
}
