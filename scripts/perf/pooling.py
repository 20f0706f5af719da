#!/usr/bin/env python3
"""heal7-proxy's connection pools against a direct connection and PgBouncer.

Starts a throwaway PostgreSQL (max_connections 2 x clients + 100) with a password-
authenticated bench user (`bench_user`, scram-sha-256) and an auth user
(`heal7_auth`) that may only call a SECURITY DEFINER lookup function, the
setup README "Pooling" describes. heal7-proxy (auth_query) and PgBouncer
(auth_user + the same auth_query) both authenticate the bench user
themselves; direct and heal7-proxy `mode: none` relay the login to the server.

Runs pgbench interleaved (direct, proxy none, proxy pooled, PgBouncer, with
the order rotated each repetition) and prints TPS, the ratio to direct per
repetition, the median ratio, and errors per run (pgbench exit status and
its error lines):

1. connect-per-txn: `pgbench -C -S` (a new connection per transaction);
   heal7-proxy `pool.mode: session` against PgBouncer `pool_mode=session`.
2. transaction pooling: `--pool-clients` (200) clients, `-j 2`, on a pool
   of `--pool-size` (10): heal7-proxy `pool: {mode: transaction, size: 10}`
   against PgBouncer `pool_mode=transaction default_pool_size=10`, for
   select-only and tpcb-like with `-M simple`, `-M extended` and
   `-M prepared`. PgBouncer before 1.21 keeps no protocol-level prepared
   statements in transaction mode, so for `-M prepared` it runs in session
   mode (a server connection per client: no pooling) and the output says so.

heal7-proxy gets pgbench's scripts with bare names (it maps the pgbench
tables to schema `bench`); direct and PgBouncer get the `bench.`-qualified
ones. `mode: none` (the 1:1 relay) is a reference row in every workload.

Default: 3 repetitions x 10 s per run; `--reps` and `--seconds` for longer.

--instructions instead counts heal7-proxy's instructions per statement under
callgrind (as instructions.py does: runs of --n1 and --n2 transactions
from one client, the difference divided by the statements run), for
`mode: none`, session and transaction, select-only with `-M simple`,
`-M extended` and `-M prepared` and tpcb-like (7 statements a transaction)
with `-M simple` and `-M extended` (`--workloads` picks some);
`--reps N` there runs each N times and prints the minimum and the median.

--syscalls instead counts system calls per transaction (`strace -c -f`
attached to the pooler for one `pgbench -c 8 -j 2 -S -T --seconds` run
(`--syscall-clients` for another -c, `--syscall-workload` for another workload),
bare names for heal7-proxy), for heal7-proxy transaction mode (pool of
--pool-size), session mode and PgBouncer transaction mode. Like
instruction counts, these hardly move with the machine's load; TPS does.
"""

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from overhead import (  # noqa: E402
    ROOT,
    SELECT_ONLY,
    TPCB_LIKE,
    as_postgres,
    cpu_times,
    find_pgbouncer,
    free_port,
    prepare_tables,
    psql,
    wait_port,
)

BENCH_USER, BENCH_PASSWORD = "bench_user", "bench-secret"
# --isolation: a second service whose pool is saturated by sleepers.
OTHER_USER = "bench_other"
AUTH_USER, AUTH_PASSWORD = "heal7_auth", "auth-secret"
VERBOSE = False

AUTH_QUERY = "SELECT usename, passwd FROM public.heal7_proxy_lookup($1)"

