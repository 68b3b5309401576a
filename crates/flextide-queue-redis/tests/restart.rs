//! Survives a crash and restart of a Redis server: a private one this test
//! starts (crate `flextide-test-servers`: its own port and directory, no
//! persistence), SIGKILLs and starts again. The shared server is never
//! touched, so the test always runs where `redis-server` is installed.
//!
//! Without persistence Redis itself forgets everything at the restart, so
//! this test asserts only what must hold: the queue works again by itself
//! (reconnect, scripts reloaded, consumer group re-created), messages pushed
//! after the restart are delivered, and a worker-like loop keeps running.
//!
//! Run with: `cargo test -p flextide-queue-redis --test restart`

use std::{
    collections::HashSet,
    sync::{Arc, Mutex},
    time::Duration,
};

use flextide_queue_conformance::unique_queue_name;
use flextide_queue_core::{Message, MessageId, QueueOptions, QueueProvider};
use flextide_queue_redis::{RedisBackend, RedisConfig};
use flextide_test_servers::{Kind, Server};
use tokio::time::Instant;

const KIND: Kind = Kind::Redis { aof: false };

/// Shown as ignored, with the reason, where redis-server is missing
/// (a failure when FLEXTIDE_TEST_REQUIRE names redis).
fn main() -> std::process::ExitCode {
    use libtest_mimic::{Arguments, Completion, Trial};
    let trial = Trial::ignorable_test("queue_survives_a_server_restart", || {
        if let Err(missing) = flextide_test_servers::installed(KIND) {
            if flextide_queue_conformance::is_required("redis") {
                return Err(missing.into());
            }
            return Ok(Completion::ignored_with(missing));
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("tokio runtime");
        runtime.block_on(queue_survives_a_server_restart());
        Ok(Completion::Completed)
    });
    libtest_mimic::run(&Arguments::from_args(), vec![trial]).exit_code()
}

async fn queue_survives_a_server_restart() {
    let server = tokio::task::spawn_blocking(|| Server::start(KIND))
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("{e}"));
    let url = server.url();
    let backend = RedisBackend::connect(RedisConfig::new(url.as_str()))
        .await
        .unwrap();
    let queue = Arc::new(
        backend
            .open(&unique_queue_name("restart"), QueueOptions::default())
            .await
            .unwrap(),
    );

    // A worker-like loop: pop, delete, and on any error back off and go on.
    let seen: Arc<Mutex<HashSet<MessageId>>> = Arc::default();
    let errors = Arc::new(Mutex::new(0u32));
    let stop = Arc::new(tokio::sync::Notify::new());
    let worker = {
        let (queue, seen, errors, stop) =
            (queue.clone(), seen.clone(), errors.clone(), stop.clone());
        tokio::spawn(async move {
            loop {
                let popped = tokio::select! {
                    r = queue.pop(Duration::from_millis(300)) => r,
                    _ = stop.notified() => return,
                };
                match popped {
                    Ok(Some(d)) => {
                        if queue.delete(&d.receipt).await.is_ok() {
                            seen.lock().unwrap().insert(d.message.id);
                        }
                    }
                    Ok(None) => {}
                    Err(e) => {
                        assert!(
                            e.is_retryable(),
                            "a restart must only cause retryable errors: {e}"
                        );
                        *errors.lock().unwrap() += 1;
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
        })
    };

    let before = queue.push(Message::new("before")).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !seen.lock().unwrap().contains(&before) {
        assert!(
            Instant::now() < deadline,
            "the worker did not handle the message pushed before the restart"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let server = tokio::task::spawn_blocking(move || {
        let mut server = server;
        server.crash().unwrap_or_else(|e| panic!("{e}"));
        server.restart().unwrap_or_else(|e| panic!("{e}"));
        server
    })
    .await
    .unwrap();

    // Pushes may fail (retryably) while the connection is re-established.
    let mut after = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while after.len() < 5 {
        assert!(
            Instant::now() < deadline,
            "pushing did not recover after the restart"
        );
        match queue.push(Message::new("after")).await {
            Ok(id) => after.push(id),
            Err(e) => {
                assert!(
                    e.is_retryable(),
                    "a restart must only cause retryable errors: {e}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while !after.iter().all(|id| seen.lock().unwrap().contains(id)) {
        assert!(!worker.is_finished(), "the worker loop stopped");
        assert!(
            Instant::now() < deadline,
            "messages pushed after the restart were not all delivered"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The consumer group exists again.
    let mut conn = redis::Client::open(url.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let groups: redis::Value = redis::cmd("XINFO")
        .arg("GROUPS")
        .arg(format!("flextide:{{{}}}:s", queue.queue_name()))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(
        format!("{groups:?}").contains("flextide"),
        "consumer group missing: {groups:?}"
    );
    let s = queue.stats().await.unwrap();
    assert_eq!((s.depth, s.in_flight), (0, 0));

    stop.notify_one();
    worker.await.unwrap();
    eprintln!(
        "worker saw {} retryable errors during the restart",
        errors.lock().unwrap()
    );
    queue.drop_queue().await.unwrap();
    drop(queue);
    tokio::task::spawn_blocking(move || drop(server))
        .await
        .unwrap();
}
