#!/bin/sh
# Applies pending migrations (safe with several replicas: they take an advisory lock), then
# runs the given sub-command (default: serve).
set -eu
if [ "${1:-serve}" = "serve" ]; then
  retentiond migrate
fi
exec retentiond "$@"
