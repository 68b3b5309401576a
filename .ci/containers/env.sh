# Sourced by .ci/run and .ci/containers/*: podman configured for this
# sandbox, its storage (and so the images built here) kept under
# ~/.cache/flextide-ci/podman between runs on the same machine.
#
# What this sandbox needs, and why (podman 4.3.1 from Debian bookworm, run
# as root in a VM with hybrid cgroups and no CAP_SYS_RESOURCE):
# - runtime runc: crun 1.8 refuses hybrid cgroups ("cgroups in hybrid mode
#   not supported, drop all controllers from cgroupv2"); runc accepts them;
# - cgroup manager cgroupfs and a file events log: there is no systemd;
# - default ulimits at or below this shell's hard limits: podman's defaults
#   (nofile 1048576, nproc 4194304) cannot be set without CAP_SYS_RESOURCE
#   ("setrlimit RLIMIT_NOFILE: Operation not permitted");
# - storage driver overlay works as is (the kernel has it), so no vfs.
# Networking is podman's default (netavark bridge); published ports work.
FLEXTIDE_PODMAN_HOME="${FLEXTIDE_CI_PODMAN:-$HOME/.cache/flextide-ci/podman}"
FLEXTIDE_PODMAN_SOCK="${FLEXTIDE_PODMAN_SOCK:-/run/flextide-podman/podman.sock}"
mkdir -p "$FLEXTIDE_PODMAN_HOME" /run/flextide-podman
cat >"$FLEXTIDE_PODMAN_HOME/storage.conf" <<CONF
[storage]
driver = "overlay"
graphroot = "$FLEXTIDE_PODMAN_HOME/storage"
runroot = "/run/flextide-podman/storage"
CONF
cat >"$FLEXTIDE_PODMAN_HOME/containers.conf" <<CONF
[containers]
default_ulimits = ["nofile=$(ulimit -Hn):$(ulimit -Hn)", "nproc=4096:4096"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
CONF
export CONTAINERS_STORAGE_CONF="$FLEXTIDE_PODMAN_HOME/storage.conf"
export CONTAINERS_CONF="$FLEXTIDE_PODMAN_HOME/containers.conf"
