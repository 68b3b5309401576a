#!/bin/sh
# Behaves like the official mariadb image's entrypoint as far as
# testcontainers-modules relies on it: MARIADB_* (or MYSQL_*) ROOT_PASSWORD,
# ALLOW_EMPTY_ROOT_PASSWORD, DATABASE, USER and PASSWORD; extra arguments go
# to mariadbd. The users and database are made through --init-file, so
# "ready for connections" is logged once, by the real server.
set -eu
v() { eval "printf '%s' \"\${MARIADB_$1:-\${MYSQL_$1:-}}\""; }
root_password=$(v ROOT_PASSWORD)
allow_empty=$(v ALLOW_EMPTY_ROOT_PASSWORD)
database=$(v DATABASE)
user=$(v USER)
password=$(v PASSWORD)
if [ -z "$root_password" ] && [ -z "$allow_empty" ]; then
  echo "error: set MARIADB_ROOT_PASSWORD or MARIADB_ALLOW_EMPTY_ROOT_PASSWORD=1" >&2
  exit 1
fi
q() { printf '%s' "$1" | sed "s/\\\\/\\\\\\\\/g; s/'/\\\\'/g"; }
mkdir -p /var/lib/mysql /run/mysqld
chown -R mysql:mysql /var/lib/mysql /run/mysqld
init=/run/mysqld/init.sql
: >"$init"
if [ ! -d /var/lib/mysql/mysql ]; then
  mariadb-install-db --user=mysql --datadir=/var/lib/mysql --skip-test-db \
    --auth-root-authentication-method=normal >/dev/null
  {
    echo "CREATE USER IF NOT EXISTS 'root'@'%' IDENTIFIED BY '$(q "$root_password")';"
    echo "ALTER USER 'root'@'localhost' IDENTIFIED BY '$(q "$root_password")';"
    echo "GRANT ALL ON *.* TO 'root'@'%' WITH GRANT OPTION;"
    [ -n "$database" ] && echo "CREATE DATABASE IF NOT EXISTS \`$database\`;"
    if [ -n "$user" ]; then
      echo "CREATE USER IF NOT EXISTS '$(q "$user")'@'%' IDENTIFIED BY '$(q "$password")';"
      [ -n "$database" ] && echo "GRANT ALL ON \`$database\`.* TO '$(q "$user")'@'%';"
    fi
  } >"$init"
  chown mysql "$init"
fi
exec mariadbd --user=mysql --datadir=/var/lib/mysql --bind-address=0.0.0.0 \
  --skip-name-resolve --init-file="$init" "$@"
