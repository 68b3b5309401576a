//! `cargo xtask chaos [args]`: runs the chaos harness
//! (`cargo run -p flextide-chaos -- [args]`) from the project root, so
//! results land in `chaos-results/`. It starts private servers of its own
//! and never touches the shared ones (see docs/reliability.md).

use crate::util::{cargo, step};

pub(crate) fn run(args: &[String]) -> Result<(), String> {
    let mut cmd = cargo();
    cmd.args(["run", "-p", "flextide-chaos", "--"]).args(args);
    step(cmd, "cargo run -p flextide-chaos")
}
