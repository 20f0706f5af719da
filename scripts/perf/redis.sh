#!/usr/bin/env bash
# See scripts/perf/redis.py: heal7-proxy's Redis side vs direct vs twemproxy, redis-benchmark interleaved.
exec python3 "$(dirname "$0")/redis.py" "$@"
