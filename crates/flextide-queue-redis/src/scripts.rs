//! The Lua scripts: every check-and-act on a queue runs in one of them, so it
//! is atomic on the server. Each is the shared prelude plus its own body.

use std::sync::LazyLock;

use redis::Script;

const COMMON: &str = include_str!("lua/common.lua");

fn script(body: &str) -> Script {
    Script::new(&format!("{COMMON}\n{body}"))
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
/// Lists and replays dead letters.
pub(crate) static DEAD: LazyLock<Script> = LazyLock::new(|| script(include_str!("lua/dead.lua")));

/// Every script, to load them once when a queue is opened.
pub(crate) fn all() -> [&'static Script; 8] {
    [&POP, &PUSH, &DELETE, &SETTLE, &STATS, &PEEK, &PURGE, &DEAD]
}