# The bench user and the auth user; the auth user reads verifiers only
# through this function, never pg_shadow itself (as in tests/e2e/harness.rs).
ROLES_SQL = f"""
SET password_encryption = 'scram-sha-256';
CREATE ROLE {BENCH_USER} LOGIN PASSWORD '{BENCH_PASSWORD}';
CREATE ROLE {AUTH_USER} LOGIN PASSWORD '{AUTH_PASSWORD}';
CREATE ROLE {OTHER_USER} LOGIN PASSWORD '{BENCH_PASSWORD}';
"""
LOOKUP_SQL = f"""
CREATE FUNCTION public.heal7_proxy_lookup(p_user text, OUT usename name, OUT passwd text)
RETURNS record LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog AS
$$ SELECT usename, passwd FROM pg_catalog.pg_shadow WHERE usename = p_user $$;
REVOKE ALL ON FUNCTION public.heal7_proxy_lookup(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION public.heal7_proxy_lookup(text) TO {AUTH_USER};
GRANT USAGE ON SCHEMA bench TO {BENCH_USER};
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA bench TO {BENCH_USER};
GRANT USAGE ON SCHEMA bench TO {OTHER_USER};
GRANT SELECT ON ALL TABLES IN SCHEMA bench TO {OTHER_USER};
"""

# name: (qualified script, pgbench flags)
WORKLOADS = {
    "connect-per-txn": (SELECT_ONLY, ["-M", "simple", "-C"]),
    "select-simple": (SELECT_ONLY, ["-M", "simple"]),
    "select-extended": (SELECT_ONLY, ["-M", "extended"]),
    "select-prepared": (SELECT_ONLY, ["-M", "prepared"]),
    "tpcb-simple": (TPCB_LIKE, ["-M", "simple"]),
    "tpcb-extended": (TPCB_LIKE, ["-M", "extended"]),
    "tpcb-prepared": (TPCB_LIKE, ["-M", "prepared"]),
}


class Throwaway:
    """A private cluster: trust for `postgres` (setup), scram-sha-256 for the
    bench and auth users, room for 200 direct clients."""

    def __init__(self, work, max_connections):
        self.bindir = subprocess.run(
            [str(ROOT / "scripts/install-postgres.sh")], check=True, capture_output=True, text=True
        ).stdout.strip()
        self.data = work / "data"
        self.port = free_port()
        if os.geteuid() == 0:
            shutil.chown(work, "postgres")
        subprocess.run(
            as_postgres([f"{self.bindir}/initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust"]),
            check=True,
            capture_output=True,
        )
        with open(self.data / "postgresql.conf", "a") as f:
            f.write(
                f"port = {self.port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{work}'\n"
                f"max_connections = {max_connections}\nshared_buffers = 256MB\nfsync = off\n"
                "synchronous_commit = off\nfull_page_writes = off\n"
            )
        (self.data / "pg_hba.conf").write_text(
            "local all all trust\n"
            "host all postgres 127.0.0.1/32 trust\n"
            f"host all {BENCH_USER} 127.0.0.1/32 scram-sha-256\n"
            f"host all {AUTH_USER} 127.0.0.1/32 scram-sha-256\n"
            f"host all {OTHER_USER} 127.0.0.1/32 scram-sha-256\n"
        )
        subprocess.run(
            as_postgres([f"{self.bindir}/pg_ctl", "-D", str(self.data), "-w", "-l", str(work / "pg.log"), "start"]),
            check=True,
            capture_output=True,
        )

    def stop(self):
        subprocess.run(
            as_postgres([f"{self.bindir}/pg_ctl", "-D", str(self.data), "-m", "fast", "stop"]),
            capture_output=True,
        )


