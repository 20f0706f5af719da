#!/usr/bin/env python3
"""What heal7-proxy costs, measured against a direct connection and PgBouncer.

Prepares pgbench tables inside schema `bench`, starts heal7-proxy with a map
for them, and runs pgbench interleaved (direct, proxy, pgbouncer, direct, ...)
over several repetitions so drift in the machine hits every target alike:

- direct:    the server itself, with scripts that name `bench.pgbench_*`
- proxy:     heal7-proxy, with pgbench's own bare-name scripts (it qualifies them)
- pgbouncer: PgBouncer in session mode, qualified scripts (when installed)

Prints TPS and mean latency per run, the ratio to direct per repetition, the
median ratio, the proxies' CPU per transaction, and says when the spread of the
ratios is too wide to conclude anything. Beside the tables it writes an SVG
chart (--svg, default target/perf/overhead.svg): per workload and client
count, each target's latency percentiles (p50/p90/p99 of every transaction
of every repetition, from pgbench's per-transaction log) and its median TPS
ratio to direct; and the same figures as JSON next to it (--chart-only JSON
draws the chart again from such a file).

Against a server you name: PGHOST/PGPORT/PGUSER/PGPASSWORD (and --database);
otherwise it starts a throwaway PostgreSQL in a temp dir.

--tls puts TLS on every link (a throwaway server only): the server with
ssl = on, heal7-proxy with proxy.tls require toward pgbench and tls require
toward the server, PgBouncer with client_tls_sslmode and server_tls_sslmode
require, and pgbench with sslmode=require against every target, direct
included. One self-signed certificate (openssl) serves all three.
"""

import argparse
import html
import json
import math
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

SELECT_ONLY = """\\set aid random(1, 100000 * :scale)
SELECT abalance FROM bench.pgbench_accounts WHERE aid = :aid;
"""

TPCB_LIKE = """\\set aid random(1, 100000 * :scale)
\\set bid random(1, 1 * :scale)
\\set tid random(1, 10 * :scale)
\\set delta random(-5000, 5000)
BEGIN;
UPDATE bench.pgbench_accounts SET abalance = abalance + :delta WHERE aid = :aid;
SELECT abalance FROM bench.pgbench_accounts WHERE aid = :aid;
UPDATE bench.pgbench_tellers SET tbalance = tbalance + :delta WHERE tid = :tid;
UPDATE bench.pgbench_branches SET bbalance = bbalance + :delta WHERE bid = :bid;
INSERT INTO bench.pgbench_history (tid, bid, aid, delta, mtime) VALUES (:tid, :bid, :aid, :delta, CURRENT_TIMESTAMP);
END;
"""

# name, builtin script for the proxy, qualified script for the others, extra pgbench flags
WORKLOADS = {
    "select-simple": ("select-only", SELECT_ONLY, ["-M", "simple"]),
    "select-extended": ("select-only", SELECT_ONLY, ["-M", "extended"]),
    "select-prepared": ("select-only", SELECT_ONLY, ["-M", "prepared"]),
    "tpcb-like": ("tpcb-like", TPCB_LIKE, ["-M", "simple"]),
    "connect-per-txn": ("select-only", SELECT_ONLY, ["-M", "simple", "-C"]),
}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, seconds=15):
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"nothing listens on 127.0.0.1:{port} after {seconds}s")


def as_postgres(cmd):
    """Postgres and PgBouncer refuse to run as root: run them as `postgres`."""
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--"] + cmd
    return cmd


