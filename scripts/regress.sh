#!/usr/bin/env bash
# PostgreSQL's own regression suite, directly and through heal7-proxy.
#
# Runs the PostgreSQL 15 regression suite (the one matching the installed
# server package) twice, each time on a fresh throwaway cluster: once
# directly, once through heal7-proxy with an identity map (database key
# `regression`, mode rewrite, the tables test_setup creates listed under
# `public`). Prints the tests run, the tests failing each way and the
# difference, and exits 0 only when both runs fail exactly the same tests.
#
#   scripts/regress.sh                 # parallel_schedule, builds the proxy
#   scripts/regress.sh --serial        # one test at a time (slower)
#   scripts/regress.sh --no-build      # use target/release/heal7-proxy as is
#   scripts/regress.sh --keep          # keep the clusters' data directories
#   scripts/regress.sh --search-path='$user, public'
#                                      # give the proxy's database entry this
#                                      # search_path (default: the proxy's own,
#                                      # i.e. the mapped schemas: `public`)
#   RUST_LOG=heal7_proxy=debug scripts/regress.sh   # log every rewrite
#
# Outputs go to target/regress/ (OUT=DIR overrides): direct/ and proxy/ hold
# pg_regress's regression.out, regression.diffs and results/; heal7-regress.yaml
# and proxy.log are the proxy's config and log; diffs/<test>.diff compares a
# test's diff direct against proxy; summary.txt is what the script printed.
# The suite's sources are cached in target/regress-src/<version>/ (REGRESS_SRC
# overrides) and fetched only once.
#
# What it needs (installed when run as root, from Debian's mirrors only):
# postgresql-15 (server binaries and pg_regress), its source package (a
# deb-src entry is added in /etc/apt/sources.list.d/heal7-regress-src.sources
# when none serves it) and postgresql-server-dev-15 of the same version (PGXS
# to build the suite's C module regress.so), gcc and make.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
t_start=$(date +%s)

schedule_kind=parallel
build=1
keep=0
search_path=
for arg in "$@"; do
  case "$arg" in
    --serial) schedule_kind=serial ;;
    --parallel) schedule_kind=parallel ;;
    --no-build) build=0 ;;
    --keep) keep=1 ;;
    --search-path=*) search_path=${arg#--search-path=} ;;
    -h|--help) sed -n '2,32p' "$0"; exit 0 ;;
    *) echo "unknown argument: $arg (see --help)" >&2; exit 2 ;;
  esac
done

log() { printf '[regress %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }
is_root() { [ "$(id -u)" -eq 0 ]; }

# ---------------------------------------------------------------------------
# 1. The server, its version, pg_regress, and the matching suite.
# ---------------------------------------------------------------------------
bindir=$(scripts/install-postgres.sh)
pgbin15=/usr/lib/postgresql/15/bin
[ -x "$pgbin15/postgres" ] && bindir=$pgbin15
pg_config=$bindir/pg_config
[ -x "$pg_config" ] || pg_config=$(command -v pg_config)
server_version=$("$bindir/postgres" --version)
case "$server_version" in
  *" 15."*) ;;
  *) die "expected a PostgreSQL 15 server in $bindir, found: $server_version" ;;
esac
pkg_version=$(dpkg-query -W -f='${Version}' postgresql-15 2>/dev/null) \
  || die "the postgresql-15 Debian package is not installed; the suite is fetched for its exact version"
pkglibdir=$("$pg_config" --pkglibdir)
pg_regress=$("$pg_config" --pgxs 2>/dev/null | sed 's,/src/makefiles/pgxs.mk$,,')/src/test/regress/pg_regress
[ -x "$pg_regress" ] || pg_regress=$pkglibdir/pgxs/src/test/regress/pg_regress
[ -x "$pg_regress" ] || die "pg_regress not found (Debian ships it in postgresql-15 under $pkglibdir/pgxs/src/test/regress/)"
log "server: $server_version (Debian package $pkg_version); pg_regress: $pg_regress"

export DEBIAN_FRONTEND=noninteractive
apt_src_file=/etc/apt/sources.list.d/heal7-regress-src.sources

