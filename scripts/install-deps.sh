#!/bin/sh
# Install the Debian packages retentiond needs to build, test and run.
# Used by `make` (deps target) and by docker/Dockerfile, so both install the same set.
# Usage: scripts/install-deps.sh [runtime|build|run|test|bench|fuzz]   (default: test)
#   runtime  what the installed binary needs (the container's runtime stage)
#   build    runtime + the compiler and headers
#   run      build + the PostgreSQL server `make run` starts when DATABASE_URL is unset
#   test     run + the test tools (check, Chromium, Prometheus, Node.js)
set -eu

want=${1:-test}
runtime="libmicrohttpd12 libjansson4 libpq5 libssl3 libcurl4 ca-certificates"
build="gcc make pkg-config libmicrohttpd-dev libjansson-dev libpq-dev libssl-dev libcurl4-openssl-dev"
server="postgresql procps"
test="check libsubunit-dev curl python3 prometheus chromium"
bench="wrk postgresql-contrib"
fuzz="clang libclang-rt-14-dev"

case "$want" in
  runtime) pkgs="$runtime" ;;
  build)   pkgs="$runtime $build" ;;
  run)     pkgs="$runtime $build $server" ;;
  test)    pkgs="$runtime $build $server $test" ;;
  bench)   pkgs="$runtime $build $server $test $bench" ;;
  fuzz)    pkgs="$runtime $build $fuzz" ;;
  *) echo "usage: $0 [runtime|build|run|test|bench|fuzz]" >&2; exit 2 ;;
esac

# The OpenAPI and browser checks run on Node.js; any Node >= 18 will do (a NodeSource one too).
case "$want" in test|bench)
  command -v npm >/dev/null 2>&1 || pkgs="$pkgs nodejs npm" ;;
esac

missing=""
for p in $pkgs; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0

echo "installing:$missing" >&2
if [ "$(id -u)" -eq 0 ]; then sudo=""; else sudo="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
# shellcheck disable=SC2086
$sudo apt-get install -y -qq --no-install-recommends $missing >/dev/null