def cpu_times(pid):
    """(utime, stime) of a process in seconds, from /proc; None if gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        tick = os.sysconf("SC_CLK_TCK")
        return int(fields[11]) / tick, int(fields[12]) / tick
    except (OSError, IndexError, ValueError):
        return None


def cpu_seconds(pid):
    """utime + stime of a process, from /proc (clock ticks -> seconds)."""
    times = cpu_times(pid)
    return sum(times) if times else None


def make_certificate(work):
    """A self-signed certificate and key for 127.0.0.1, readable by `postgres`."""
    tls = work / "tls"
    tls.mkdir()
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
         "-keyout", str(tls / "server.key"), "-out", str(tls / "server.crt")],
        check=True,
        capture_output=True,
    )
    os.chmod(tls / "server.key", 0o600)
    if os.geteuid() == 0:
        for p in [tls, *tls.iterdir()]:
            shutil.chown(p, "postgres")
    return tls / "server.crt", tls / "server.key"


class Throwaway:
    """A private PostgreSQL cluster in a temp dir."""

    def __init__(self, work, certificate=None):
        bindir = subprocess.run(
            [str(ROOT / "scripts/install-postgres.sh")], check=True, capture_output=True, text=True
        ).stdout.strip()
        self.bindir = bindir
        self.data = work / "data"
        self.port = free_port()
        if os.geteuid() == 0:
            shutil.chown(work, "postgres")
        subprocess.run(
            as_postgres([f"{bindir}/initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust"]),
            check=True,
            capture_output=True,
        )
        conf = (
            f"port = {self.port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{work}'\n"
            "max_connections = 200\nshared_buffers = 256MB\nfsync = off\n"
            "synchronous_commit = off\nfull_page_writes = off\n"
        )
        if certificate:
            conf += f"ssl = on\nssl_cert_file = '{certificate[0]}'\nssl_key_file = '{certificate[1]}'\n"
        with open(self.data / "postgresql.conf", "a") as f:
            f.write(conf)
        subprocess.run(
            as_postgres([f"{bindir}/pg_ctl", "-D", str(self.data), "-w", "-l", str(work / "pg.log"), "start"]),
            check=True,
            capture_output=True,
        )

    def stop(self):
        subprocess.run(
            as_postgres([f"{self.bindir}/pg_ctl", "-D", str(self.data), "-m", "fast", "stop"]),
            capture_output=True,
        )


def psql(port, db, sql, user):
    subprocess.run(
        ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p", str(port), "-U", user, "-d", db, "-c", sql],
        check=True,
        env={**os.environ, "PGOPTIONS": "-c client_min_messages=warning"},
    )


def prepare_tables(port, db, user, scale):
    """pgbench tables inside schema `bench`; none left in public, so a name the
    proxy misses fails loudly instead of reading another table."""
    psql(port, db, "DROP SCHEMA IF EXISTS bench CASCADE", user)
    subprocess.run(
        ["pgbench", "-i", "-q", "-s", str(scale), "-h", "127.0.0.1", "-p", str(port), "-U", user, db],
        check=True,
        capture_output=True,
    )
    psql(
        port,
        db,
        "CREATE SCHEMA bench; "
        + " ".join(f"ALTER TABLE public.pgbench_{t} SET SCHEMA bench;" for t in ("accounts", "branches", "tellers", "history")),
        user,
    )
    # psql -c runs several statements as one transaction; VACUUM refuses that.
    psql(port, db, "VACUUM ANALYZE", user)


def transaction_latencies(prefix):
    """Per-transaction latencies (ms) from the log files pgbench wrote with
    -l --log-prefix=prefix (one per thread: prefix.PID, prefix.PID.N), which
    are removed. The third field is the transaction's time in microseconds."""
    out = []
    for path in prefix.parent.glob(prefix.name + ".*"):
        with open(path) as f:
            for line in f:
                fields = line.split()
                if len(fields) >= 3 and fields[2].isdigit():
                    out.append(int(fields[2]) / 1000.0)
        path.unlink()
    return out


def percentile(sorted_values, q):
    """The q-quantile (0..1) of sorted values, by the nearest rank."""
    if not sorted_values:
        return float("nan")
    return sorted_values[min(len(sorted_values) - 1, max(0, math.ceil(q * len(sorted_values)) - 1))]


