#!/bin/sh
# Starts (creating it on first use) a private PostgreSQL cluster in DIR, listening only on a
# unix socket in DIR, and prints its DATABASE_URL. initdb refuses to run as root, so as root
# the cluster belongs to the unprivileged `postgres` user.
# Usage: scripts/pg.sh start DIR [PORT]   |   scripts/pg.sh stop DIR
set -eu
cmd=$1; dir=$2; port=${3:-5499}
bindir=$(pg_config --bindir 2>/dev/null || true)
[ -x "$bindir/initdb" ] || bindir=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)

as_owner() {
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

case "$cmd" in
start)
  mkdir -p "$dir"
  if [ "$(id -u)" -eq 0 ]; then
    chown postgres: "$dir"
    if ! runuser -u postgres -- test -w "$dir"; then
      echo "pg.sh: user postgres cannot reach $dir (a parent directory is private)" >&2
      exit 1
    fi
  fi
  if [ ! -f "$dir/data/PG_VERSION" ]; then
    as_owner "$bindir/initdb" -D "$dir/data" -A trust -U postgres -E UTF8 --no-locale >"$dir/initdb.log"
  fi
  if ! as_owner "$bindir/pg_ctl" -D "$dir/data" status >/dev/null 2>&1; then
    as_owner "$bindir/pg_ctl" -D "$dir/data" -l "$dir/postgres.log" -w \
      -o "-p $port -k $dir -c listen_addresses=''" start >/dev/null
  fi
  as_owner "$bindir/psql" -h "$dir" -p "$port" -U postgres -Atqc \
    "SELECT 1 FROM pg_database WHERE datname='retentiond'" postgres | grep -q 1 ||
    as_owner "$bindir/createdb" -h "$dir" -p "$port" -U postgres retentiond
  echo "postgresql:///retentiond?host=$dir&port=$port&user=postgres"
  ;;
stop)
  as_owner "$bindir/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null 2>&1 || true
  ;;
*) echo "usage: $0 start|stop DIR [PORT]" >&2; exit 2 ;;
esac
