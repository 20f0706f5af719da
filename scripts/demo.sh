#!/usr/bin/env bash
# Start a throwaway PostgreSQL with the HEAL7 example schema
# (config/heal7-example.sql) and heal7-proxy in front of it (config/heal7.yaml,
# with the upstream port pointed at the throwaway server), with the admin
# HTTP port and an admin console user. Ctrl-C stops both.
#
#   scripts/demo.sh                  # proxy on 127.0.0.1:6432, or a free port if that is taken
#   PROXY_PORT=7432 scripts/demo.sh  # exactly this port: exits 1 if it is taken
#   ADMIN_PORT=9931 scripts/demo.sh  # admin HTTP port (default 9930, or a free one)
#   HEAL7_PROXY_BIN=target/debug/heal7-proxy scripts/demo.sh   # skip the release build
#
# The proxy logs to a file in the demo's directory (named in the output), so
# its lines do not cover the instructions. Exits non-zero, saying why, when
# PostgreSQL or the proxy does not come up.
set -euo pipefail
cd "$(dirname "$0")/.."

die() {
  echo "demo.sh: $*" >&2
  exit 1
}

command -v python3 >/dev/null 2>&1 || die "python3 is missing (the demo uses it to find free ports)"

# Whether 127.0.0.1:$1 can be bound now (as the proxy binds: SO_REUSEADDR).
port_free() {
  python3 - "$1" <<'PY'
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
try:
    s.bind(("127.0.0.1", int(sys.argv[1])))
except OSError:
    sys.exit(1)
PY
}
any_free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
# $1: what the port is for, $2: the port asked for explicitly (may be
# empty), $3: the default. An explicit port that is taken is an error; a
# taken default is replaced by a free port, and the message says so.
choose_port() {
  local what=$1 asked=$2 default=$3 port
  if [ -n "$asked" ]; then
    [[ "$asked" =~ ^[0-9]+$ ]] && [ "$asked" -ge 1 ] && [ "$asked" -le 65535 ] ||
      die "$what port '$asked' is not a port number"
    port_free "$asked" ||
      die "127.0.0.1:$asked ($what) is already in use; free it or pick another port (e.g. $(any_free_port))"
    echo "$asked"
    return
  fi
  if port_free "$default"; then
    echo "$default"
  else
    port=$(any_free_port)
    echo "127.0.0.1:$default ($what) is already in use (PgBouncer's default is 6432); using 127.0.0.1:$port instead" >&2
    echo "$port"
  fi
}

# Ports first: a taken port fails before anything is installed or built.
proxy_port=$(choose_port proxy "${PROXY_PORT:-}" 6432)
admin_port=$(choose_port admin "${ADMIN_PORT:-}" 9930)
[ "$proxy_port" != "$admin_port" ] || die "the proxy and admin ports are both $proxy_port"

bindir=$(scripts/install-postgres.sh) || die "PostgreSQL 15's server binaries are not available"
psql=psql
command -v psql >/dev/null 2>&1 || psql="$bindir/psql"
if [ -n "${HEAL7_PROXY_BIN:-}" ]; then
  proxy_bin=$HEAL7_PROXY_BIN
  [ -x "$proxy_bin" ] || die "HEAL7_PROXY_BIN=$proxy_bin is not an executable"
else
  # pg_query (the exact fallback parser) runs bindgen, which needs libclang.
  if ! dpkg -s libclang-dev >/dev/null 2>&1; then
    if [ "$(id -u)" -ne 0 ]; then
      die "libclang-dev is missing; install it (as root: apt-get install libclang-dev)"
    fi
    echo "installing libclang-dev from Debian's packages..." >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libclang-dev >&2
  fi
  command -v cargo >/dev/null 2>&1 || die "cargo is missing; install Rust (see README, Prerequisites)"
  proxy_bin=target/release/heal7-proxy
fi
pg_port=${PG_PORT:-$(any_free_port)}

work=$(mktemp -d /tmp/heal7-demo.XXXXXX)
chmod 755 "$work"
# Postgres refuses to run as root: run it as the `postgres` OS user then.
as_pg=()
if [ "$(id -u)" -eq 0 ]; then
  id postgres >/dev/null 2>&1 || useradd --system --home-dir "$work" postgres
  chown postgres "$work"
  as_pg=(runuser -u postgres --)
fi

