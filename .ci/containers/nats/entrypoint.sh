#!/bin/sh
# Like the official nats image: nats-server with the given arguments (the
# testcontainers-modules image passes its own, `-js` among them when asked),
# listening on every interface; it logs "Server is ready" on stderr.
set -eu
mkdir -p /data
cd /data
exec nats-server "$@"