def run_pgbench(port, db, workload, clients, seconds, scale, scripts_dir, bare):
    """One pgbench run. Never raises on pgbench failure: returns
    (tps or None, exit status, error lines)."""
    script, flags = WORKLOADS[workload]
    if bare:
        script = script.replace("bench.pgbench_", "pgbench_")
    path = scripts_dir / f"{workload}{'-bare' if bare else ''}.sql"
    path.write_text(script)
    cmd = ["pgbench", "-n", "-h", "127.0.0.1", "-p", str(port), "-U", BENCH_USER, "-T", str(seconds)]
    cmd += ["-c", str(clients), "-j", str(min(clients, 2)), *flags, "-s", str(scale), "-f", str(path), db]
    # A run that hangs (a client stuck waiting) must not stop the benchmark.
    try:
        out = subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            env={**os.environ, "PGPASSWORD": BENCH_PASSWORD},
            timeout=seconds + 120,
        )
        stdout, stderr, status = out.stdout, out.stderr, out.returncode
    except subprocess.TimeoutExpired as e:
        stdout = e.stdout.decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
        stderr = (e.stderr.decode() if isinstance(e.stderr, bytes) else (e.stderr or "")) + "\n(timed out)"
        status = "timeout"
    errors = [
        line
        for line in (stdout + "\n" + stderr).splitlines()
        if re.search(r"error|abort|fatal|failed|timed out", line, re.I)
        and not re.match(r"number of failed transactions: 0\b", line)
    ]
    tps = re.search(r"tps = ([\d.]+)", stdout)
    if VERBOSE:
        print(f"$ {' '.join(cmd)}\n{stdout}{stderr}", flush=True)
    return (float(tps.group(1)) if tps else None), status, errors


def latency_run(port, db, user, seconds, scale, scripts_dir):
    """One client, select-only with bare names, `seconds` long: its mean
    latency in ms (pgbench's own figure) and its error lines."""
    path = scripts_dir / "isolation-select-bare.sql"
    path.write_text(SELECT_ONLY.replace("bench.pgbench_", "pgbench_"))
    cmd = ["pgbench", "-n", "-h", "127.0.0.1", "-p", str(port), "-U", user, "-T", str(seconds),
           "-c", "1", "-M", "extended", "-s", str(scale), "-f", str(path), db]
    out = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PGPASSWORD": BENCH_PASSWORD})
    latency = re.search(r"latency average = ([\d.]+) ms", out.stdout)
    errors = [line for line in (out.stdout + out.stderr).splitlines() if re.search(r"error|abort", line, re.I)]
    return (float(latency.group(1)) if latency else None), errors


def isolation(args, work, port, db, procs):
    """Issue 11: one pool (bench_other, size 2) saturated by 10 clients in
    pg_sleep(1) loops; bench_user's pool beside it. bench_user's mean
    latency alone and while the other pool is saturated, interleaved."""
    proc, pport, _ = start_proxy(work, "heal7-isolation", port, db, args.binary,
                                 "mode: transaction, size: 2, query_wait_timeout_ms: 60000")
    procs.append(proc)
    sleep = work / "sleep.sql"
    sleep.write_text("SELECT pg_sleep(1);\n")
    print(f"# {time.strftime('%Y-%m-%d %H:%M')} on {os.cpu_count()} cores: {BENCH_USER}'s select-only latency "
          f"(1 client, -M extended, {args.seconds}s), alone and beside {OTHER_USER}'s pool (size 2) saturated by "
          "10 clients in pg_sleep(1)")
    print(f"{'rep':>3} {'alone ms':>9} {'saturated ms':>13} {'sleepers':>10}")
    for rep in range(args.reps):
        alone, errors_alone = latency_run(pport, db, BENCH_USER, args.seconds, args.scale, work)
        sleepers = subprocess.Popen(
            ["pgbench", "-n", "-h", "127.0.0.1", "-p", str(pport), "-U", OTHER_USER, "-T", str(args.seconds + 4),
             "-c", "10", "-j", "2", "-f", str(sleep), db],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**os.environ, "PGPASSWORD": BENCH_PASSWORD},
        )
        time.sleep(2)
        saturated, errors_saturated = latency_run(pport, db, BENCH_USER, args.seconds, args.scale, work)
        sleepers.wait()
        waiting = "ran" if sleepers.returncode == 0 else f"exit {sleepers.returncode}"
        fmt = lambda v: f"{v:.3f}" if v is not None else "-"
        print(f"{rep:>3} {fmt(alone):>9} {fmt(saturated):>13} {waiting:>10}", flush=True)
        for line in (errors_alone + errors_saturated)[:5]:
            print(f"    error: {line}")
    return 0


