//! `cargo xtask bench [args]`: runs the benchmark harness in release mode
//! (`cargo run --release -p flextide-bench -- [args]`) from the project root,
//! so results land in `bench-results/`.

use crate::util::{cargo, step};

pub(crate) fn run(args: &[String]) -> Result<(), String> {
    let mut cmd = cargo();
    cmd.args(["run", "--release", "-p", "flextide-bench", "--"])
        .args(args);
    step(cmd, "cargo run --release -p flextide-bench")
}