# Write a deb-src entry for every Debian mirror the `deb` entries use (same
# URIs, suites and components), then refresh only that list.
add_deb_src() {
  is_root || die "no deb-src entry serves postgresql-15 $pkg_version; as root this script adds one"
  python3 - "$apt_src_file" <<'PY'
import glob, re, sys
out = sys.argv[1]
stanzas, seen = [], set()
def add(uris, suites, comps, signed):
    for uri in uris:
        key = (uri, tuple(suites), tuple(comps))
        if key in seen or "debian" not in uri:
            continue
        seen.add(key)
        s = f"Types: deb-src\nURIs: {uri}\nSuites: {' '.join(suites)}\nComponents: {' '.join(comps)}\n"
        if signed:
            s += f"Signed-By: {signed}\n"
        stanzas.append(s)
for path in sorted(glob.glob("/etc/apt/sources.list.d/*.sources")):
    if path == out:
        continue
    for block in re.split(r"\n\s*\n", open(path).read()):
        f = {}
        for line in block.splitlines():
            if line.startswith("#") or ":" not in line or line[:1].isspace():
                continue
            k, v = line.split(":", 1)
            f[k.strip().lower()] = v.strip()
        if "deb" in f.get("types", "").split() and f.get("enabled", "yes") != "no":
            add(f.get("uris", "").split(), f.get("suites", "").split(),
                f.get("components", "").split(), f.get("signed-by", ""))
for path in ["/etc/apt/sources.list"] + sorted(glob.glob("/etc/apt/sources.list.d/*.list")):
    try:
        lines = open(path).read().splitlines()
    except OSError:
        continue
    for line in lines:
        m = re.match(r"\s*deb\s+(\[[^\]]*\]\s+)?(\S+)\s+(\S+)\s+(.*)", line)
        if m:
            opts = m.group(1) or ""
            signed = re.search(r"signed-by=(\S+?)\]?(\s|$)", opts)
            add([m.group(2)], [m.group(3)], m.group(4).split(), signed.group(1) if signed else "")
if not stanzas:
    sys.exit("no Debian deb entry found in /etc/apt to mirror as deb-src")
open(out, "w").write("# added by heal7-proxy scripts/regress.sh: Debian source packages\n" + "\n".join(stanzas))
PY
  log "added $apt_src_file; refreshing it (apt-get update of that list only)"
  apt-get update -qq -o Dir::Etc::sourcelist="$apt_src_file" -o Dir::Etc::sourceparts=- \
    -o APT::Get::List-Cleanup=0 >&2
}