def write_proxy_config(path, listen_port, upstream_port, db, pool, password_file):
    """heal7-proxy with one entry `db`, the pgbench tables mapped to `bench`,
    and `pool` (a YAML flow-map body, or None for mode none)."""
    pool_yaml = ""
    if pool:
        pool_yaml = (
            f"    pool: {{{pool}, auth_user: {AUTH_USER}, auth_password_file: {password_file}, "
            f'auth_query: "{AUTH_QUERY}"}}\n'
        )
    path.write_text(
        f"""proxy:
  listen: 127.0.0.1:{listen_port}
databases:
  {db}:
    host: 127.0.0.1
    port: {upstream_port}
    database: {db}
{pool_yaml}    schemas:
      bench: {{tables: [pgbench_accounts, pgbench_branches, pgbench_tellers, pgbench_history]}}
"""
    )


def start_proxy(work, name, upstream_port, db, binary, pool):
    port = free_port()
    password_file = work / "auth-password"
    password_file.write_text(AUTH_PASSWORD + "\n")
    cfg = work / f"{name}.yaml"
    write_proxy_config(cfg, port, upstream_port, db, pool, password_file)
    log = work / f"{name}.log"
    proc = subprocess.Popen(
        [str(binary), "serve", "--config", str(cfg)],
        env={**os.environ, "RUST_LOG": "heal7_proxy=warn"},
        stderr=open(log, "w"),
    )
    wait_port(port)
    return proc, port, log


def start_pgbouncer(work, name, upstream_port, db, mode, pool_size, max_clients):
    """PgBouncer authenticating clients itself with the same auth_query;
    the auth user's password is in its auth_file."""
    exe = find_pgbouncer()
    if not exe:
        return None
    port = free_port()
    bdir = work / name
    bdir.mkdir()
    (bdir / "pgbouncer.ini").write_text(
        f"""[databases]
{db} = host=127.0.0.1 port={upstream_port} dbname={db}
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir =
auth_type = scram-sha-256
auth_file = {bdir}/users.txt
auth_user = {AUTH_USER}
auth_query = {AUTH_QUERY}
pool_mode = {mode}
max_client_conn = {max_clients}
default_pool_size = {pool_size}
logfile = {bdir}/pgbouncer.log
pidfile = {bdir}/pgbouncer.pid
"""
    )
    (bdir / "users.txt").write_text(f'"{AUTH_USER}" "{AUTH_PASSWORD}"\n')
    if os.geteuid() == 0:
        for p in [bdir, *bdir.iterdir()]:
            shutil.chown(p, "postgres")
        os.chmod(work, 0o755)
    proc = subprocess.Popen(as_postgres([exe, str(bdir / "pgbouncer.ini")]), stderr=subprocess.DEVNULL)
    wait_port(port)
    try:
        pid = int((bdir / "pgbouncer.pid").read_text().strip())
    except (OSError, ValueError):
        pid = proc.pid
    return proc, port, pid, bdir / "pgbouncer.log"


def log_tail(path, since, lines=8):
    """The lines a log gained after byte offset `since`, at most `lines`."""
    try:
        with open(path, "rb") as f:
            f.seek(since)
            text = f.read().decode(errors="replace")
    except OSError:
        return []
    return [line for line in text.splitlines() if line.strip()][:lines]


def log_size(path):
    try:
        return path.stat().st_size
    except OSError:
        return 0