def run_pgbench(port, db, user, workload, clients, seconds, scale, scripts_dir, bare, log_prefix=None):
    builtin, script, flags = WORKLOADS[workload]
    cmd = ["pgbench", "-n", "-h", "127.0.0.1", "-p", str(port), "-U", user, "-T", str(seconds), "-c", str(clients), "-j", str(min(clients, 2))]
    cmd += flags
    if log_prefix:
        cmd += ["-l", f"--log-prefix={log_prefix}"]
    # The proxy gets the same script with bare names (what pgbench's builtin
    # `-b {builtin}` sends). `-b` itself cannot be used: pgbench then looks
    # for pgbench_accounts in search_path through a catalog query whose
    # table name is a string literal, which no rewriter should touch.
    # Custom scripts take :scale from -s.
    if bare:
        script = script.replace("bench.pgbench_", "pgbench_")
    path = scripts_dir / f"{workload}{'-bare' if bare else ''}.sql"
    path.write_text(script)
    cmd += ["-s", str(scale), "-f", str(path)]
    cmd.append(db)
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"pgbench failed ({' '.join(cmd)}):\n{out.stdout}\n{out.stderr}")
    tps = float(re.search(r"tps = ([\d.]+)", out.stdout).group(1))
    lat = re.search(r"latency average = ([\d.]+) ms", out.stdout)
    txns = int(re.search(r"number of transactions actually processed: (\d+)", out.stdout).group(1))
    return tps, float(lat.group(1)) if lat else float("nan"), txns


TARGET_COLOURS = {"direct": "#6e7781", "heal7-proxy": "#0969da", "pgbouncer": "#bf8700"}
WORKLOAD_TITLES = {
    "select-simple": "select-only -M simple",
    "select-extended": "select-only -M extended",
    "select-prepared": "select-only -M prepared",
    "tpcb-like": "tpcb-like",
    "connect-per-txn": "select-only -C (connect per transaction)",
}


