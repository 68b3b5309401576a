#!/bin/sh
# Behaves like the official postgres image's entrypoint as far as
# testcontainers-modules relies on it: POSTGRES_USER / POSTGRES_PASSWORD /
# POSTGRES_DB / POSTGRES_HOST_AUTH_METHOD, extra arguments passed to
# postgres (`-c fsync=off`), and the same log lines in the same streams:
# the first start initialises the data directory with a temporary server
# whose log goes to stdout (its "database system is ready to accept
# connections" is the one the module waits for on stdout), then the real
# server logs to stderr (the one it waits for there).
set -eu
bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n1)
export PGDATA="${PGDATA:-/var/lib/postgresql/data}"
user="${POSTGRES_USER:-postgres}"
db="${POSTGRES_DB:-$user}"
auth="${POSTGRES_HOST_AUTH_METHOD:-scram-sha-256}"
if [ -z "${POSTGRES_PASSWORD:-}" ] && [ "$auth" != trust ]; then
  echo "error: POSTGRES_PASSWORD is not set (or set POSTGRES_HOST_AUTH_METHOD=trust)" >&2
  exit 1
fi
mkdir -p "$PGDATA" /run/postgresql
chown -R postgres:postgres "$PGDATA" /run/postgresql
chmod 700 "$PGDATA"
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  pwfile=$(mktemp)
  printf '%s\n' "${POSTGRES_PASSWORD:-}" >"$pwfile"
  chown postgres "$pwfile"
  runuser -u postgres -- "$bin/initdb" --username="$user" --pwfile="$pwfile" \
    --auth-local=trust --auth-host="$auth" -D "$PGDATA" >/dev/null
  rm -f "$pwfile"
  echo "host all all all $auth" >>"$PGDATA/pg_hba.conf"
  # Only the socket: nothing can reach the temporary server from outside.
  runuser -u postgres -- "$bin/pg_ctl" -D "$PGDATA" -w start \
    -o "-c listen_addresses='' -c unix_socket_directories=/run/postgresql"
  if [ "$db" != postgres ]; then
    runuser -u postgres -- "$bin/psql" -v ON_ERROR_STOP=1 -h /run/postgresql -U "$user" -d postgres \
      -c "CREATE DATABASE \"$db\""
  fi
  runuser -u postgres -- "$bin/pg_ctl" -D "$PGDATA" -m fast -w stop
  echo "PostgreSQL init process complete; ready for start up."
fi
exec setpriv --reuid=postgres --regid=postgres --init-groups -- "$bin/postgres" -D "$PGDATA" \
  -c listen_addresses='*' -c unix_socket_directories=/run/postgresql "$@"