def count_instructions(args, work, port, db):
    """Instructions per statement of heal7-proxy in each pool mode, 1 client."""
    print(f"# {time.strftime('%Y-%m-%d %H:%M')}: heal7-proxy instructions per statement, 1 client, "
          f"({args.n2} - {args.n1}) transactions (select-only: 1 statement each, tpcb-like: "
          f"{statements_per_transaction(TPCB_LIKE)}), minimum and median of {args.reps} run(s)")
    # With a pool, its 1 s maintenance timer is armed: how often it fires in
    # a run under valgrind varies, and so does the time driver's work at
    # each park. Hence several runs.
    print(f"{'workload':<16} {'pool':<12} {'instr/stmt':>10} {'median':>8}  runs")
    modes = [("none", None), ("session", "mode: session"), ("transaction", f"mode: transaction, size: {args.pool_size}")]
    modes = [m for m in modes if m[0] in args.modes.split(",")]
    for workload in ("select-simple", "select-extended", "select-prepared", "tpcb-simple", "tpcb-extended"):
        if workload not in args.workloads.split(","):
            continue
        for mode, pool in modes:
            runs = sorted(
                instructions_per_statement(args, work, port, db, workload, mode, pool, rep)
                for rep in range(args.reps)
            )
            shown = " ".join(f"{r:.0f}" for r in runs)
            print(f"{workload:<16} {mode:<12} {runs[0]:>10.0f} {runs[len(runs) // 2]:>8.0f}  {shown}", flush=True)


def statements_per_transaction(script):
    """SQL statements in a pgbench script (its lines that are not meta-commands)."""
    return sum(1 for line in script.splitlines() if line.strip() and not line.lstrip().startswith("\\"))


