//! The Lua scripts: every check-and-act on a queue runs in one of them, so it
//! is atomic on the server. Each is the shared prelude plus its own body.

use std::sync::LazyLock;

use redis::Script;

const COMMON: &str = include_str!("lua/common.lua");

/// The source without whole-line comments and indentation: the two halves
/// of a fast pop are sent in full with every call (see [`FAST`]).
fn compact(src: &str) -> String {
    src.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("--"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn script(body: &str) -> Script {
    Script::new(&compact(&format!("{COMMON}\n{body}")))
}

/// Leases up to n messages (redeliveries first), or says how long to block.
pub(crate) static POP: LazyLock<Script> = LazyLock::new(|| script(include_str!("lua/pop.lua")));
/// Enqueues a batch; delayed messages go to the delayed set.
pub(crate) static PUSH: LazyLock<Script> = LazyLock::new(|| script(include_str!("lua/push.lua")));
/// Fenced delete of a batch of deliveries.
pub(crate) static DELETE: LazyLock<Script> =
    LazyLock::new(|| script(include_str!("lua/delete.lua")));
/// Fenced nack, extend or dead-letter of one delivery.
pub(crate) static SETTLE: LazyLock<Script> =
    LazyLock::new(|| script(include_str!("lua/settle.lua")));
/// Counts, after the due work.
pub(crate) static STATS: LazyLock<Script> = LazyLock::new(|| script(include_str!("lua/stats.lua")));
/// Lists waiting messages in delivery order.
pub(crate) static PEEK: LazyLock<Script> = LazyLock::new(|| script(include_str!("lua/peek.lua")));
/// Removes waiting messages.
pub(crate) static PURGE: LazyLock<Script> = LazyLock::new(|| script(include_str!("lua/purge.lua")));
/// Lists, replays and deletes dead letters.
pub(crate) static DEAD: LazyLock<Script> = LazyLock::new(|| script(include_str!("lua/dead.lua")));

/// The first half of a fast pop: the due work and redeliveries. Sent with
/// `EVAL` (the source, not its hash) inside the pop's MULTI/EXEC: a
/// `NOSCRIPT` there would let the XREADGROUP after it deliver entries that
/// no lease covers.
pub(crate) static FAST: LazyLock<String> =
    LazyLock::new(|| compact(&format!("{COMMON}\n{}", include_str!("lua/fast.lua"))));
/// The second half of a fast pop: the lease of what XREADGROUP read.
/// Self-contained and small, also sent with `EVAL`.
pub(crate) static POST: LazyLock<String> = LazyLock::new(|| compact(include_str!("lua/post.lua")));

/// Every script called by hash, to load them once when a queue is opened.
pub(crate) fn all() -> [&'static Script; 8] {
    [&POP, &PUSH, &DELETE, &SETTLE, &STATS, &PEEK, &PURGE, &DEAD]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compact_drops_only_whole_line_comments() {
        assert_eq!(
            compact("-- a comment\n  local x = '--' -- kept\n\n  return x\n"),
            "local x = '--' -- kept\nreturn x"
        );
    }
}
