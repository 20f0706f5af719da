# Sourced by redis_callgrind.sh and redis_cpu.sh: a throwaway redis-server
# and the targets they measure against it (heal7-proxy with multiplexing on
# or off, rewriting `key:` on db 0 to `bench:key:` on db 1, and twemproxy).
# Needs BIN set; sets T (a temporary directory, removed at exit), PIDS and
# R (the redis-server's port). `start_target NAME` runs one target, as
# measured (one event loop), and sets PORT and PID.

T=$(mktemp -d /tmp/heal7-redis-perf-XXXX)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$T"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
wait_ping() {
    for _ in $(seq 300); do
        redis-cli -p "$1" ping 2>/dev/null | grep -q PONG && return 0
        sleep 0.1
    done
    echo "nothing answers PING on port $1" >&2
    exit 1
}
R=$(free_port)
redis-server --port "$R" --bind 127.0.0.1 --save "" --appendonly no --dir "$T" >/dev/null 2>&1 &
PIDS+=($!)
wait_ping "$R"

command_for() { # name port -> CMD array
    local name=$1 port=$2
    case $name in
        heal7-mux | heal7-nomux)
            local multiplex=true
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
            CMD=("$BIN" serve --config "$T/$name.yaml")
            ;;
        twemproxy)
            printf 'b:\n  listen: 127.0.0.1:%s\n  hash: fnv1a_64\n  distribution: ketama\n  redis: true\n  auto_eject_hosts: false\n  servers:\n    - 127.0.0.1:%s:1\n' \
                "$port" "$R" >"$T/nutcracker.yml"
            CMD=(nutcracker -c "$T/nutcracker.yml" -o "$T/nutcracker.log")
            ;;
        *) echo "unknown target $name" >&2; exit 1 ;;
    esac
}
start_target() { # name -> PORT, PID
    PORT=$(free_port)
    command_for "$1" "$PORT"
    HEAL7_WORKER_THREADS=1 RUST_LOG=warn "${CMD[@]}" >/dev/null 2>&1 &
    PID=$!
    PIDS+=($PID)
    wait_ping "$PORT"
}