proxy_log=$work/proxy.log
pg_log=$work/postgres.log
cleanup() {
  trap - EXIT INT TERM
  if [ -n "${proxy_pid:-}" ]; then
    kill "$proxy_pid" 2>/dev/null || true
    wait "$proxy_pid" 2>/dev/null || true
  fi
  "${as_pg[@]}" "$bindir/pg_ctl" -D "$work/data" -m fast stop >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
trap 'echo; echo "stopping..."; exit 0' INT TERM

# The last lines of a log, for a failure message.
tail_of() {
  echo "--- last lines of $1 ---" >&2
  tail -n 20 "$1" >&2 2>/dev/null || true
}

echo "starting a throwaway PostgreSQL on 127.0.0.1:$pg_port ($work)"
"${as_pg[@]}" "$bindir/initdb" -D "$work/data" -U postgres -A trust -E UTF8 --locale=C.UTF-8 >"$work/initdb.log" 2>&1 ||
  { tail_of "$work/initdb.log"; die "initdb failed (log above)"; }
touch "$pg_log" && chmod 666 "$pg_log"
if ! "${as_pg[@]}" "$bindir/pg_ctl" -D "$work/data" -w -t 30 -l "$pg_log" \
  -o "-p $pg_port -k $work -c listen_addresses=127.0.0.1" start >/dev/null 2>&1; then
  tail_of "$pg_log"
  die "PostgreSQL did not start on 127.0.0.1:$pg_port (log above)"
fi
PGOPTIONS="-c client_min_messages=warning" "$psql" -X -q -h 127.0.0.1 -p "$pg_port" -U postgres -d postgres \
  -v ON_ERROR_STOP=1 -f config/heal7-example.sql >/dev/null ||
  die "loading config/heal7-example.sql into PostgreSQL failed"

if [ -z "${HEAL7_PROXY_BIN:-}" ]; then
  echo "building heal7-proxy (release)..."
  cargo build --release --quiet || die "cargo build --release failed"
fi

# The admin console user: a fresh password; the config holds its SCRAM
# verifier only.
password=$(python3 -c 'import secrets; print(secrets.token_urlsafe(12))')
verifier=$(printf '%s\n' "$password" | "$proxy_bin" hash-password) || die "heal7-proxy hash-password failed"
config=$work/heal7.yaml
sed -e "s/^\(    port: \)5432/\1$pg_port/" -e "s/^\(  listen: \)127.0.0.1:6432/\1127.0.0.1:$proxy_port/" \
  config/heal7.yaml |
  awk -v admin="127.0.0.1:$admin_port" -v verifier="$verifier" '
    { print }
    /^  listen: / {
      print "  admin_listen: " admin "         # HTTP: /metrics, /mapping, /unmapped, /readyz, POST /reload"
      print "  admin_users:                     # the admin console (database heal7_proxy)"
      print "    admin: \"" verifier "\""
    }
    /^    database: heal7/ {
      print "    mode: rewrite                 # rewrite | dry_run | off: edit and save, the proxy reloads"
    }' >"$config"
grep -q "^  admin_listen: 127.0.0.1:$admin_port" "$config" && grep -q "^    mode: rewrite" "$config" ||
  die "config/heal7.yaml no longer has the lines the demo edits (listen, database: heal7)"

RUST_LOG=${RUST_LOG:-heal7_proxy=debug} "$proxy_bin" serve --config "$config" >"$proxy_log" 2>&1 &
proxy_pid=$!
# Up means: the process still runs, its admin endpoint answers /healthz, and
# the proxy port accepts. Anything else within 15 s is a failure.
up=
for _ in $(seq 150); do
  if ! kill -0 "$proxy_pid" 2>/dev/null; then
    wait "$proxy_pid" 2>/dev/null || true
    proxy_pid=
    tail_of "$proxy_log"
    die "heal7-proxy exited instead of listening on 127.0.0.1:$proxy_port (log above, from $proxy_log)"
  fi
  if curl -fsS -o /dev/null "http://127.0.0.1:$admin_port/healthz" 2>/dev/null &&
    (exec 3<>/dev/tcp/127.0.0.1/"$proxy_port") 2>/dev/null; then
    up=1
    break
  fi
  sleep 0.1
done
if [ -z "$up" ]; then
  tail_of "$proxy_log"
  die "heal7-proxy did not come up on 127.0.0.1:$proxy_port within 15 s (log above, from $proxy_log)"
fi

cat <<MSG

heal7-proxy is listening on 127.0.0.1:$proxy_port in front of the example database (PostgreSQL on 127.0.0.1:$pg_port).
Its log: $proxy_log   (tail -f it in another terminal; RUST_LOG=heal7_proxy=debug shows each rewrite)
Its config: $config

Bare names; the proxy adds the schemas (the public copies say STALE):

  psql -h 127.0.0.1 -p $proxy_port -U postgres heal7 -c 'SELECT id, name FROM users'
  psql -h 127.0.0.1 -p $proxy_port -U postgres heal7_saju -c 'SHOW search_path' -c 'SELECT * FROM kasi_cache'
  direct, for comparison: psql -h 127.0.0.1 -p $pg_port -U postgres heal7 -c 'SELECT name FROM users'

Admin console (user admin, password $password):

  PGPASSWORD=$password psql -h 127.0.0.1 -p $proxy_port -U admin heal7_proxy -c 'SHOW MAPPING'
  PGPASSWORD=$password psql -h 127.0.0.1 -p $proxy_port -U admin heal7_proxy -c 'EXPLAIN REWRITE SELECT * FROM users JOIN kasi_cache ON true'
  PGPASSWORD=$password psql -h 127.0.0.1 -p $proxy_port -U admin heal7_proxy -c 'SHOW STATS'

Admin HTTP (loopback, no token):

  dashboard: http://127.0.0.1:$admin_port/
  curl -s http://127.0.0.1:$admin_port/metrics | grep statements_total
  curl -s http://127.0.0.1:$admin_port/mapping

Live reload: edit $config and save; e.g. roll heal7 back to forwarding unchanged:

  sed -i 's/^    mode: rewrite/    mode: off/' $config
  curl -s http://127.0.0.1:$admin_port/mapping | grep -o '"generation":[0-9]*'
  psql -h 127.0.0.1 -p $proxy_port -U postgres heal7 -c 'SELECT name FROM users'   # now reads public's STALE copy

Ctrl-C stops the proxy and the server and removes $work.
MSG
set +e
wait "$proxy_pid"
status=$?
set -e
proxy_pid=
tail_of "$proxy_log"
die "heal7-proxy stopped (status $status; log above)"