def chart_svg(results):
    """An SVG chart of `results` (what write_results stores): one row per
    workload and client count; left, each target's latency p50/p90/p99 as
    bars of one colour in three shades; right, its median TPS ratio to
    direct, with a line at 1.0. Plain SVG, no library."""
    rows = results["rows"]
    targets = results["targets"]
    colour = lambda t: TARGET_COLOURS.get(t, ["#8250df", "#1a7f37", "#cf222e"][sum(map(ord, t)) % 3])
    shades = {"p50": 0.4, "p90": 0.7, "p99": 1.0}
    width, row_h, top, left = 960, 170, 70, 20
    lat_w, gap = 560, 60
    ratio_x = left + lat_w + gap
    ratio_w = width - ratio_x - 30
    height = top + row_h * len(rows) + 20
    e = lambda text: html.escape(str(text), quote=True)
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        'font-family="DejaVu Sans, Verdana, sans-serif" font-size="11">',
        f'<rect width="{width}" height="{height}" fill="#ffffff"/>',
        f'<text x="{left}" y="20" font-size="14" font-weight="bold">{e(results["title"])}</text>',
        f'<text x="{left}" y="38" fill="#57606a">{e(results["subtitle"])}</text>',
    ]
    # Legend: targets, then what the shades mean.
    x = left
    for t in targets:
        out.append(f'<rect x="{x}" y="48" width="12" height="10" fill="{colour(t)}"/><text x="{x + 16}" y="57">{e(t)}</text>')
        x += 24 + 7 * len(t)
    out.append(f'<text x="{x + 10}" y="57" fill="#57606a">bars, left to right: p50, p90, p99 latency (ms, log scale) of every transaction; right: median TPS ratio to direct</text>')
    for i, row in enumerate(rows):
        y0 = top + i * row_h
        title = f'{WORKLOAD_TITLES.get(row["workload"], row["workload"])}, {row["clients"]} client{"s" if row["clients"] != 1 else ""}'
        out.append(f'<text x="{left}" y="{y0 + 14}" font-weight="bold">{e(title)}</text>')
        plot_top, plot_bottom = y0 + 30, y0 + row_h - 28
        plot_h = plot_bottom - plot_top
        values = [row["targets"][t][p] for t in targets if t in row["targets"] for p in shades]
        values = [v for v in values if isinstance(v, (int, float)) and math.isfinite(v)]
        # A log scale, whole decades: a p99 a hundred times the p50 leaves
        # the p50 readable.
        positive = [v for v in values if v > 0] or [1.0]
        lo = math.floor(math.log10(min(positive)))
        hi = max(lo + 1, math.ceil(math.log10(max(positive))))
        height_of = lambda v: plot_h * (math.log10(v) - lo) / (hi - lo) if v > 0 else 0
        axis_left = left + 44
        for d in range(lo, hi + 1):
            y = plot_bottom - plot_h * (d - lo) / (hi - lo)
            out.append(f'<line x1="{axis_left}" y1="{y:.1f}" x2="{left + lat_w}" y2="{y:.1f}" stroke="#eaeef2"/>')
            out.append(f'<text x="{axis_left - 4}" y="{y + 4:.1f}" text-anchor="end" fill="#57606a">{10.0 ** d:g}</text>')
        out.append(f'<text x="{axis_left - 4}" y="{plot_top - 8}" text-anchor="end" fill="#57606a">ms</text>')
        group_w = (left + lat_w - axis_left) / max(1, len(targets))
        bar_w = min(36, (group_w - 24) / 3)
        for j, t in enumerate(targets):
            stats = row["targets"].get(t)
            gx = axis_left + j * group_w + (group_w - 3 * bar_w) / 2
            out.append(f'<text x="{gx + 1.5 * bar_w:.1f}" y="{plot_bottom + 14}" text-anchor="middle">{e(t)}</text>')
            if not stats:
                continue
            for k, (p, opacity) in enumerate(shades.items()):
                v = stats[p]
                if not (isinstance(v, (int, float)) and math.isfinite(v)):
                    continue
                h = height_of(v)
                bx = gx + k * bar_w
                out.append(
                    f'<rect x="{bx:.1f}" y="{plot_bottom - h:.1f}" width="{bar_w - 2:.1f}" height="{h:.1f}" '
                    f'fill="{colour(t)}" fill-opacity="{opacity}"><title>{e(t)} {p}: {v:.3f} ms</title></rect>'
                )
                out.append(f'<text x="{bx + (bar_w - 2) / 2:.1f}" y="{plot_bottom - h - 3:.1f}" text-anchor="middle" font-size="9">{v:.2f}</text>')
        # TPS ratio to direct, one horizontal bar per target.
        rmax = max([1.2] + [row["targets"][t]["ratio"] for t in targets if t in row["targets"]])
        bar_h = min(22, (plot_h - 10) / max(1, len(targets)))
        one = ratio_x + 80 + (ratio_w - 120) * 1.0 / rmax
        for j, t in enumerate(targets):
            stats = row["targets"].get(t)
            by = plot_top + j * (bar_h + 6)
            out.append(f'<text x="{ratio_x + 74}" y="{by + bar_h * 0.7:.1f}" text-anchor="end">{e(t)}</text>')
            if not stats:
                continue
            w = (ratio_w - 120) * stats["ratio"] / rmax
            out.append(f'<rect x="{ratio_x + 80}" y="{by:.1f}" width="{w:.1f}" height="{bar_h:.1f}" fill="{colour(t)}"/>')
            noisy = "*" if stats.get("noisy") else ""
            out.append(f'<text x="{ratio_x + 84 + w:.1f}" y="{by + bar_h * 0.7:.1f}">{stats["ratio"]:.2f}{noisy}</text>')
        out.append(f'<line x1="{one:.1f}" y1="{plot_top - 4}" x2="{one:.1f}" y2="{plot_bottom}" stroke="#57606a" stroke-dasharray="3,3"/>')
        out.append(f'<text x="{one:.1f}" y="{plot_bottom + 14}" text-anchor="middle" fill="#57606a">1.0 = direct</text>')
    out.append(f'<text x="{left}" y="{height - 6}" fill="#57606a">* ratios spread over 15% across repetitions: too noisy to rank by less than that</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def write_results(results, svg_path):
    """The chart at svg_path and its figures beside it (.json)."""
    svg_path = Path(svg_path)
    svg_path.parent.mkdir(parents=True, exist_ok=True)
    svg_path.with_suffix(".json").write_text(json.dumps(results, indent=1) + "\n")
    svg_path.write_text(chart_svg(results))
    print(f"\nchart: {svg_path} (figures: {svg_path.with_suffix('.json')})")


def write_proxy_config(path, listen_port, upstream_port, db, certificate=None):
    """heal7-proxy's config: `db` upstream, the pgbench tables mapped to `bench`."""
    proxy_tls = upstream_tls = ""
    if certificate:
        proxy_tls = f"  tls: {{mode: require, cert_file: {certificate[0]}, key_file: {certificate[1]}}}\n"
        upstream_tls = "    tls: {mode: require}\n"
    path.write_text(
        f"""proxy:
  listen: 127.0.0.1:{listen_port}
{proxy_tls}databases:
  {db}:
    host: 127.0.0.1
    port: {upstream_port}
    database: {db}
{upstream_tls}    schemas:
      bench: {{tables: [pgbench_accounts, pgbench_branches, pgbench_tellers, pgbench_history]}}
"""
    )
    return path


def find_pgbouncer():
    return shutil.which("pgbouncer") or ("/usr/sbin/pgbouncer" if Path("/usr/sbin/pgbouncer").exists() else None)


def write_pgbouncer_config(bdir, listen_port, upstream_port, db, user, password=None, certificate=None):
    """A session-mode PgBouncer in its own folder, owned by `postgres` when
    run as root (PgBouncer refuses root). Returns the ini path."""
    bdir.mkdir()
    pw = f" password={password}" if password else ""
    (bdir / "pgbouncer.ini").write_text(
        f"""[databases]
{db} = host=127.0.0.1 port={upstream_port} dbname={db}{pw}
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {listen_port}
unix_socket_dir =
auth_type = trust
auth_file = {bdir}/users.txt
pool_mode = session
max_client_conn = 200
default_pool_size = 40
logfile = {bdir}/pgbouncer.log
pidfile = {bdir}/pgbouncer.pid
"""
        + (
            f"client_tls_sslmode = require\nclient_tls_cert_file = {certificate[0]}\n"
            f"client_tls_key_file = {certificate[1]}\nserver_tls_sslmode = require\n"
            if certificate
            else ""
        )
    )
    (bdir / "users.txt").write_text(f'"{user}" ""\n')
    if os.geteuid() == 0:
        for p in [bdir, *bdir.iterdir()]:
            shutil.chown(p, "postgres")
    return bdir / "pgbouncer.ini"


def start_proxy(work, upstream_port, db, binary, extra_env=None, name="proxy", certificate=None):
    port = free_port()
    cfg = write_proxy_config(work / f"{name}.yaml", port, upstream_port, db, certificate)
    proc = subprocess.Popen(
        [str(binary), "serve", "--config", str(cfg)],
        env={**os.environ, "RUST_LOG": "heal7_proxy=warn", **(extra_env or {})},
        stderr=open(work / f"{name}.log", "w"),
    )
    wait_port(port)
    return proc, port


def start_pgbouncer(work, upstream_port, db, user, password, certificate=None):
    exe = find_pgbouncer()
    if not exe:
        return None, None, None
    port = free_port()
    bdir = work / "pgbouncer"
    ini = write_pgbouncer_config(bdir, port, upstream_port, db, user, password, certificate)
    if os.geteuid() == 0:
        os.chmod(work, 0o755)
    proc = subprocess.Popen(as_postgres([exe, str(ini)]), stderr=subprocess.DEVNULL)
    wait_port(port)
    # Under runuser the child we started is not PgBouncer itself: take its
    # pid from the pidfile so its CPU time is PgBouncer's.
    pidfile = bdir / "pgbouncer.pid"
    try:
        pid = int(pidfile.read_text().strip())
    except (OSError, ValueError):
        pid = proc.pid
    return proc, port, pid


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=10, help="per pgbench run")
    ap.add_argument("--scale", type=int, default=10)
    ap.add_argument("--clients", default="1,16")
    ap.add_argument("--workloads", default=",".join(WORKLOADS))
    ap.add_argument("--database", default="heal7_bench", help="with PGHOST/PGPORT: an existing database to use")
    ap.add_argument("--binary", default=str(ROOT / "target/release/heal7-proxy"))
    ap.add_argument("--no-build", action="store_true")
    ap.add_argument("--svg", default=str(ROOT / "target/perf/overhead.svg"), help="where the chart goes (and its .json)")
    ap.add_argument("--chart-only", metavar="JSON", help="draw the chart again from a .json this script wrote, then exit")
    ap.add_argument("--tls", action="store_true", help="TLS on every link (see above)")
    ap.add_argument(
        "--proxy-variant",
        action="append",
        default=[],
        metavar="NAME:VAR=VALUE",
        help="also run a second heal7-proxy with this environment, e.g. ct:HEAL7_WORKER_THREADS=1",
    )
    args = ap.parse_args()

    if args.chart_only:
        write_results(json.loads(Path(args.chart_only).read_text()), args.svg)
        return 0

    if not args.no_build:
        subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=ROOT, check=True)

    work = Path(tempfile.mkdtemp(prefix="heal7-bench."))
    os.chmod(work, 0o755)
    server = None
    procs = []
    try:
        certificate = None
        if os.environ.get("PGPORT"):
            if args.tls:
                raise SystemExit("--tls needs the throwaway server (unset PGPORT)")
            port, user = int(os.environ["PGPORT"]), os.environ.get("PGUSER", "postgres")
            db = args.database
        else:
            certificate = make_certificate(work) if args.tls else None
            server = Throwaway(work, certificate)
            port, user, db = server.port, "postgres", args.database
            psql(port, "postgres", f"CREATE DATABASE {db}", user)
        prepare_tables(port, db, user, args.scale)
        if args.tls:
            # Every pgbench run, direct included, asks for TLS.
            os.environ["PGSSLMODE"] = "require"

        proxy, proxy_port = start_proxy(work, port, db, args.binary, certificate=certificate)
        procs.append(proxy)
        bouncer, bouncer_port, bouncer_pid = start_pgbouncer(
            work, port, db, user, os.environ.get("PGPASSWORD"), certificate
        )
        if bouncer:
            procs.append(bouncer)
        targets = [("direct", port, False, None), ("heal7-proxy", proxy_port, True, proxy.pid)]
        for variant in args.proxy_variant:
            vname, _, assignment = variant.partition(":")
            var, _, value = assignment.partition("=")
            vproc, vport = start_proxy(work, port, db, args.binary, {var: value}, vname, certificate)
            procs.append(vproc)
            targets.append((f"proxy-{vname}", vport, True, vproc.pid))
        if bouncer:
            targets.append(("pgbouncer", bouncer_port, False, bouncer_pid))
        else:
            print("pgbouncer not installed: comparing with direct only (apt-get install pgbouncer)")

        tls_note = "; TLS on every link" if args.tls else ""
        started = time.strftime('%Y-%m-%d %H:%M')
        load_before = os.getloadavg()[0]
        print(f"# {started} on {os.cpu_count()} cores; {args.reps} reps x {args.seconds}s, scale {args.scale}{tls_note}")
        summary = []
        chart_rows = []
        logs = work / "logs"
        logs.mkdir()
        if os.geteuid() == 0:
            shutil.chown(logs, "postgres")
        for workload in args.workloads.split(","):
            for clients in [int(c) for c in args.clients.split(",")]:
                rows = {name: [] for name, *_ in targets}
                latencies = {name: [] for name, *_ in targets}
                for rep in range(args.reps):
                    # Rotate the order each repetition so no target always runs first.
                    order = targets[rep % len(targets):] + targets[: rep % len(targets)]
                    for name, tport, bare, pid in order:
                        before = cpu_seconds(pid) if pid else None
                        prefix = logs / f"{name}-{rep}"
                        tps, lat, txns = run_pgbench(tport, db, user, workload, clients, args.seconds, args.scale, work, bare, prefix)
                        latencies[name] += transaction_latencies(prefix)
                        after = cpu_seconds(pid) if pid else None
                        cpu_us = (after - before) / txns * 1e6 if before is not None and after is not None and txns else None
                        rows[name].append((tps, lat, cpu_us))
                print(f"\n## {workload}, {clients} client(s)")
                print(f"{'target':<12} {'rep':>3} {'tps':>10} {'lat ms':>8} {'ratio':>6} {'cpu us/txn':>10}")
                for name, *_ in targets:
                    ratios = []
                    for rep, (tps, lat, cpu) in enumerate(rows[name]):
                        ratio = tps / rows["direct"][rep][0]
                        ratios.append(ratio)
                        cpu_s = f"{cpu:.1f}" if cpu is not None else "-"
                        print(f"{name:<12} {rep:>3} {tps:>10.0f} {lat:>8.3f} {ratio:>6.2f} {cpu_s:>10}")
                    med = statistics.median(ratios)
                    spread = (max(ratios) - min(ratios)) / med if med else 0
                    lat_med = statistics.median(r[1] for r in rows[name])
                    direct_lat = statistics.median(r[1] for r in rows["direct"])
                    cpus = [r[2] for r in rows[name] if r[2] is not None]
                    cpu_med = statistics.median(cpus) if cpus else None
                    summary.append((workload, clients, name, med, spread, (lat_med - direct_lat) * 1000, cpu_med))
                chart_row = {"workload": workload, "clients": clients, "targets": {}}
                print(f"{'target':<12} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'txns':>8}")
                for name, *_ in targets:
                    ordered = sorted(latencies[name])
                    stats = {p: percentile(ordered, q) for p, q in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99))}
                    print(f"{name:<12} {stats['p50']:>8.3f} {stats['p90']:>8.3f} {stats['p99']:>8.3f} {len(ordered):>8}")
                    _, _, _, med, spread, _, _ = next(r for r in reversed(summary) if r[2] == name)
                    chart_row["targets"][name] = {**stats, "transactions": len(ordered), "ratio": med, "noisy": spread > 0.15}
                chart_rows.append(chart_row)
        print("\n## Summary: median TPS ratio to direct (added mean latency, proxy CPU per transaction)")
        print(f"{'workload':<16} {'clients':>7} {'target':<12} {'ratio':>6} {'+lat us':>8} {'cpu us':>7}  note")
        for workload, clients, name, med, spread, dlat, cpu in summary:
            if name == "direct":
                continue
            note = "too noisy to conclude (ratios spread %.0f%%)" % (spread * 100) if spread > 0.15 else ""
            cpu_s = f"{cpu:.1f}" if cpu is not None else "-"
            print(f"{workload:<16} {clients:>7} {name:<12} {med:>6.2f} {dlat:>8.0f} {cpu_s:>7}  {note}")
        write_results(
            {
                "title": "heal7-proxy against direct and PgBouncer" + (" (TLS on every link)" if args.tls else ""),
                "subtitle": f"{started}, {os.cpu_count()} cores, load average {load_before:.1f} before and {os.getloadavg()[0]:.1f} after; "
                f"pgbench, {args.reps} repetitions x {args.seconds} s, scale {args.scale}, interleaved",
                "targets": [name for name, *_ in targets],
                "rows": chart_rows,
            },
            args.svg,
        )
    finally:
        for p in procs:
            p.terminate()
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()
        if server:
            server.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
