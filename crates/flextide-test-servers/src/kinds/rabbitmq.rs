//! RabbitMQ: a node of its own (`flextide-<port>@localhost`) with its own
//! ports, mnesia and log directories, configuration and (empty) plugin
//! list, so it never touches the shared node. The node runs as the
//! `rabbitmq` user when we are root, like the packaged wrapper does, so it
//! shares that user's Erlang cookie.

use std::process::Command;

use crate::{
    Server,
    process::{as_service_user, chown_tree, is_root, kill_pid, run, user_ids},
};

const USER: &str = "rabbitmq";
/// The server script itself, not the /usr/sbin wrapper (which switches
/// user with `su`, leaving our process group).
pub(super) const SCRIPT: &str = "/usr/lib/rabbitmq/bin/rabbitmq-server";
/// The control script, for joining a cluster.
const CTL: &str = "/usr/lib/rabbitmq/bin/rabbitmqctl";

fn node_name(server: &Server) -> String {
    format!("flextide-{}@localhost", server.port())
}

/// `amqp10`: enable the bundled `rabbitmq_amqp1_0` plugin (AMQP 1.0 on
/// the node's AMQP port); otherwise no plugins.
pub(super) fn init(server: &Server, amqp10: bool) -> Result<(), String> {
    let dir = server.dir();
    let write = |name: &str, text: String| {
        std::fs::write(dir.join(name), text).map_err(|e| format!("write {name}: {e}"))
    };
    write(
        "rabbitmq.conf",
        format!("listeners.tcp.local = 127.0.0.1:{}\n", server.port()),
    )?;
    // No management plugin: the shared node's management listener port
    // stays its own. The AMQP 1.0 plugin listens on the node's own port.
    let plugins = if amqp10 {
        "[rabbitmq_amqp1_0].\n"
    } else {
        "[].\n"
    };
    write("enabled_plugins", plugins.into())?;
    // Our own (empty) env file instead of /etc/rabbitmq/rabbitmq-env.conf,
    // which names the shared node.
    write("rabbitmq-env.conf", String::new())?;
    if is_root() {
        chown_tree(dir, user_ids(USER)?)?;
    }
    Ok(())
}

pub(super) fn command(server: &Server) -> Result<Command, String> {
    let dir = server.dir();
    let mut cmd = Command::new(SCRIPT);
    cmd.env("RABBITMQ_NODENAME", node_name(server))
        .env("RABBITMQ_NODE_IP_ADDRESS", "127.0.0.1")
        .env("RABBITMQ_NODE_PORT", server.port().to_string())
        .env("RABBITMQ_DIST_PORT", server.ports[1].to_string())
        .env("RABBITMQ_MNESIA_BASE", dir.join("mnesia"))
        .env("RABBITMQ_LOG_BASE", dir.join("log"))
        .env("RABBITMQ_CONFIG_FILE", dir.join("rabbitmq.conf"))
        .env("RABBITMQ_CONF_ENV_FILE", dir.join("rabbitmq-env.conf"))
        .env("RABBITMQ_ENABLED_PLUGINS_FILE", dir.join("enabled_plugins"))
        .env("RABBITMQ_PID_FILE", dir.join("beam.pid"))
        .env("ERL_EPMD_ADDRESS", "127.0.0.1")
        .env("ERL_FLAGS", "-kernel inet_dist_use_interface {127,0,0,1}");
    if is_root() {
        // The node reads its Erlang cookie from $HOME.
        cmd.env("HOME", "/var/lib/rabbitmq");
    }
    as_service_user(&mut cmd, USER)?;
    Ok(cmd)
}

/// `rabbitmqctl -n <node> ...`, as the user (and with the Erlang cookie)
/// the node runs with, away from the shared node's env file.
fn ctl(server: &Server, args: &[&str]) -> Result<(), String> {
    let mut cmd = Command::new(CTL);
    cmd.arg("-n")
        .arg(node_name(server))
        .args(args)
        .env(
            "RABBITMQ_CONF_ENV_FILE",
            server.dir().join("rabbitmq-env.conf"),
        )
        .env("ERL_EPMD_ADDRESS", "127.0.0.1");
    if is_root() {
        cmd.env("HOME", "/var/lib/rabbitmq");
    }
    as_service_user(&mut cmd, USER)?;
    run(&mut cmd, &format!("rabbitmqctl {}", args.join(" ")))
}

/// Joins nodes 1.. to node 0 (`stop_app`, `join_cluster`, `start_app`
/// on each), so queues may have members on every node.
pub(super) fn join(nodes: &[Server]) -> Result<(), String> {
    let Some((seed, rest)) = nodes.split_first() else {
        return Ok(());
    };
    let seed = node_name(seed);
    for node in rest {
        ctl(node, &["stop_app"])?;
        ctl(node, &["join_cluster", &seed])?;
        ctl(node, &["start_app"])?;
    }
    Ok(())
}

/// SIGKILLs this node's Erlang VM: the pid its pid file names, after
/// checking that process carries this node's name (never the shared node).
pub(super) fn kill_node(server: &Server) -> Result<(), String> {
    let pid_file = server.dir().join("beam.pid");
    let Ok(text) = std::fs::read_to_string(&pid_file) else {
        // Not started far enough to write it: the group kill takes it.
        return Ok(());
    };
    let Ok(pid) = text.trim().parse::<i32>() else {
        return Ok(());
    };
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let name = node_name(server);
    if !String::from_utf8_lossy(&cmdline).contains(&name) {
        // Stale pid file of an earlier run of this node: nothing to kill.
        return Ok(());
    }
    kill_pid(pid)
}
