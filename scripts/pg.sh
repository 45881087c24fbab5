#!/bin/sh
# Starts (creating it on first use) a private PostgreSQL cluster in DIR, listening only on a
# unix socket in DIR, and prints its DATABASE_URL. initdb refuses to run as root, so as root
# the cluster belongs to the unprivileged `postgres` user.
#
# With RETENTIOND_CITUS=1 it is a Citus cluster instead (make test-citus; docs/scaling.md):
# a coordinator in DIR/data on PORT and two workers in DIR/worker1, DIR/worker2 on PORT+1 and
# PORT+2, all on unix sockets in DIR, each with shared_preload_libraries=citus and the
# extension created in its database; the workers are added to the coordinator, whose URL is
# printed. The shards of the distributed tables are on the workers; the coordinator holds the
# metadata, a copy of each reference table and the tables of `retentiond migrate`.
# Usage: scripts/pg.sh start DIR [PORT]   |   scripts/pg.sh stop DIR [fast|immediate]
set -eu
cmd=$1; dir=$2; port=${3:-5499}
bindir=$(pg_config --bindir 2>/dev/null || true)
[ -x "$bindir/initdb" ] || bindir=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
citus=${RETENTIOND_CITUS:-0}

as_owner() {
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

# the nodes: data directory name and port, the coordinator first
nodes() {
  echo "data $port"
  if [ "$citus" = 1 ] || [ -d "$dir/worker1" ]; then
    echo "worker1 $((port + 1))"
    echo "worker2 $((port + 2))"
  fi
}

psql_node() { # PORT SQL
  as_owner "$bindir/psql" -h "$dir" -p "$1" -U postgres -X -Atq -v ON_ERROR_STOP=1 -c "$2" retentiond
}

start_node() { # NAME PORT
  log=$dir/postgres.log
  [ "$1" = data ] || log=$dir/$1.log
  if [ ! -f "$dir/$1/PG_VERSION" ]; then
    as_owner "$bindir/initdb" -D "$dir/$1" -A trust -U postgres -E UTF8 --no-locale >"$dir/initdb-$1.log"
    if [ "$citus" = 1 ]; then
      # shards: 8 per table keep the schema's DDL quick and still spread tenants over both
      # workers; unix sockets carry no TLS
      as_owner sh -c "cat >> '$dir/$1/postgresql.conf'" <<CONF
shared_preload_libraries = 'citus'
max_prepared_transactions = 100
citus.shard_count = 8
citus.node_conninfo = 'sslmode=prefer'
CONF
    fi
  fi
  if ! as_owner "$bindir/pg_ctl" -D "$dir/$1" status >/dev/null 2>&1; then
    as_owner "$bindir/pg_ctl" -D "$dir/$1" -l "$log" -w \
      -o "-p $2 -k $dir -c listen_addresses=''" start >/dev/null
  fi
  as_owner "$bindir/psql" -h "$dir" -p "$2" -U postgres -Atqc \
    "SELECT 1 FROM pg_database WHERE datname='retentiond'" postgres | grep -q 1 ||
    as_owner "$bindir/createdb" -h "$dir" -p "$2" -U postgres retentiond
  if [ "$citus" = 1 ]; then
    psql_node "$2" "CREATE EXTENSION IF NOT EXISTS citus" >/dev/null
  fi
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
  nodes | while read -r name p; do start_node "$name" "$p"; done
  if [ "$citus" = 1 ] &&
     [ "$(psql_node "$port" "SELECT count(*) FROM pg_dist_node WHERE noderole = 'primary' AND nodeport <> $port")" != 2 ]; then
    psql_node "$port" "SELECT citus_set_coordinator_host('$dir', $port)" >/dev/null
    psql_node "$port" "SELECT citus_add_node('$dir', $((port + 1)))" >/dev/null
    psql_node "$port" "SELECT citus_add_node('$dir', $((port + 2)))" >/dev/null
  fi
  echo "postgresql:///retentiond?host=$dir&port=$port&user=postgres"
  ;;
stop)
  mode=${3:-fast}; port=0
  # the coordinator first, so that no client of it is left talking to a stopped worker
  nodes | while read -r name p; do
    as_owner "$bindir/pg_ctl" -D "$dir/$name" -m "$mode" -w stop >/dev/null 2>&1 || true
  done
  ;;
*) echo "usage: $0 start|stop DIR [PORT]" >&2; exit 2 ;;
esac
