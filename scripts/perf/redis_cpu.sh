#!/usr/bin/env bash
# CPU time (user + system, from /proc/PID/stat) each proxy spends per
# request of `redis-benchmark -c CLIENTS -t TEST -n REQUESTS`, with the
# requests/s and the times the proxy went to sleep (voluntary context
# switches) per request, for heal7-proxy (multiplex on and off) and
# twemproxy against one throwaway redis-server. Less swayed by other load
# than requests/s (the proxy's own work per request is counted), more
# than redis_callgrind.sh's instruction counts (batching follows timing).
#
# usage: scripts/perf/redis_cpu.sh [BINARY] [CLIENTS] [TEST] [REQUESTS]
#   defaults: target/release/heal7-proxy 50 set 200000
#   TARGETS="heal7-mux twemproxy heal7-nomux" (default) picks the targets.
# Needs redis-server, redis-tools, nutcracker, python3.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BIN=${1:-$ROOT/target/release/heal7-proxy}
C=${2:-50}
TEST=${3:-set}
N=${4:-200000}
for tool in redis-server redis-benchmark redis-cli nutcracker python3; do
    command -v "$tool" >/dev/null || { echo "$tool not found" >&2; exit 1; }
done
[ -x "$BIN" ] || { echo "$BIN missing: cargo build --release" >&2; exit 1; }
# shellcheck source=redis_targets.sh
. "$(dirname "$0")/redis_targets.sh"
# Clock ticks of user + system time, all threads.
TCK=$(getconf CLK_TCK)
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
sleeps() { cat /proc/"$1"/task/*/status | awk '/^voluntary_ctxt_switches/ {s += $2} END {print s}'; }

echo "redis-benchmark -c $C -t $TEST -n $N"
printf '| target | CPU microseconds/request | requests/s | sleeps/request |\n|---|---|---|---|\n'
for name in ${TARGETS:-heal7-mux twemproxy heal7-nomux}; do
    start_target "$name"
    port=$PORT pid=$PID
    redis-benchmark -p "$port" -c "$C" -n 5000 -t "$TEST" -r 100000 -q >/dev/null 2>&1
    cpu0=$(cpu_ticks "$pid")
    sl0=$(sleeps "$pid")
    rps=$(redis-benchmark -p "$port" -c "$C" -n "$N" -t "$TEST" -r 100000 --csv 2>/dev/null |
        awk -F, 'NR == 2 {gsub(/"/, "", $2); print $2}')
    cpu1=$(cpu_ticks "$pid")
    sl1=$(sleeps "$pid")
    python3 -c "print(f'| $name | {($cpu1 - $cpu0) * 1e6 / $TCK / $N:.2f} | {$rps:,.0f} | {($sl1 - $sl0) / $N:.3f} |')"
    kill "$pid"
    wait "$pid" 2>/dev/null || true
done
