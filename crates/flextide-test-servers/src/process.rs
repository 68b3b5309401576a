//! Processes, ports, users and directories: the plumbing every server kind
//! shares.

use std::{
    fs::File,
    net::{TcpListener, TcpStream},
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use nix::{
    sys::signal::{Signal, kill, killpg},
    unistd::Pid,
};

/// A TCP port on 127.0.0.1 that nobody listens on right now (the kernel
/// picks it, so two runs at once do not collide).
pub fn free_port() -> Result<u16, String> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("could not find a free port: {e}"))
}

/// Whether something accepts TCP connections on 127.0.0.1:`port`.
pub(crate) fn port_open(port: u16) -> bool {
    TcpStream::connect_timeout(
        &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_millis(500),
    )
    .is_ok()
}

/// A new, empty directory under /tmp named after `what`, this process and
/// the time.
pub(crate) fn temp_dir(what: &str) -> Result<PathBuf, String> {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let dir = PathBuf::from(format!(
        "/tmp/flextide-{what}-{}-{nanos:09}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir)
        .map_err(|e| format!("could not create {}: {e}", dir.display()))?;
    Ok(dir)
}

/// Starts `cmd` in a process group of its own (so it and everything it
/// forks can be killed together) with its output appended to `log`.
pub(crate) fn spawn_in_group(cmd: &mut Command, log: &Path) -> Result<Child, String> {
    let out = File::options()
        .create(true)
        .append(true)
        .open(log)
        .map_err(|e| format!("could not open {}: {e}", log.display()))?;
    let err = out
        .try_clone()
        .map_err(|e| format!("could not open {}: {e}", log.display()))?;
    cmd.stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .process_group(0)
        .spawn()
        .map_err(|e| format!("could not start {:?}: {e}", cmd.get_program()))
}

/// SIGKILLs the process group `child` leads, reaps `child`, and waits
/// (up to 10 s) until every process of the group is gone, so its ports
/// are free when this returns.
pub(crate) fn kill_group(child: &mut Child) {
    // The group id is the leader's pid (spawn_in_group made it so).
    let group = Pid::from_raw(child.id() as i32);
    let _ = killpg(group, Signal::SIGKILL);
    let _ = child.wait();
    let deadline = Instant::now() + Duration::from_secs(10);
    // Signal 0 only asks whether any member is left.
    while killpg(group, None).is_ok() && Instant::now() < deadline {
        let _ = killpg(group, Signal::SIGKILL);
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Sends `signal` to one process.
pub(crate) fn signal_pid(pid: i32, signal: Signal) -> Result<(), String> {
    kill(Pid::from_raw(pid), signal).map_err(|e| format!("kill -{signal} {pid}: {e}"))
}

/// SIGKILLs one process by its id.
pub(crate) fn kill_pid(pid: i32) -> Result<(), String> {
    kill(Pid::from_raw(pid), Signal::SIGKILL).map_err(|e| format!("kill -9 {pid}: {e}"))
}

/// The last lines of a log file, for error messages.
pub(crate) fn tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

/// Runs a short command (bounded by `timeout`), returning whether it
/// succeeded and its standard output.
pub(crate) fn probe(program: &str, args: &[&str]) -> (bool, String) {
    match Command::new("timeout")
        .arg("5")
        .arg(program)
        .args(args)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
    {
        Ok(out) => (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        ),
        Err(_) => (false, String::new()),
    }
}

/// Runs a set-up command to completion; fails with its output.
pub(crate) fn run(cmd: &mut Command, what: &str) -> Result<(), String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{what}: could not start {:?}: {e}", cmd.get_program()))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{what} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// Whether this process runs as root (servers that refuse root then run
/// as their own system user).
pub(crate) fn is_root() -> bool {
    // /proc/self belongs to the effective user (no libc call needed).
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// The uid and gid of a system user, from /etc/passwd.
pub(crate) fn user_ids(user: &str) -> Result<(u32, u32), String> {
    let passwd = std::fs::read_to_string("/etc/passwd")
        .map_err(|e| format!("could not read /etc/passwd: {e}"))?;
    passwd
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.len() > 3 && f[0] == user)
        .and_then(|f| Some((f[2].parse().ok()?, f[3].parse().ok()?)))
        .ok_or_else(|| format!("there is no user `{user}` to run the server as"))
}

/// Gives `dir` and everything in it to `ids`.
pub(crate) fn chown_tree(dir: &Path, ids: (u32, u32)) -> Result<(), String> {
    std::os::unix::fs::chown(dir, Some(ids.0), Some(ids.1))
        .map_err(|e| format!("chown {}: {e}", dir.display()))?;
    if dir.is_dir() {
        let entries = std::fs::read_dir(dir).map_err(|e| format!("read {}: {e}", dir.display()))?;
        for entry in entries.flatten() {
            chown_tree(&entry.path(), ids)?;
        }
    }
    Ok(())
}

/// Makes `cmd` run as `user` when we are root (PostgreSQL and RabbitMQ
/// refuse root); the data directory must belong to that user.
pub(crate) fn as_service_user(cmd: &mut Command, user: &str) -> Result<(), String> {
    if is_root() {
        let (uid, gid) = user_ids(user)?;
        cmd.uid(uid).gid(gid);
    }
    Ok(())
}
