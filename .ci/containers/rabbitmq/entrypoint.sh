#!/bin/sh
# Like the official rabbitmq image: runs the broker in the foreground with
# its log on stdout, where testcontainers-modules waits for "Server startup
# complete", and the guest user may connect from outside the container.
set -eu
export RABBITMQ_LOGS=- RABBITMQ_NODENAME=rabbit@localhost HOME=/var/lib/rabbitmq
mkdir -p /etc/rabbitmq /var/lib/rabbitmq
printf 'loopback_users = none\nlisteners.tcp.default = 5672\n' >/etc/rabbitmq/rabbitmq.conf
chown -R rabbitmq:rabbitmq /var/lib/rabbitmq
exec runuser -u rabbitmq -- /usr/lib/rabbitmq/bin/rabbitmq-server "$@"