def instructions_per_statement(args, work, port, db, workload, mode, pool, rep):
    """One callgrind run of N1 and one of N2 transactions; the difference per statement."""
    import signal

    from instructions import total_instructions

    totals = []
    for n in (args.n1, args.n2):
        listen = free_port()
        cfg = work / f"cg-{mode}-{workload}-{n}.yaml"
        write_proxy_config(cfg, listen, port, db, pool, work / "auth-password")
        (work / "auth-password").write_text(AUTH_PASSWORD + "\n")
        # The first run's profiles keep their names (for callgrind_annotate).
        out = work / (f"cg.{mode}.{workload}.{n}" + (f".rep{rep}" if rep else ""))
        proc = subprocess.Popen(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", str(args.binary), "serve", "--config", str(cfg)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_port(listen, seconds=120)  # valgrind starts slowly
            qualified = WORKLOADS[workload][0]
            script = work / f"{workload}-cg-bare.sql"
            script.write_text(qualified.replace("bench.pgbench_", "pgbench_"))
            cmd = ["pgbench", "-n", "-h", "127.0.0.1", "-p", str(listen), "-U", BENCH_USER, "-c", "1", "-t", str(n)]
            cmd += WORKLOADS[workload][1] + ["-s", str(args.scale), "-f", str(script), db]
            r = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PGPASSWORD": BENCH_PASSWORD})
            if r.returncode != 0:
                raise SystemExit(f"pgbench failed ({' '.join(cmd)}):\n{r.stdout}\n{r.stderr}")
        finally:
            # SIGINT to valgrind itself: it writes its output as the program exits.
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        totals.append(total_instructions(out))
    statements = statements_per_transaction(WORKLOADS[workload][0])
    return (totals[1] - totals[0]) / (args.n2 - args.n1) / statements


def count_syscalls(args, work, port, db, procs):
    """System calls per transaction of each pooler under pgbench -c N -S."""
    clients = args.syscall_clients
    targets = []
    modes = [("heal7-txn", f"mode: transaction, size: {args.pool_size}")]
    if clients <= 20:
        # Session mode holds a connection per client (pool.size 20).
        modes.append(("heal7-session", "mode: session"))
    for name, pool in modes:
        proc, pport, _ = start_proxy(work, name, port, db, args.binary, pool)
        procs.append(proc)
        targets.append((name, pport, proc.pid, True))
    started = start_pgbouncer(work, "pgb-transaction", port, db, "transaction", args.pool_size, clients + 100)
    if started:
        proc, bport, pid, _ = started
        procs.append(proc)
        targets.append(("pgb-transaction", bport, pid, False))
    workload = args.syscall_workload
    script, flags = WORKLOADS[workload]
    print(f"# {time.strftime('%Y-%m-%d %H:%M')}: system calls per transaction, pgbench -c {clients} -j 2 "
          f"{workload}, {args.seconds}s, strace -c -f on the pooler")
    for name, pport, pid, bare in targets:
        # A first run logs the clients in and fills the pool.
        run_pgbench(pport, db, workload, clients, 2, args.scale, work, bare)
        out = work / f"strace-{name}.txt"
        tracer = subprocess.Popen(["strace", "-c", "-f", "-o", str(out), "-p", str(pid)],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(1)
        path = work / f"syscalls-{workload}{'-bare' if bare else ''}.sql"
        path.write_text(script.replace("bench.pgbench_", "pgbench_") if bare else script)
        cmd = ["pgbench", "-n", "-h", "127.0.0.1", "-p", str(pport), "-U", BENCH_USER, "-T", str(args.seconds),
               "-c", str(clients), "-j", "2", *flags, "-s", str(args.scale), "-f", str(path), db]
        r = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PGPASSWORD": BENCH_PASSWORD})
        tracer.send_signal(2)
        tracer.wait(timeout=30)
        txns = re.search(r"number of transactions actually processed: (\d+)", r.stdout)
        if r.returncode != 0 or not txns:
            raise SystemExit(f"pgbench failed:\n{r.stdout}\n{r.stderr}")
        n = int(txns.group(1))
        calls = {}
        for line in out.read_text().splitlines():
            f = line.split()
            if len(f) >= 5 and f[3].isdigit() and f[-1] != "total":
                calls[f[-1]] = int(f[3])
        total = sum(calls.values())
        shown = ", ".join(f"{k} {v / n:.2f}" for k, v in sorted(calls.items(), key=lambda kv: -kv[1]) if v / n >= 0.01)
        print(f"{name:<16} {n:>8} txns {total / n:>6.2f} syscalls/txn: {shown}", flush=True)
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=10, help="per pgbench run")
    ap.add_argument("--scale", type=int, default=10)
    ap.add_argument("--connect-clients", default="1,16", help="client counts for connect-per-txn")
    ap.add_argument("--pool-clients", type=int, default=200)
    ap.add_argument("--pool-size", type=int, default=10)
    ap.add_argument("--workloads", default=",".join(WORKLOADS))
    ap.add_argument("--database", default="heal7_bench")
    ap.add_argument("--binary", default=str(ROOT / "target/release/heal7-proxy"))
    ap.add_argument("--no-build", action="store_true")
    ap.add_argument("--verbose", action="store_true", help="print each pgbench command and its output")
    ap.add_argument(
        "--keep",
        action="store_true",
        help="keep the work folder (with --instructions: the callgrind profiles, for callgrind_annotate)",
    )
    ap.add_argument("--instructions", action="store_true", help="count instructions per statement instead (see above)")
    ap.add_argument(
        "--isolation",
        action="store_true",
        help="instead: one pool saturated by pg_sleep clients, another pool's latency with and without",
    )
    ap.add_argument("--syscalls", action="store_true", help="count system calls per transaction instead (see above)")
    ap.add_argument("--syscall-clients", type=int, default=8, help="with --syscalls: pgbench clients")
    ap.add_argument("--syscall-workload", default="select-simple", choices=[w for w in WORKLOADS if w != "connect-per-txn"],
                    help="with --syscalls: the pgbench workload")
    ap.add_argument("--modes", default="none,session,transaction", help="with --instructions: the pool modes to count")
    ap.add_argument("--n1", type=int, default=2000)
    ap.add_argument("--n2", type=int, default=10000)
    args = ap.parse_args()
    global VERBOSE
    VERBOSE = args.verbose

    if not args.no_build:
        subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=ROOT, check=True)

    work = Path(tempfile.mkdtemp(prefix="heal7-poolbench."))
    os.chmod(work, 0o755)
    db = args.database
    server = None
    procs = []
    try:
        # Room for one run's clients plus the server connections the pools
        # keep idle between runs (PgBouncer's session pool holds one per client).
        server = Throwaway(work, max_connections=2 * args.pool_clients + 100)
        port = server.port
        psql(port, "postgres", f"CREATE DATABASE {db}", "postgres")
        psql(port, db, ROLES_SQL, "postgres")
        prepare_tables(port, db, "postgres", args.scale)
        psql(port, db, LOOKUP_SQL, "postgres")
        if args.instructions:
            return count_instructions(args, work, port, db)
        if args.isolation:
            return isolation(args, work, port, db, procs)
        if args.syscalls:
            return count_syscalls(args, work, port, db, procs)

        def proxy(name, pool):
            proc, pport, log = start_proxy(work, name, port, db, args.binary, pool)
            procs.append(proc)
            return {"name": name, "port": pport, "bare": True, "pid": proc.pid, "log": log}

        none = proxy("heal7-none", None)
        session = proxy("heal7-session", "mode: session")
        txn = proxy("heal7-txn", f"mode: transaction, size: {args.pool_size}")
        direct = {"name": "direct", "port": port, "bare": False, "pid": None, "log": work / "pg.log"}

        bouncers = {}
        # Session mode with a server connection per client (the -C runs and,
        # before 1.21, -M prepared); transaction mode on a pool of pool_size.
        for mode, size in (("session", args.pool_clients), ("transaction", args.pool_size)):
            started = start_pgbouncer(work, f"pgb-{mode}", port, db, mode, size, args.pool_clients + 100)
            if started:
                proc, bport, pid, log = started
                procs.append(proc)
                bouncers[mode] = {"name": f"pgb-{mode}", "port": bport, "bare": False, "pid": pid, "log": log}
        if not bouncers:
            print("pgbouncer not installed: comparing with direct only (apt-get install pgbouncer)")
        version = ""
        if find_pgbouncer():
            version = subprocess.run([find_pgbouncer(), "--version"], capture_output=True, text=True).stdout.split("\n")[0]

        print(
            f"# {time.strftime('%Y-%m-%d %H:%M')} on {os.cpu_count()} cores; {args.reps} reps x {args.seconds}s, "
            f"scale {args.scale}; {version or 'no PgBouncer'}; clients log in as {BENCH_USER} (scram-sha-256)"
        )
        summary = []
        failures = []
        for workload in args.workloads.split(","):
            if workload == "connect-per-txn":
                runs = [(int(c), [direct, none, session] + ([bouncers["session"]] if "session" in bouncers else []))
                        for c in args.connect_clients.split(",")]
                note = "heal7-session: pool.mode session; pgb-session: pool_mode=session"
            else:
                bouncer = None
                if workload.endswith("prepared"):
                    bouncer = bouncers.get("session")
                    note = (f"heal7-txn: transaction, size {args.pool_size}; PgBouncer 1.18 keeps no prepared "
                            "statements in transaction mode: pgb-session is session mode, one server connection "
                            "per client (no pooling)")
                else:
                    bouncer = bouncers.get("transaction")
                    note = f"heal7-txn and pgb-transaction: transaction mode, pool of {args.pool_size}"
                runs = [(args.pool_clients, [direct, none, txn] + ([bouncer] if bouncer else []))]
            for clients, targets in runs:
                rows = {t["name"]: [] for t in targets}
                for rep in range(args.reps):
                    order = targets[rep % len(targets):] + targets[: rep % len(targets)]
                    for t in order:
                        before_cpu = cpu_times(t["pid"]) if t["pid"] else None
                        before_log = log_size(t["log"])
                        tps, status, errors = run_pgbench(
                            t["port"], db, workload, clients, args.seconds, args.scale, work, t["bare"]
                        )
                        after_cpu = cpu_times(t["pid"]) if t["pid"] else None
                        cpu = None
                        if before_cpu and after_cpu:
                            cpu = tuple(a - b for a, b in zip(after_cpu, before_cpu))
                        rows[t["name"]].append((tps, status, errors, cpu))
                        if status != 0 or errors:
                            failures.append((workload, clients, t["name"], rep, status, errors[:5],
                                             log_tail(t["log"], before_log)))
                print(f"\n## {workload}, {clients} client(s); {note}")
                print(f"{'target':<15} {'rep':>3} {'tps':>9} {'ratio':>6} {'exit':>7} {'errors':>6} {'cpu s':>6}"
                      f" {'user us/txn':>11} {'sys us/txn':>10}")
                for t in targets:
                    name = t["name"]
                    ratios = []
                    total_errors = 0
                    for rep, (tps, status, errors, cpu) in enumerate(rows[name]):
                        d = rows["direct"][rep][0]
                        ratio = tps / d if tps and d else None
                        if ratio is not None:
                            ratios.append(ratio)
                        total_errors += len(errors)
                        tps_s = f"{tps:.0f}" if tps is not None else "-"
                        ratio_s = f"{ratio:.2f}" if ratio is not None else "-"
                        cpu_s = f"{sum(cpu):.1f}" if cpu is not None else "-"
                        # The proxy's own CPU per transaction, split: the
                        # kernel's share is the loopback sends and receives.
                        txns = tps * args.seconds if tps else None
                        user_s = f"{cpu[0] / txns * 1e6:.0f}" if cpu is not None and txns else "-"
                        sys_s = f"{cpu[1] / txns * 1e6:.0f}" if cpu is not None and txns else "-"
                        print(f"{name:<15} {rep:>3} {tps_s:>9} {ratio_s:>6} {status!s:>7} {len(errors):>6} {cpu_s:>6}"
                              f" {user_s:>11} {sys_s:>10}")
                    med = statistics.median(ratios) if ratios else None
                    spread = (max(ratios) - min(ratios)) / med if med else 0
                    summary.append((workload, clients, name, med, spread, total_errors, len(ratios)))
                # The same slot of the rotation side by side: how often the
                # pooled proxy was ahead of PgBouncer in its repetition.
                pooled = [t["name"] for t in targets if t["name"] in ("heal7-txn", "heal7-session")]
                rival = [t["name"] for t in targets if t["name"].startswith("pgb-")]
                if pooled and rival:
                    pairs = [(a[0], b[0]) for a, b in zip(rows[pooled[0]], rows[rival[0]]) if a[0] and b[0]]
                    ahead = sum(1 for a, b in pairs if a > b)
                    print(f"{pooled[0]} ahead of {rival[0]} in {ahead} of {len(pairs)} repetitions")

        print("\n## Summary: median TPS ratio to direct; errors over all repetitions")
        print(f"{'workload':<16} {'clients':>7} {'target':<15} {'ratio':>6} {'errors':>6}  note")
        for workload, clients, name, med, spread, errs, n in summary:
            if name == "direct":
                continue
            notes = []
            if spread > 0.15:
                notes.append("too noisy to conclude (ratios spread %.0f%%)" % (spread * 100))
            if n < args.reps:
                notes.append(f"{args.reps - n} run(s) without a TPS figure")
            med_s = f"{med:.2f}" if med is not None else "-"
            print(f"{workload:<16} {clients:>7} {name:<15} {med_s:>6} {errs:>6}  {'; '.join(notes)}")

        if failures:
            print("\n## Failed runs or runs with errors (first error lines; the target's log lines from that run)")
            for workload, clients, name, rep, status, errors, log in failures:
                print(f"\n### {workload}, {clients} clients, {name}, rep {rep}: exit {status}")
                for line in errors:
                    print(f"  pgbench: {line}")
                for line in log:
                    print(f"  log: {line}")
        else:
            print("\nNo run failed or reported an error.")
    finally:
        for p in procs:
            p.terminate()
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()
        if server:
            server.stop()
        if args.keep:
            print(f"profiles kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
