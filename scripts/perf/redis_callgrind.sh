#!/usr/bin/env bash
# Where a request's time goes: instructions (callgrind) and syscalls
# (strace -c) per request of `redis-benchmark -c CLIENTS -t TEST` through
# heal7-proxy (multiplex on and off) and twemproxy, against one throwaway
# redis-server. Counts are taken after a warm-up, between a callgrind
# zero and dump, so start-up is not in them. Machine load does not change
# them (unlike requests/s).
#
# usage: scripts/perf/redis_callgrind.sh [--clients N] [--pipeline P] [--test get|set] [--keep DIR] [BINARY] [REQUESTS]
#   --clients N  redis-benchmark's -c (default 1: a lone client; 50 for the
#                shared connections' path)
#   --pipeline P redis-benchmark's -P (default 1: no pipelining)
#   --test T     get (default) or set
#   --keep DIR   copy the callgrind profiles (cg.TARGET.*) there, for
#                callgrind_annotate
#   BINARY   default target/release/heal7-proxy; build it with
#            CARGO_PROFILE_RELEASE_DEBUG=line-tables-only cargo build --release
#            for function names in the profiles
#   REQUESTS default 20000
#   TARGETS="heal7-mux heal7-nomux twemproxy" (default) picks the targets.
# Needs valgrind, strace, redis-server, redis-tools, nutcracker, python3.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
CLIENTS=1
PIPELINE=1
TEST=get
KEEP=
while [ $# -gt 0 ]; do
    case $1 in
        --clients) CLIENTS=$2; shift 2 ;;
        --pipeline) PIPELINE=$2; shift 2 ;;
        --test) TEST=$2; shift 2 ;;
        --keep) KEEP=$2; shift 2 ;;
        --) shift; break ;;
        -*) echo "unknown option $1" >&2; exit 1 ;;
        *) break ;;
    esac
done
BIN=${1:-$ROOT/target/release/heal7-proxy}
N=${2:-20000}
for tool in valgrind callgrind_control strace redis-server redis-benchmark redis-cli nutcracker python3; do
    command -v "$tool" >/dev/null || { echo "$tool not found" >&2; exit 1; }
done
[ -x "$BIN" ] || { echo "$BIN missing: cargo build --release" >&2; exit 1; }
# shellcheck source=redis_targets.sh
. "$(dirname "$0")/redis_targets.sh"

bench() { redis-benchmark -p "$1" -c "$CLIENTS" -P "$PIPELINE" -n "$2" -t "$TEST" -r 100000 -q >/dev/null 2>&1; }

echo "redis-benchmark -c $CLIENTS -P $PIPELINE -t $TEST -n $N"
printf '| target | instructions/request | syscalls/request | syscalls |\n|---|---|---|---|\n'
for name in ${TARGETS:-heal7-mux heal7-nomux twemproxy}; do
    port=$(free_port)
    command_for "$name" "$port"
    HEAL7_WORKER_THREADS=1 RUST_LOG=warn valgrind --tool=callgrind \
        --callgrind-out-file="$T/cg.$name.%p" "${CMD[@]}" >/dev/null 2>"$T/vg.$name.log" &
    vg=$!
    PIDS+=($vg)
    wait_ping "$port"
    bench "$port" 2000
    callgrind_control -z "$vg" >/dev/null 2>&1
    bench "$port" "$N"
    callgrind_control -d "$vg" >/dev/null 2>&1
    kill "$vg"
    wait "$vg" 2>/dev/null || true
    ir=$(grep -h '^summary:' "$T"/cg."$name".*.1 | awk '{print $2}')
    if [ -n "$KEEP" ]; then mkdir -p "$KEEP" && cp "$T"/cg."$name".* "$KEEP"/; fi

    start_target "$name"
    port=$PORT proxy=$PID
    bench "$port" 2000
    strace -c -f -p "$proxy" -o "$T/strace.$name" 2>/dev/null &
    st=$!
    sleep 1
    bench "$port" "$N"
    kill -INT "$st"
    wait "$st" 2>/dev/null || true
    kill "$proxy"
    wait "$proxy" 2>/dev/null || true
    # strace -c: % time, seconds, usecs/call, calls, [errors,] syscall.
    calls=$(awk '$NF == "total" {print $4}' "$T/strace.$name")
    top=$(awk '$1 ~ /^[0-9.]+$/ && NF >= 5 && $NF != "total" {print $NF "=" $4}' "$T/strace.$name" |
        sort -t= -k2 -n -r | head -4 | tr '\n' ' ')
    python3 -c "print(f'| $name | {$ir/$N:,.0f} | {$calls/$N:.1f} | $top|')"
done
