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
T=$(mktemp -d /tmp/heal7-cpu-XXXX)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$T"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
wait_ping() {
    for _ in $(seq 150); do
        redis-cli -p "$1" ping 2>/dev/null | grep -q PONG && return 0
        sleep 0.1
    done
    echo "nothing answers PING on port $1" >&2
    exit 1
}
# Clock ticks of user + system time, all threads.
TCK=$(getconf CLK_TCK)
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
sleeps() { cat /proc/"$1"/task/*/status | awk '/^voluntary_ctxt_switches/ {s += $2} END {print s}'; }

R=$(free_port)
redis-server --port "$R" --bind 127.0.0.1 --save "" --appendonly no --dir "$T" >/dev/null 2>&1 &
PIDS+=($!)
wait_ping "$R"

echo "redis-benchmark -c $C -t $TEST -n $N"
printf '| target | CPU microseconds/request | requests/s | sleeps/request |\n|---|---|---|---|\n'
for name in ${TARGETS:-heal7-mux twemproxy heal7-nomux}; do
    port=$(free_port)
    case $name in
        heal7-mux | heal7-nomux)
            multiplex=true
            [ "$name" = heal7-nomux ] && multiplex=false
            cat >"$T/$name.yaml" <<EOF
proxy: {listen: 127.0.0.1:$(free_port)}
databases: {heal7: {}}
redis:
  listen: 127.0.0.1:$port
  upstream: {host: 127.0.0.1, port: $R}
  multiplex: $multiplex
  namespaces:
    - {from: "key:", from_db: 0, to: "bench:key:", to_db: 1}
EOF
            HEAL7_WORKER_THREADS=1 RUST_LOG=warn "$BIN" serve --config "$T/$name.yaml" >/dev/null 2>&1 &
            ;;
        twemproxy)
            printf 'b:\n  listen: 127.0.0.1:%s\n  hash: fnv1a_64\n  distribution: ketama\n  redis: true\n  auto_eject_hosts: false\n  servers:\n    - 127.0.0.1:%s:1\n' \
                "$port" "$R" >"$T/nutcracker.yml"
            nutcracker -c "$T/nutcracker.yml" -o "$T/nutcracker.log" &
            ;;
        *) echo "unknown target $name" >&2; exit 1 ;;
    esac
    pid=$!
    PIDS+=($pid)
    wait_ping "$port"
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
