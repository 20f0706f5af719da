#!/usr/bin/env bash
# See scripts/perf/overhead.py: heal7-proxy vs direct vs PgBouncer, pgbench interleaved.
exec python3 "$(dirname "$0")/overhead.py" "$@"
