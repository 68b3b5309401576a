#!/bin/sh
# Like the official rabbitmq:*-management image: the broker in the
# foreground with its log on stdout, where testcontainers-modules waits for
# "Server startup complete; 4 plugins started." (management, its agent,
# web dispatch and prometheus, as in that image), and the guest user may
# connect from outside the container.
set -eu
export RABBITMQ_LOGS=- RABBITMQ_NODENAME=rabbit@localhost HOME=/var/lib/rabbitmq
mkdir -p /etc/rabbitmq /var/lib/rabbitmq
printf 'loopback_users = none\nlisteners.tcp.default = 5672\n' >/etc/rabbitmq/rabbitmq.conf
printf '[rabbitmq_management,rabbitmq_prometheus].\n' >/etc/rabbitmq/enabled_plugins
chown -R rabbitmq:rabbitmq /var/lib/rabbitmq
exec setpriv --reuid=rabbitmq --regid=rabbitmq --init-groups -- /usr/lib/rabbitmq/bin/rabbitmq-server "$@"
