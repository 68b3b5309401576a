#!/bin/sh
# Like the official redis image: listens on every interface without
# protected mode, extra arguments go to redis-server, and it logs "Ready to
# accept connections" on stdout, which testcontainers-modules waits for.
set -eu
exec redis-server --bind '* -::*' --protected-mode no --save '' --appendonly no \
  --dir /tmp "$@"
