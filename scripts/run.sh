#!/bin/sh
# `make run`: with DATABASE_URL unset, start the private cluster under .pgdata/ (created once,
# reused after); apply migrations; make sure a demo tenant exists, loading the sample shop into
# it when it is created (`retentiond demo`; DEMO=0 leaves it empty), with a fresh key; then
# serve on $PORT (default 8080) until Ctrl-C.
set -eu
cd "$(dirname "$0")/.."
bin=build/retentiond
if [ -z "${DATABASE_URL:-}" ]; then
  pgdir=${PGDATA_PRIVATE:-$PWD/.pgdata}
  # as root the cluster belongs to the postgres user, who cannot reach a checkout in a private
  # directory (root's home): then it lives in postgres's own home, one per checkout
  if [ "$(id -u)" -eq 0 ] && ! runuser -u postgres -- test -x "$(dirname "$pgdir")"; then
    pgdir=/var/lib/postgresql/retentiond-$(printf %s "$pgdir" | cksum | cut -d' ' -f1)
  fi
  DATABASE_URL=$(scripts/pg.sh start "$pgdir" "${PGPORT_PRIVATE:-5499}")
  export DATABASE_URL
  echo "private PostgreSQL running in $pgdir (stop it with: scripts/pg.sh stop $pgdir)"
fi
$bin migrate
if $bin tenant create demo --currency "${DEMO_CURRENCY:-USD}" >/dev/null 2>&1 && [ "${DEMO:-1}" != 0 ]; then
  $bin demo --tenant demo
fi
key=$($bin key create --tenant demo --scope ingest,read,admin)
port=${PORT:-8080}
cat <<MSG

retentiond is starting on port $port with tenant "demo".
API key (ingest, read, admin) - shown once, keep it:

  export KEY=$key

Try:
  curl -s localhost:$port/readyz
  curl -s -X POST localhost:$port/v1/orders -H "Authorization: Bearer \$KEY" \\
       -H 'Content-Type: application/json' \\
       -d '{"order_id":"1001","customer_id":"c1","placed_at":"2026-01-05T10:00:00Z","total":"49.90","currency":"USD"}'
  curl -s localhost:$port/v1/metrics/summary -H "Authorization: Bearer \$KEY"
  the dashboard: http://localhost:$port/#key=$key

MSG
exec $bin serve
