//! Project automation. Run `cargo xtask help`.

mod bench;
mod chaos;
mod ci;
mod conformance;
mod util;

use std::process::ExitCode;

const HELP: &str = "\
cargo xtask <command>

Commands:
  conformance [--backend NAME ...]   run the conformance suite per backend and print a table
                                     (backends: memory sqlite postgres mysql redis rabbitmq sqs nats pubsub kafka)
  conformance --containers [--backend NAME ...]
                                     the same through testcontainers: every server started in a
                                     container (DOCKER_HOST names the engine; URL variables ignored)
  bench [--quick] [--backend NAME ...]
                                     benchmark every backend beside its raw client (release
                                     build); writes bench-results/ (see docs/benchmarks.md)
  chaos [--backend NAME ...] [--messages N] [--seconds S] [--scenario NAME ...]
                                     private servers crashed and restarted, workers killed;
                                     checks nothing acknowledged is lost (scenarios: standard
                                     start-down long-outage hang; see docs/reliability.md)
                                     --cluster: on private RabbitMQ, NATS and Redis clusters
  ci                                 fmt check, clippy -D warnings, all tests (conformance included)
                                     with the table, rustdoc -D warnings, cargo package of every crate
  help                               this text

Backends are reached through the variables in .env.example; FLEXTIDE_TEST_REQUIRE=all
turns an unreachable backend into a failure instead of a skip.
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("conformance") => conformance::run(&args[1..]),
        Some("bench") => bench::run(&args[1..]),
        Some("chaos") => chaos::run(&args[1..]),
        Some("ci") => ci::run(&args[1..]),
        Some("help" | "--help" | "-h") | None => {
            print!("{HELP}");
            Ok(())
        }
        Some(other) => Err(format!("unknown command `{other}`\n\n{HELP}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}