src_root=${REGRESS_SRC:-$repo/target/regress-src}
src_dir=$src_root/$pkg_version
regress_dir=$src_dir/src/test/regress
if [ ! -f "$regress_dir/parallel_schedule" ] || [ ! -f "$regress_dir/regress.c" ]; then
  mkdir -p "$src_root"
  dl=$(mktemp -d "$src_root/download.XXXXXX")
  log "fetching the source package postgresql-15=$pkg_version (Debian mirrors)"
  if ! (cd "$dl" && apt-get source --download-only -qq "postgresql-15=$pkg_version" >&2 2>/dev/null); then
    add_deb_src
    (cd "$dl" && apt-get source --download-only -qq "postgresql-15=$pkg_version" >&2) \
      || die "apt-get source postgresql-15=$pkg_version failed (is the version still on the mirror?)"
  fi
  log "unpacking (dpkg-source -x, Debian's patches applied)"
  (cd "$dl" && dpkg-source -q -x ./*.dsc tree >"$dl/dpkg-source.log" 2>&1) \
    || { cat "$dl/dpkg-source.log" >&2; die "dpkg-source -x failed"; }
  rm -rf "$src_dir"
  mkdir -p "$src_dir/src/test"
  mv "$dl/tree/src/test/regress" "$src_dir/src/test/regress"
  rm -rf "$dl"
fi
# PostgreSQL 15 has no input/ output/ directories (the tests read
# PG_ABS_SRCDIR, PG_LIBDIR and PG_DLSUFFIX from the environment instead).
for d in sql expected data; do [ -d "$regress_dir/$d" ] || die "missing $regress_dir/$d"; done

# regress.so: src/test/regress/regress.c built with PGXS against the installed
# server's headers. test_setup itself loads it, so there is no useful subset
# of the suite without it.
lib_dir=$src_dir/lib
if [ ! -f "$lib_dir/regress.so" ]; then
  if [ ! -f "$("$pg_config" --includedir-server)/postgres.h" ] || [ ! -f "$("$pg_config" --pgxs)" ]; then
    is_root || die "postgresql-server-dev-15 (PGXS, server headers) is missing; as root: apt-get install postgresql-server-dev-15=$pkg_version"
    log "installing postgresql-server-dev-15=$pkg_version (PGXS and server headers)"
    apt-get install -y -qq --no-install-recommends "postgresql-server-dev-15=$pkg_version" >&2 \
      || die "could not install postgresql-server-dev-15=$pkg_version"
  fi
  command -v gcc >/dev/null && command -v make >/dev/null || die "gcc and make are needed to build regress.so"
  mkdir -p "$lib_dir/build"
  cp "$regress_dir/regress.c" "$lib_dir/build/"
  printf 'MODULES = regress\nPG_CONFIG = %s\nPGXS := $(shell $(PG_CONFIG) --pgxs)\ninclude $(PGXS)\n' \
    "$pg_config" > "$lib_dir/build/Makefile"
  log "building regress.so with PGXS"
  make -s -C "$lib_dir/build" with_llvm=no >&2 || die "building regress.so failed"
  cp "$lib_dir/build/regress.so" "$lib_dir/"
fi
# The suite also loads contrib/spi's refint and autoinc from the same
# directory; Debian's postgresql-15 ships them built.
for m in refint autoinc; do
  [ -f "$pkglibdir/$m.so" ] || die "$pkglibdir/$m.so is missing (postgresql-15 ships it)"
  cp -f "$pkglibdir/$m.so" "$lib_dir/"
done

# ---------------------------------------------------------------------------
# 2. The proxy.
# ---------------------------------------------------------------------------
target_dir=${CARGO_TARGET_DIR:-$repo/target}
proxy_bin=$target_dir/release/heal7-proxy
if [ "$build" -eq 1 ]; then
  log "cargo build --release (in $repo)"
  cargo build --release --quiet
fi
[ -x "$proxy_bin" ] || die "$proxy_bin is missing (run without --no-build)"

# ---------------------------------------------------------------------------
# 3. The runs.
# ---------------------------------------------------------------------------
out=${OUT:-$repo/target/regress}
rm -rf "$out"
mkdir -p "$out"
work=$(mktemp -d /tmp/heal7-regress.XXXXXX)
chmod 755 "$work"

as_pg=()
if is_root; then
  id postgres >/dev/null 2>&1 || useradd --system --home-dir /var/lib/postgresql postgres
  as_pg=(runuser -u postgres --)
fi
pg_user=postgres   # initdb -U postgres below

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

proxy_pid=
pg_datadir=
cleanup() {
  if [ -n "$proxy_pid" ]; then kill "$proxy_pid" 2>/dev/null || true; wait "$proxy_pid" 2>/dev/null || true; fi
  if [ -n "$pg_datadir" ]; then
    "${as_pg[@]}" "$bindir/pg_ctl" -D "$pg_datadir" -m immediate stop >/dev/null 2>&1 || true
  fi
  if [ "$keep" -eq 0 ]; then rm -rf "$work"; else log "kept $work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The tables test_setup creates and later tests read: listed under `public`,
# so every bare use of them is sent as public.<name> (an identity map: the
# same objects, reached through the proxy's qualification).
mapped_tables=(char_tbl float8_tbl int2_tbl int4_tbl int8_tbl point_tbl text_tbl varchar_tbl
  onek onek2 tenk1 tenk2 person emp student stud_emp road ihighway shighway)

# The schedule: parallel_schedule as is, or one test per line.
schedule=$work/schedule
if [ "$schedule_kind" = parallel ]; then
  cp "$regress_dir/parallel_schedule" "$schedule"
else
  # one test per line; `ignore:` lines stay where they were
  awk '/^ignore:/ {print; next} /^test:/ { for (i = 2; i <= NF; i++) print "test: " $i }' \
    "$regress_dir/parallel_schedule" > "$schedule"
fi

start_cluster() { # name -> sets pg_port, pg_datadir
  local name=$1
  local d=$work/$name
  mkdir -p "$d"
  chmod 755 "$d"
  is_root && chown postgres "$d"
  pg_port=$(free_port)
  pg_datadir=$d/data
  "${as_pg[@]}" "$bindir/initdb" -D "$pg_datadir" -U postgres -A trust -E UTF8 --no-locale >"$d/initdb.log" 2>&1 \
    || { cat "$d/initdb.log" >&2; die "initdb failed"; }
  # What pg_regress --temp-instance adds to a temporary cluster's config.
  cat >>"$pg_datadir/postgresql.conf" <<CONF

# added by heal7-proxy scripts/regress.sh (as pg_regress --temp-instance does)
listen_addresses = '127.0.0.1'
port = $pg_port
unix_socket_directories = '$d'
log_autovacuum_min_duration = 0
log_checkpoints = on
log_line_prefix = '%m %b[%p] %q%a '
log_lock_waits = on
log_temp_files = 128kB
max_prepared_transactions = 2
CONF
  "${as_pg[@]}" "$bindir/pg_ctl" -D "$pg_datadir" -w -t 60 -l "$d/postgres.log" start >/dev/null \
    || { tail -20 "$d/postgres.log" >&2; die "the cluster did not start"; }
}

stop_cluster() {
  "${as_pg[@]}" "$bindir/pg_ctl" -D "$pg_datadir" -m fast -w stop >/dev/null 2>&1 || true
  pg_datadir=
}

# pg_regress runs as the postgres OS user when we are root: the server writes
# into results/ (COPY TO, lo_export) and reads data/ by absolute path.
run_suite() { # name host port
  local name=$1 host=$2 port=$3
  local o=$out/$name
  mkdir -p "$o"
  is_root && chown -R postgres "$o"
  log "$name: pg_regress ($schedule_kind schedule) against $host:$port"
  local t0=$(date +%s) rc=0
  (cd "$o" && "${as_pg[@]}" env -u PGHOST -u PGHOSTADDR -u PGPORT -u PGDATABASE -u PGSERVICE -u PGOPTIONS -u PGUSER \
     timeout "${REGRESS_TIMEOUT:-900}" "$pg_regress" \
      --bindir="$bindir" --inputdir="$regress_dir" --outputdir="$o" --dlpath="$lib_dir" \
      --host="$host" --port="$port" --user="$pg_user" --dbname=regression \
      --schedule="$schedule" --max-concurrent-tests=20 \
      >"$o/pg_regress.log" 2>&1) || rc=$?
  echo $(( $(date +%s) - t0 )) >"$o/seconds"
  echo "$rc" >"$o/exit_code"
  log "$name: done in $(cat "$o/seconds") s (pg_regress exit code $rc)"
  [ "$rc" -eq 124 ] && log "$name: pg_regress timed out"
  # What a session of the regression database gets (the database is left in
  # place by pg_regress).
  PGOPTIONS= psql -X -At -h "$host" -p "$port" -U postgres -d regression \
    -c 'SHOW search_path' >"$o/search_path" 2>&1 || true
  return 0
}

# Direct.
start_cluster direct
run_suite direct 127.0.0.1 "$pg_port"
cp "$work/direct/postgres.log" "$out/direct/postgres.log" 2>/dev/null || true
stop_cluster

# Through the proxy, on a fresh cluster.
start_cluster proxy
proxy_port=$(free_port)
admin_port=$(free_port)
# The config lives outside the directories pg_regress writes to, and
# nothing reads it while the proxy runs: heal7-proxy watches it, and any
# access to the file (even a read) makes it reload (see the summary's
# "config reloads" line).
config=$out/heal7-regress.yaml
{
  echo "# written by scripts/regress.sh: identity map for PostgreSQL's regression database"
  echo "proxy:"
  echo "  listen: 127.0.0.1:$proxy_port"
  echo "  admin_listen: 127.0.0.1:$admin_port"
  echo "databases:"
  echo "  regression:"
  echo "    host: 127.0.0.1"
  echo "    port: $pg_port"
  echo "    mode: rewrite"
  if [ -n "$search_path" ]; then
    echo "    search_path: [$(python3 -c 'import json,sys; print(", ".join(json.dumps(x.strip()) for x in sys.argv[1].split(",")))' "$search_path")]"
  fi
  echo "    schemas:"
  echo "      public:"
  echo "        tables: [$(IFS=,; echo "${mapped_tables[*]}" | sed 's/,/, /g')]"
} >"$config"
mkdir -p "$out/proxy"
RUST_LOG=${RUST_LOG:-heal7_proxy=info} NO_COLOR=1 "$proxy_bin" serve --config "$config" >"$out/proxy.log" 2>&1 &
proxy_pid=$!
for _ in $(seq 100); do
  (exec 3<>/dev/tcp/127.0.0.1/"$proxy_port") 2>/dev/null && break
  kill -0 "$proxy_pid" 2>/dev/null || { cat "$out/proxy.log" >&2; die "the proxy exited"; }
  sleep 0.1
done
log "proxy: $proxy_bin on 127.0.0.1:$proxy_port -> 127.0.0.1:$pg_port (config $config)"
run_suite proxy 127.0.0.1 "$proxy_port"
if kill -0 "$proxy_pid" 2>/dev/null; then echo yes; else echo "NO (see $out/proxy.log)"; fi >"$out/proxy/proxy_alive"
# What the proxy did with the suite's statements (its Prometheus counters).
python3 -c 'import sys, urllib.request; sys.stdout.write(urllib.request.urlopen(sys.argv[1], timeout=10).read().decode())' \
  "http://127.0.0.1:$admin_port/metrics" >"$out/proxy/metrics.txt" 2>/dev/null || true
kill "$proxy_pid" 2>/dev/null || true
wait "$proxy_pid" 2>/dev/null || true
proxy_pid=
cp "$work/proxy/postgres.log" "$out/proxy/postgres.log" 2>/dev/null || true
stop_cluster

# ---------------------------------------------------------------------------
# 4. The comparison.
# ---------------------------------------------------------------------------
total=$(( $(date +%s) - t_start ))
rc=0
python3 - "$out" "$schedule_kind" "$server_version" "$pkg_version" "$total" <<'PY' || rc=$?
import os, re, sys
out, kind, server, pkg, total = sys.argv[1:6]

line_re = re.compile(r"^(?:test\s+|\s+|ok \d+\s+[-+]\s+|not ok \d+\s+[-+]\s+)(\S+)\s+\.\.\.\s+(ok|FAILED|failed \(ignored\))")
def results(run):
    tests, order = {}, []
    path = os.path.join(out, run, "pg_regress.log")
    for line in open(path, errors="replace"):
        m = line_re.match(line)
        if m:
            name, status = m.group(1), m.group(2)
            if name not in tests:
                order.append(name)
            tests[name] = status
    return tests, order

def diffs(run):
    """regression.diffs split per test, with the run's own paths removed."""
    path = os.path.join(out, run, "regression.diffs")
    per = {}
    if not os.path.exists(path):
        return per
    cur = None
    for line in open(path, errors="replace"):
        m = re.match(r"^diff (?:-\S+ )*(\S+)/expected/(\S+?)(?:_\d+)?\.out (\S+)/results/(\S+?)\.out$", line.rstrip("\n"))
        if m:
            cur = m.group(4)
            per.setdefault(cur, [])
            continue
        if cur is None:
            continue
        if line.startswith("--- ") or line.startswith("+++ "):
            line = line[:4] + os.path.basename(line[4:].split("\t")[0].strip()) + "\n"
        per[cur].append(line)
    return {k: "".join(v) for k, v in per.items()}

d_tests, d_order = results("direct")
p_tests, p_order = results("proxy")
failing = lambda t: {n for n, s in t.items() if s != "ok"}
d_fail, p_fail = failing(d_tests), failing(p_tests)
d_diffs, p_diffs = diffs("direct"), diffs("proxy")

lines = []
p = lines.append
p(f"PostgreSQL regression suite directly and through heal7-proxy ({server}, Debian {pkg}), {kind} schedule")
for run, tests in (("direct", d_tests), ("proxy", p_tests)):
    secs = open(os.path.join(out, run, "seconds")).read().strip()
    code = open(os.path.join(out, run, "exit_code")).read().strip()
    p(f"  {run:7s}: {len(tests)} tests run, {len(failing(tests))} failing, {secs} s (pg_regress exit {code})")
for run in ("direct", "proxy"):
    try:
        sp = open(os.path.join(out, run, "search_path")).read().strip()
    except OSError:
        sp = "?"
    p(f"  search_path of a 'regression' session, {run}: {sp}")
reloads = sum("config file changed" in l for l in open(os.path.join(out, "proxy.log"), errors="replace"))
p(f"  proxy config reloads during the run: {reloads} (nothing changes the file: 0 expected)")
p(f"  proxy still running after the suite: {open(os.path.join(out, 'proxy', 'proxy_alive')).read().strip()}")
def counters(metric, label):
    got = {}
    try:
        text = open(os.path.join(out, "proxy", "metrics.txt")).read()
    except OSError:
        return got
    for m in re.finditer(r"^heal7_proxy_%s\{[^}]*%s=\"([^\"]+)\"[^}]*\} (\S+)$" % (metric, label), text, re.M):
        got[m.group(1)] = got.get(m.group(1), 0) + float(m.group(2))
    return got
st = counters("database_statements_total", "outcome")
st = {k: v for k, v in st.items() if v}
if st:
    p("  statement texts through the proxy, by outcome: " + ", ".join(f"{k} {int(v)}" for k, v in sorted(st.items())))
nm = counters("names_total", "decision")
if nm:
    p("  names found in table positions, by decision: " + ", ".join(f"{k} {int(v)}" for k, v in sorted(nm.items()) if v))
p(f"  failing directly       : {' '.join(sorted(d_fail)) or '-'}")
p(f"  failing through proxy  : {' '.join(sorted(p_fail)) or '-'}")
only_p = sorted(p_fail - d_fail)
only_d = sorted(d_fail - p_fail)
p(f"  fail only through proxy: {' '.join(only_p) or '-'}")
p(f"  fail only directly     : {' '.join(only_d) or '-'}")
missing = sorted(set(d_tests) ^ set(p_tests))
if missing:
    p(f"  run in one only        : {' '.join(missing)}")
both = sorted(d_fail & p_fail)
differ = [t for t in both if d_diffs.get(t) != p_diffs.get(t)]
if both:
    p(f"  failing both ways, same diff     : {' '.join(t for t in both if t not in differ) or '-'}")
    p(f"  failing both ways, diff differs  : {' '.join(differ) or '-'}")
for t in only_p + differ:
    p(f"    {t}: {out}/proxy/regression.diffs, {out}/diffs/{t}.diff; first changed lines:")
    changed = [l.rstrip("\n") for l in p_diffs.get(t, "").splitlines(True)
               if l[:1] in "+-" and not l.startswith(("+++", "---"))]
    for l in changed[:6]:
        p(f"      {l[:150]}")
    if len(changed) > 6:
        p(f"      ... ({len(changed)} changed lines)")
os.makedirs(os.path.join(out, "diffs"), exist_ok=True)
import difflib
for t in only_p + only_d + differ:
    a = d_diffs.get(t, "").splitlines(keepends=True)
    b = p_diffs.get(t, "").splitlines(keepends=True)
    with open(os.path.join(out, "diffs", t + ".diff"), "w") as f:
        f.writelines(difflib.unified_diff(a, b, f"direct/{t}", f"proxy/{t}"))
same = d_fail == p_fail and not missing and len(d_tests) > 0
p(f"  total time: {total} s")
p("RESULT: " + ("same failing tests directly and through the proxy" if same else "DIFFERENT failing tests through the proxy"))
text = "\n".join(lines) + "\n"
open(os.path.join(out, "summary.txt"), "w").write(text)
sys.stdout.write(text)
sys.exit(0 if same else 1)
PY
exit "$rc"
