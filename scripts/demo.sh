#!/usr/bin/env bash
# Start a throwaway PostgreSQL with the HEAL7 example schema
# (config/heal7-example.sql) and heal7-proxy in front of it (config/heal7.yaml,
# with the upstream port pointed at the throwaway server). Ctrl-C stops both.
#
#   scripts/demo.sh            # proxy on 127.0.0.1:6432
#   PROXY_PORT=7432 scripts/demo.sh
set -euo pipefail
cd "$(dirname "$0")/.."

bindir=$(scripts/install-postgres.sh)
# pg_query (the exact fallback parser) runs bindgen, which needs libclang.
if ! dpkg -s libclang-dev >/dev/null 2>&1; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "libclang-dev is missing; install it (as root: apt-get install libclang-dev)" >&2
    exit 1
  fi
  echo "installing libclang-dev from Debian's packages..." >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libclang-dev >&2
fi
proxy_port=${PROXY_PORT:-6432}
pg_port=${PG_PORT:-$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')}

work=$(mktemp -d /tmp/heal7-demo.XXXXXX)
chmod 755 "$work"
# Postgres refuses to run as root: run it as the `postgres` OS user then.
as_pg=()
if [ "$(id -u)" -eq 0 ]; then
  id postgres >/dev/null 2>&1 || useradd --system --home-dir "$work" postgres
  chown postgres "$work"
  as_pg=(runuser -u postgres --)
fi

cleanup() {
  [ -n "${proxy_pid:-}" ] && kill "$proxy_pid" 2>/dev/null || true
  "${as_pg[@]}" "$bindir/pg_ctl" -D "$work/data" -m fast stop >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

echo "starting a throwaway PostgreSQL on 127.0.0.1:$pg_port ($work)"
"${as_pg[@]}" "$bindir/initdb" -D "$work/data" -U postgres -A trust -E UTF8 --locale=C.UTF-8 >/dev/null
"${as_pg[@]}" "$bindir/pg_ctl" -D "$work/data" -w -l "$work/postgres.log" \
  -o "-p $pg_port -k $work -c listen_addresses=127.0.0.1" start >/dev/null
PGOPTIONS="-c client_min_messages=warning" psql -X -q -h 127.0.0.1 -p "$pg_port" -U postgres -d postgres -v ON_ERROR_STOP=1 \
  -f config/heal7-example.sql >/dev/null

sed -e "s/^\(    port: \)5432/\1$pg_port/" -e "s/^\(  listen: \)127.0.0.1:6432/\1127.0.0.1:$proxy_port/" \
  config/heal7.yaml > "$work/heal7.yaml"

echo "building heal7-proxy..."
cargo build --release --quiet
RUST_LOG=${RUST_LOG:-heal7_proxy=debug} target/release/heal7-proxy serve --config "$work/heal7.yaml" &
proxy_pid=$!
for _ in $(seq 50); do
  (exec 3<>/dev/tcp/127.0.0.1/"$proxy_port") 2>/dev/null && break
  sleep 0.1
done

cat <<MSG

heal7-proxy is listening on 127.0.0.1:$proxy_port in front of the example database.
Try (bare names; the proxy adds the schemas, the public copies say STALE):

  psql -h 127.0.0.1 -p $proxy_port -U postgres heal7 -c 'SELECT id, name FROM users'
  psql -h 127.0.0.1 -p $proxy_port -U postgres heal7_saju -c 'SHOW search_path' -c 'SELECT * FROM kasi_cache'

and compare with the direct server: psql -h 127.0.0.1 -p $pg_port -U postgres heal7 -c 'SELECT name FROM users'
Ctrl-C stops the proxy and the server.
MSG
wait "$proxy_pid"
