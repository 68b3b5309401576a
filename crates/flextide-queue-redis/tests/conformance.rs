//! The conformance suite against the Redis at `FLEXTIDE_TEST_REDIS_URL`.
//!
//! Run with: `FLEXTIDE_TEST_REDIS_URL=redis://127.0.0.1:6379/ cargo test -p flextide-queue-redis --test conformance`

mod common;

use std::process::ExitCode;

use flextide_queue_conformance::Connect;

const VAR: &str = "FLEXTIDE_TEST_REDIS_URL";

fn main() -> ExitCode {
    flextide_queue_conformance::run("redis", || async {
        match flextide_queue_conformance::locate(VAR, flextide_queue_conformance::Server::Redis)
            .await
        {
            Ok(located) => common::connect(located.url.clone(), Box::new(located)).await,
            Err(why) => Connect::NotConfigured(why),
        }
    })
}
